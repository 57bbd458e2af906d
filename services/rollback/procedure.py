"""Turn a feature's flag off once per incident, with its audit rows.

The incident row, the flag audit rows and the flag writes share one Postgres
transaction: the incident row is inserted first with ``ON CONFLICT DO NOTHING``,
so a second copy of the same incident (an Alertmanager retry, a repeat, another
HA peer, even concurrently) waits for the first to commit, finds the row and
changes nothing. If Redis fails, the transaction rolls back and the next copy
tries again. A rollback keeps each flag's percentage, so turning the feature
back on returns to the same rollout step.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.common.database import Database
from services.common.flags import FlagState
from services.common.redis import Redis
from services.rollout.operations import Change, apply_changes, plan_changes

INSERT_INCIDENT = (
    "INSERT INTO rollback_incidents (incident_key, source, alertname, feature_name, environment, "
    "actor, reason, starts_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
    "ON CONFLICT (incident_key) DO NOTHING RETURNING incident_key"
)
RECORD_CHANGES = "UPDATE rollback_incidents SET flags_changed = $2 WHERE incident_key = $1"
RESOLVE = (
    "UPDATE rollback_incidents SET resolved_at = now() "
    "WHERE incident_key = $1 AND resolved_at IS NULL RETURNING incident_key"
)


@dataclass(frozen=True, slots=True)
class RollbackRequest:
    """What to roll back, why, and on whose behalf."""

    key: str
    source: str
    alertname: str
    feature: str
    features: tuple[str, ...]
    environment: str
    actor: str
    reason: str
    starts_at: datetime


@dataclass(frozen=True, slots=True)
class RollbackOutcome:
    """What a request did: ``duplicate`` when the incident was already handled."""

    duplicate: bool
    changes: tuple[Change, ...]

    @property
    def changed_features(self) -> list[str]:
        """The features whose flag this request turned off."""
        return [change.feature for change in self.changes]


def _off(state: FlagState | None) -> FlagState:
    return FlagState(enabled=False, rollout_percentage=state.rollout_percentage if state else 0)


async def roll_back(*, db: Database, redis: Redis, request: RollbackRequest) -> RollbackOutcome:
    """Flags of ``request.features`` off, once per ``request.key``."""
    async with db.unscoped() as conn:
        claimed = await conn.fetchval(
            INSERT_INCIDENT,
            request.key,
            request.source,
            request.alertname,
            request.feature,
            request.environment,
            request.actor,
            request.reason,
            request.starts_at,
        )
        if claimed is None:
            return RollbackOutcome(duplicate=True, changes=())
        planned = await plan_changes(redis, request.features, _off)
        written = await apply_changes(
            redis=redis,
            db=db,
            environment=request.environment,
            changes=planned,
            actor=request.actor,
            reason=request.reason,
            command=f"rollback:{request.source}",
            conn=conn,
        )
        await conn.execute(RECORD_CHANGES, request.key, [c.feature for c in written])
    return RollbackOutcome(duplicate=False, changes=tuple(written))


async def mark_resolved(*, db: Database, key: str) -> bool:
    """Record that the incident's alert resolved (flags stay off: turning a feature
    back on is an operator's decision). False when unknown or already resolved."""
    async with db.unscoped() as conn:
        return await conn.fetchval(RESOLVE, key) is not None
