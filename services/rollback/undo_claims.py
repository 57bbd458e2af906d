"""Deployment undos claimed and never finished, exported for an alert.

An undo is claimed on its incident row before the first Kubernetes API call
and is never retried (``procedure.undo_deployments``): a handler killed after
the claim leaves the row ``claimed`` with no outcome for good. Nothing else
would tell anyone, so each replica reads the age of the oldest such claim from
Postgres every :data:`REFRESH_SECONDS` into
``rollback_deployment_undo_oldest_claim_age_seconds`` (0 when none), and the
alert ``RollbackDeploymentUndoStuck`` fires once that age outgrows any undo
that is still running (alerts/rules/rollback.yml).
"""

from __future__ import annotations

import asyncio
import logging

from services.common.database import Database, DatabaseUnavailable
from services.rollback.metrics import RollbackMetrics

log = logging.getLogger(__name__)

#: How often the gauge is read again: a small share of the alert's threshold.
REFRESH_SECONDS = 15.0

OLDEST_CLAIM_AGE = (
    "SELECT coalesce(extract(epoch FROM now() - min(deployments_claimed_at)), 0)::float8 "
    "FROM rollback_incidents WHERE deployments_state = 'claimed'"
)


async def oldest_claim_age_seconds(db: Database) -> float:
    """Seconds since the oldest undo still ``claimed`` (no outcome) was claimed; 0 if none."""
    async with db.unscoped() as conn:
        age: float = await conn.fetchval(OLDEST_CLAIM_AGE)
    return age


async def refresh_undo_claims(db: Database, metrics: RollbackMetrics) -> float:
    """Set the gauge from Postgres and return the age it was set to."""
    age = await oldest_claim_age_seconds(db)
    metrics.oldest_undo_claim_age.set(age)
    return age


async def watch_undo_claims(db: Database, metrics: RollbackMetrics) -> None:
    """Refresh the gauge every :data:`REFRESH_SECONDS` until cancelled.

    While Postgres is unreachable the gauge keeps its last value (the handler
    cannot act without Postgres either, and its readiness says so).
    """
    while True:
        try:
            await refresh_undo_claims(db, metrics)
        except DatabaseUnavailable as exc:
            log.warning("undo claims not read (postgres unavailable: %s)", exc.reason)
        except Exception:
            log.exception("undo claims not read; next try in %.0f s", REFRESH_SECONDS)
        await asyncio.sleep(REFRESH_SECONDS)
