"""Put back the flags Redis has lost, from their last state recorded in Postgres.

Redis holds the live flags; Postgres holds the durable record: every write of
a flag has its ``flag_audit`` row, inserted under the flag-change lock, so the
newest row of a feature in an environment (by ``audit_id``) is the state last
written to it. A Redis restarted without persistence, a failover to an empty
replica or a ``FLUSHALL`` loses every flag, and a missing flag is disabled:
without this, every feature would stay off until someone acted, and re-running
the stack's seed would bring back its *initial* state, not the last one (a
feature a rollback turned off would come back on).

:func:`restore_missing` creates each missing flag from its last recorded state
under the same lock as every other flag change, with ``SET NX`` (a flag present
in Redis is never overwritten), and records the restoration. Only a flag with
no recorded state at all falls back to the stack's seed, and only when one is
given (``flags init``); the rollback handler's keeper (``keep_flags``) gives
none, so it never invents a state.

A flag can also be present with a state no change wrote: after a failover to a
replica that missed the last writes, a restore of an old snapshot, an older
release's ``SET NX`` from the seed, or a hand edit. Every change is recorded
under the lock, so such a flag differs from its record. :func:`revert_stale`
writes the record back when that does not raise the feature's exposure (a
rollback the stale copy lost comes back: the feature goes off again), and
leaves it to an operator otherwise (an advance the copy lost): nothing here
ever raises a feature's exposure by itself. A key holding no valid record
(every reader ignores it and keeps its last state) gets its record back too.
Each of these writes is conditional (``write_flags_if_unchanged``): a flag
that changed in Redis between the read and the write fails the write and
rolls back its audit rows, to be looked at again next time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from services.common.database import Database
from services.common.flags import (
    FEATURES,
    FlagState,
    StoredFlags,
    init_flags,
    read_flags,
    write_flags_if_unchanged,
)
from services.common.redis import Redis
from services.common.tasks import repeat
from services.rollout.operations import (
    RESTORE_COMMAND,
    lock_flag_changes,
    record_change,
    recorded_states,
)

log = logging.getLogger(__name__)

RESTORED_REASON = "restored the last recorded state: the flag was missing from Redis"
SEEDED_REASON = "initial state from the stack's featureFlags"
#: The actor of the keeper's audit rows.
KEEPER: Final = "rollback-handler"
STALE_REASON = (
    "restored the last recorded state: Redis held {found}, which no recorded change wrote "
    "(a stale copy, as after a failover to a replica that missed writes)"
)
INVALID_REASON = "restored the last recorded state: Redis held no valid record (a hand edit?)"


class Outcome(StrEnum):
    """What :func:`restore_missing` or :func:`revert_stale` did with one flag."""

    PRESENT = "present"
    RESTORED = "restored"
    SEEDED = "seeded"
    #: Missing, with no recorded state and no seed: left missing (disabled).
    NO_RECORD = "no_record"
    #: Present in a state no change wrote, no less exposed than its record: written back.
    REVERTED = "reverted"
    #: Present in a state no change wrote, less exposed than its record: left as it is.
    BEHIND = "behind"


@dataclass(frozen=True, slots=True)
class Restored:
    """One flag's outcome and the state it now has (None: still missing)."""

    feature: str
    outcome: Outcome
    state: FlagState | None

    def describe(self) -> str:
        """``ai_coaching: restored (off (25% kept))`` for operator output."""
        shown = f" ({self.state.describe()})" if self.state is not None else ""
        return f"{self.feature}: {self.outcome.value.replace('_', ' ')}{shown}"


async def restore_missing(
    conn: Any,
    redis: Redis,
    *,
    environment: str,
    actor: str,
    seed: Mapping[str, FlagState] | None = None,
) -> list[Restored]:
    """Create each flag missing from Redis from its last recorded state (else ``seed``).

    ``conn`` must be in a transaction: the flag-change lock is held to its end,
    so a restore and an operator's or the handler's change never interleave (a
    change planned while the flag was missing finds it restored and writes
    nothing: ``FlagChangedMeanwhile``). The audit rows of what was created
    commit with it. Raises ``RedisUnavailable``.
    """
    await lock_flag_changes(conn)
    # An invalid record is not missing (SET NX would not replace it): revert_stale's.
    current = (await read_flags(redis)).states
    missing = [feature for feature in FEATURES if feature in current and current[feature] is None]
    if not missing:
        return [Restored(f, Outcome.PRESENT, current.get(f)) for f in FEATURES]
    recorded = await recorded_states(conn, environment)
    wanted: dict[str, FlagState] = {}
    for feature in missing:
        if feature in recorded:
            wanted[feature] = recorded[feature]
        elif seed is not None:
            wanted[feature] = seed.get(feature, FlagState())
    # SET NX even under the lock: a writer that does not take it (an older
    # release's flags init during a rolling deploy) must never be overwritten.
    created = await init_flags(redis, wanted, seed=wanted)
    results = []
    for feature in FEATURES:
        if feature not in missing:
            results.append(Restored(feature, Outcome.PRESENT, current.get(feature)))
        elif feature not in wanted:
            results.append(Restored(feature, Outcome.NO_RECORD, None))
        elif not created[feature]:
            results.append(Restored(feature, Outcome.PRESENT, None))
        else:
            restored = feature in recorded
            state = wanted[feature]
            await record_change(
                conn,
                environment=environment,
                feature=feature,
                actor=actor,
                before=None,
                after=state,
                reason=RESTORED_REASON if restored else SEEDED_REASON,
                command=RESTORE_COMMAND if restored else "flags init",
            )
            results.append(
                Restored(feature, Outcome.RESTORED if restored else Outcome.SEEDED, state)
            )
    return results


async def restore_if_missing(
    *, db: Database, redis: Redis, environment: str, actor: str
) -> list[Restored]:
    """:func:`restore_missing` in its own transaction, only when a flag is missing.

    The check without the lock is one ``MGET``: the common case (every flag
    present) costs Postgres nothing. Returns the flags restored.
    """
    if None not in (await read_flags(redis)).states.values():
        return []
    async with db.unscoped() as conn:
        await _bound_lock_wait(conn)
        results = await restore_missing(conn, redis, environment=environment, actor=actor)
    return [r for r in results if r.outcome is Outcome.RESTORED]


#: How long the keeper waits for the flag-change lock before giving this check up
#: (tried again at the next interval): a stuck holder must not stall it for good.
KEEPER_LOCK_TIMEOUT: Final = "5s"


async def _bound_lock_wait(conn: Any) -> None:
    await conn.execute(f"SET LOCAL lock_timeout = '{KEEPER_LOCK_TIMEOUT}'")


def unrecorded(stored: StoredFlags, recorded: Mapping[str, FlagState]) -> list[str]:
    """Features present in Redis in another state than their last recorded one
    (an invalid record included: no change wrote it)."""
    return [
        feature
        for feature in FEATURES
        if feature in recorded
        and (feature in stored.invalid or stored.states[feature] not in (None, recorded[feature]))
    ]


async def revert_stale(conn: Any, redis: Redis, *, environment: str, actor: str) -> list[Restored]:
    """Write back the recorded state of each flag Redis holds in a state no change wrote.

    Only where the record is no more exposed than what Redis holds (its
    rollout threshold is not higher): a stale copy that lost a rollback is
    turned off again, with an audit row. A record more exposed than Redis (an
    advance the copy lost) is reported ``BEHIND`` and left to an operator. A
    key holding no valid record (a hand edit) is written back like a missing
    flag is restored: readers already ignore it and keep their last state.
    ``conn`` must be in a transaction: the flag-change lock is held to its end,
    so a change being written (its Redis write before its audit commits) is
    waited for, never mistaken for a stale copy. Raises ``RedisUnavailable``,
    and `FlagWriteConflict` (nothing written) when a flag changed in Redis
    meanwhile.
    """
    await lock_flag_changes(conn)
    stored = await read_flags(redis)
    recorded = await recorded_states(conn, environment)
    results: list[Restored] = []
    writes: dict[str, FlagState] = {}
    for feature in unrecorded(stored, recorded):
        found, record = stored.states.get(feature), recorded[feature]
        if found is not None and record.threshold > found.threshold:
            results.append(Restored(feature, Outcome.BEHIND, found))
            continue
        await record_change(
            conn,
            environment=environment,
            feature=feature,
            actor=actor,
            before=found,
            after=record,
            reason=STALE_REASON.format(found=found.describe()) if found else INVALID_REASON,
            command=RESTORE_COMMAND,
        )
        writes[feature] = record
        results.append(Restored(feature, Outcome.REVERTED, record))
    # After the audit rows, as every change: Redis failing rolls them back.
    await write_flags_if_unchanged(redis, stored, writes)
    return results


async def revert_if_stale(
    *, db: Database, redis: Redis, environment: str, actor: str
) -> list[Restored]:
    """:func:`revert_stale` in its own transaction, only when a flag differs from its record.

    The check without the lock is one ``MGET`` and one read of the records, so
    the common case, every flag as recorded, takes no lock and writes nothing.
    """
    async with db.unscoped() as conn:
        recorded = await recorded_states(conn, environment)
    if not unrecorded(await read_flags(redis), recorded):
        return []
    async with db.unscoped() as conn:
        await _bound_lock_wait(conn)
        return await revert_stale(conn, redis, environment=environment, actor=actor)


async def keep_flags(
    *,
    db: Database,
    redis: Redis,
    environment: str,
    interval: float,
    report: Callable[[Sequence[Restored]], None] | None = None,
    report_behind: Callable[[Sequence[str]], None] | None = None,
) -> None:
    """Every ``interval`` seconds, restore the flags Redis has lost, then revert the
    stale ones (:func:`restore_if_missing`, :func:`revert_if_stale`); until cancelled.

    ``report`` receives what each step did as soon as it is done (so a restore
    is counted even if the revert step then fails); ``report_behind`` the
    features left ``BEHIND`` by each completed revert step (empty: none).
    Redis or Postgres unreachable, or the lock held for longer than
    ``KEEPER_LOCK_TIMEOUT``: logged, tried again at the next interval
    (``services.common.tasks.repeat``; a missing flag stays missing, and
    ``FeatureFlagsMissing`` fires if that lasts).
    """

    def done(results: Sequence[Restored]) -> None:
        for result in results:
            # BEHIND holds until an operator acts: its gauge and alert say so, not
            # a log line every interval.
            if result.outcome is not Outcome.BEHIND:
                log.warning("feature flags: %s", result.describe())
        if report is not None:
            report(results)

    async def check() -> None:
        done(await restore_if_missing(db=db, redis=redis, environment=environment, actor=KEEPER))
        stale = await revert_if_stale(db=db, redis=redis, environment=environment, actor=KEEPER)
        done(stale)
        if report_behind is not None:
            report_behind([r.feature for r in stale if r.outcome is Outcome.BEHIND])

    await repeat(check, every=interval, what="feature flag check")
