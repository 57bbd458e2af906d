"""``/health/rollback``: the latest incidents, read from the table the handler writes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI

from services.common.health import FeatureHealth

LATEST = (
    "SELECT incident_key, alertname, feature_name, received_at, resolved_at, flags_changed, "
    "deployments_state, deployments_claimed_at, deployments_outcome "
    "FROM rollback_incidents ORDER BY received_at DESC LIMIT 5"
)


async def rollback_health(app: FastAPI) -> Mapping[str, Any]:
    """Live values: the last five incidents, with any deployment undo (Postgres is
    required to act at all)."""
    async with app.state.db.unscoped() as conn:
        rows = await conn.fetch(LATEST)
    return {
        "status": "healthy",
        "latest_incidents": [
            {
                "incident": row["incident_key"],
                "alertname": row["alertname"],
                "feature": row["feature_name"],
                "received_at": row["received_at"].isoformat(),
                "resolved_at": row["resolved_at"].isoformat() if row["resolved_at"] else None,
                "flags_turned_off": list(row["flags_changed"]),
                # None: flags only; pending/claimed: the undo is under way; done: see outcomes.
                "deployments_undo": row["deployments_state"],
                # Claimed long ago and still not done: the handler died mid-undo
                # (never retried: see docs/deploying.md), an operator must look;
                # RollbackDeploymentUndoStuck pages (services/rollback/undo_claims.py).
                "deployments_claimed_at": (
                    row["deployments_claimed_at"].isoformat()
                    if row["deployments_claimed_at"]
                    else None
                ),
                "deployments": row["deployments_outcome"],
            }
            for row in rows
        ],
    }


ROLLBACK_FEATURE_HEALTH = FeatureHealth("/health/rollback", rollback_health)
