"""Flag changes with their audit row, and the audit trail read back.

A change writes the audit rows and the flags in one Postgres transaction:
the rows are inserted first, the flags written to Redis (every changed
record and its pub/sub notice in one ``MULTI``, so a change of several flags
lands whole or not at all), then the transaction commits. If Redis fails the
transaction rolls back, so no audit row claims a change that did not happen,
and no flag changed without its row. (If the commit itself failed after Redis
accepted the write, the flag would have changed without its row; a later
change that finds its flag already in the requested state, such as the retry
of that rollback, then records it, see ``UNRECORDED``.)

The audit is also the durable record of each flag: its newest row in an
environment (by ``audit_id``: rows are inserted under the lock below, so
their order is the order of the writes) is the flag's last written state,
which ``services.rollout.restore`` puts back when Redis has lost the flag.

Every writer (an operator's ``rollout set``/``advance``, the rollback
handler) changes flags under one Postgres advisory lock held to the end of
its transaction, and re-reads the flags under it: a change planned from a
state that another writer has changed since (the handler turned the feature
off while the operator was reading the plan) raises `FlagChangedMeanwhile`
and writes nothing, so no writer silently undoes another's change.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.common.database import Database
from services.common.flags import FEATURES, FlagState, read_flags, write_flags_if_unchanged
from services.common.redis import Redis

#: One lock for every flag change of an environment (its own Postgres); the
#: number only has to be unique among the project's advisory locks.
FLAG_CHANGES_LOCK_ID = 0x656E68_666C6167  # "enh" "flag"
LOCK_FLAG_CHANGES = "SELECT pg_advisory_xact_lock($1)"

INSERT_AUDIT = (
    "INSERT INTO flag_audit (environment, feature_name, actor, from_enabled, from_percentage, "
    "to_enabled, to_percentage, reason, command) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
)


async def record_change(
    conn: Any,
    *,
    environment: str,
    feature: str,
    actor: str,
    before: FlagState | None,
    after: FlagState,
    reason: str,
    command: str,
) -> None:
    """Insert one ``flag_audit`` row: ``feature`` went from ``before`` (None: no
    state) to ``after``. Call it under the flag-change lock, before the Redis write."""
    await conn.execute(
        INSERT_AUDIT,
        environment,
        feature,
        actor,
        before.enabled if before else None,
        before.rollout_percentage if before else None,
        after.enabled,
        after.rollout_percentage,
        reason,
        command,
    )


#: Each feature's newest audit row in one environment: the state last written to it.
#: One index descent per feature (revision 0020), not a read of the environment's
#: whole history: the rollback handler's keeper runs it every few seconds.
RECORDED_STATES = (
    "SELECT f.feature_name, last.to_enabled, last.to_percentage "
    "FROM unnest($2::text[]) AS f (feature_name) CROSS JOIN LATERAL ("
    "SELECT to_enabled, to_percentage FROM flag_audit "
    "WHERE environment = $1 AND feature_name = f.feature_name "
    "ORDER BY audit_id DESC LIMIT 1) AS last"
)
#: A feature's audit rows in one environment, newest first.
AUDIT_TRAIL = (
    "SELECT changed_at, environment, actor, from_enabled, from_percentage, to_enabled, "
    "to_percentage, reason, command FROM flag_audit "
    "WHERE environment = $1 AND feature_name = $2 ORDER BY audit_id DESC LIMIT $3"
)
#: The command of the rows that put a flag back to its record (``services.rollout.restore``).
RESTORE_COMMAND = "flags restore"
#: When a feature last moved to a state: a row that changed it, not a re-record,
#: and not a restore (putting the record back after Redis lost the flag or held
#: a stale copy is not a new stage: a failover must not restart a week's clock).
STAGE_STARTED_AT = (
    "SELECT changed_at FROM flag_audit WHERE environment = $1 AND feature_name = $2 "
    "AND to_enabled = $3 AND to_percentage = $4 "
    "AND (from_enabled IS DISTINCT FROM to_enabled "
    "OR from_percentage IS DISTINCT FROM to_percentage) "
    "AND command <> $5 "
    "ORDER BY audit_id DESC LIMIT 1"
)
#: Why a change that found its flag already in the requested state is recorded.
UNRECORDED = "already the live state, which the record lacked: recorded now"


@dataclass(frozen=True, slots=True)
class Change:
    """One flag's planned change."""

    feature: str
    before: FlagState | None
    after: FlagState

    @property
    def is_noop(self) -> bool:
        """True when the flag already has the target state."""
        return self.before == self.after

    def describe(self) -> str:
        """``ai_coaching: on at 10% -> on at 25%``."""
        before = self.before.describe() if self.before else "missing"
        return f"{self.feature}: {before} -> {self.after.describe()}"


class FlagChangedMeanwhile(Exception):  # noqa: N818 - reads as the condition it names
    """A planned change's flag no longer has the state it was planned from."""

    def __init__(self, stale: Sequence[tuple[Change, FlagState | None]]) -> None:
        self.stale = tuple(stale)
        found = "; ".join(
            f"{change.feature} is now {now.describe() if now else 'missing'} "
            f"(planned from {change.before.describe() if change.before else 'missing'})"
            for change, now in stale
        )
        super().__init__(
            f"changed by someone else since it was read: {found}; nothing was changed "
            "(look at `enterprisehub rollout status` and run the command again)"
        )


async def lock_flag_changes(conn: Any) -> None:
    """Hold the flag-change lock until ``conn``'s transaction ends (re-entrant)."""
    await conn.execute(LOCK_FLAG_CHANGES, FLAG_CHANGES_LOCK_ID)


async def plan_changes(
    redis: Redis, features: Sequence[str], target: Callable[[FlagState | None], FlagState]
) -> list[Change]:
    """The change ``target`` makes to each feature's current state (read from Redis)."""
    current = (await read_flags(redis)).writable()
    return [Change(f, current[f], target(current[f])) for f in features]


async def apply_changes(
    *,
    redis: Redis,
    db: Database,
    environment: str,
    changes: Sequence[Change],
    actor: str,
    reason: str,
    command: str,
    conn: Any | None = None,
) -> list[Change]:
    """Write each change that is not a no-op, with its audit row; return those written.

    A no-op whose flag's record disagrees with the live state gets its row too
    (the flag changed without one), so the record stays the last written state.

    ``conn``: a connection already in a transaction, so that the caller's own
    rows (a rollback incident) commit or roll back with the audit rows.
    Raises `FlagChangedMeanwhile` (nothing written) when a flag no longer has
    the state its change was planned from.
    """
    todo = [change for change in changes if not change.is_noop]
    if not changes:
        return []
    if conn is not None:
        await _write(conn, redis, environment, changes, actor=actor, reason=reason, command=command)
        return todo
    async with db.unscoped() as own:
        await _write(own, redis, environment, changes, actor=actor, reason=reason, command=command)
    return todo


async def _write(
    conn: Any,
    redis: Redis,
    environment: str,
    changes: Sequence[Change],
    *,
    actor: str,
    reason: str,
    command: str,
) -> None:
    """Under the lock, the flags as planned; then the audit rows and the flags (Redis
    failing raises and the rows roll back; so does a flag that a writer outside the
    lock changed meanwhile: `FlagWriteConflict`)."""
    await lock_flag_changes(conn)
    stored = await read_flags(redis)
    current = stored.writable()
    todo = [change for change in changes if not change.is_noop]
    stale = [(c, current[c.feature]) for c in todo if current[c.feature] != c.before]
    if stale:
        raise FlagChangedMeanwhile(stale)
    rows = [(change.before, change.after, change.feature, reason) for change in todo]
    held = [c for c in changes if c.is_noop and current[c.feature] == c.after]
    if held:
        # A flag that already has the requested state while its record says
        # otherwise changed without its row (a commit that failed after Redis
        # took the write: the retry of that rollback finds the flag off).
        # Recorded now, or a restore after Redis lost the flag would bring
        # back the state before, e.g. turn a rolled-back feature on again.
        recorded = await recorded_states(conn, environment)
        rows += [
            (recorded.get(c.feature), c.after, c.feature, f"{reason} ({UNRECORDED})")
            for c in held
            if recorded.get(c.feature) != c.after
        ]
    for before, after, feature, why in rows:
        await record_change(
            conn,
            environment=environment,
            feature=feature,
            actor=actor,
            before=before,
            after=after,
            reason=why,
            command=command,
        )
    await write_flags_if_unchanged(redis, stored, {change.feature: change.after for change in todo})


async def recorded_states(conn: Any, environment: str) -> dict[str, FlagState]:
    """The last recorded state of each feature of ``environment`` that has one."""
    rows = await conn.fetch(RECORDED_STATES, environment, list(FEATURES))
    return {
        row["feature_name"]: FlagState(
            enabled=row["to_enabled"], rollout_percentage=float(row["to_percentage"])
        )
        for row in rows
    }


async def audit_trail(
    db: Database, environment: str, feature: str, *, limit: int = 20
) -> list[dict[str, Any]]:
    """The latest audit rows of ``feature`` in ``environment``, newest first.

    In write order (``audit_id``: rows are inserted under the flag-change lock),
    not by ``changed_at``, which is when the writer's transaction began.
    """
    async with db.unscoped() as conn:
        rows = await conn.fetch(AUDIT_TRAIL, environment, feature, limit)
    return [dict(row) for row in rows]


async def stage_started_at(
    db: Database, environment: str, feature: str, state: FlagState
) -> datetime | None:
    """When the flag last moved to its current (enabled, percentage) in
    ``environment``, from the audit."""
    async with db.unscoped() as conn:
        value: datetime | None = await conn.fetchval(
            STAGE_STARTED_AT,
            environment,
            feature,
            state.enabled,
            state.rollout_percentage,
            RESTORE_COMMAND,
        )
    return value
