"""Revision 0013 gives the successes stored before it their ``succeeded_at`` (real Postgres).

The schema is taken back to 0012, rows are stored as the service stored them
then (status and outcome only), and the upgrade must mark exactly the
delivered ones whose lead responded or re-engaged.
"""

from __future__ import annotations

from datetime import UTC, datetime

from services.common.database import Database
from services.common.settings import CommonSettings
from services.migrations.runner import migrate
from tests.schema_history import downgrade_to

BEFORE = "0012_churn_delivery_calls"
AT = datetime(2026, 11, 20, 12, tzinfo=UTC)


async def test_stored_successes_get_their_time_and_nothing_else_does(
    settings: CommonSettings, owner_db: Database
) -> None:
    await downgrade_to(settings, BEFORE)
    try:
        async with owner_db.unscoped() as conn:
            for status in ("delivered", "dead_letter", "pending"):
                for outcome in ("responded", "re_engaged", "churned", None):
                    await conn.execute(
                        "INSERT INTO churn_interventions (tenant_id, lead_id, churn_probability, "
                        "intervention_stage, status, outcome, outcome_at, detected_at, "
                        "created_at) VALUES ('tenant-a', $1, 0.8, 'intervene', $2, $3, $4, "
                        "$5, $5)",
                        f"{status}-{outcome}",
                        status,
                        outcome,
                        AT if outcome else None,
                        AT,
                    )
    finally:
        await migrate(settings)
    async with owner_db.unscoped() as conn:
        rows = await conn.fetch(
            "SELECT lead_id, succeeded_at FROM churn_interventions ORDER BY lead_id"
        )
    succeeded = {row["lead_id"]: row["succeeded_at"] for row in rows if row["succeeded_at"]}
    assert succeeded == {"delivered-responded": AT, "delivered-re_engaged": AT}
    assert len(rows) == 12
