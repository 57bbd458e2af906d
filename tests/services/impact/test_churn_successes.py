"""``impact aggregate``'s churn successes: delivered interventions whose lead answered.

Rows as churn-orchestrator stores them, in real Postgres: the CRM may report an
outcome for an intervention in any state (it is stored), but only a delivered
one can be a success (services/churn/success.py).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from services.churn.routes.outcomes import RECORD_OUTCOME
from services.cli import main
from services.common.database import Database
from services.impact.aggregate import aggregate_day
from services.impact.assumptions import ASSUMPTIONS

DAY = date(2026, 11, 20)
UNDELIVERED = ("pending", "not_sent", "suppressed", "cancelled", "dead_letter")


async def _intervention(conn: Any, lead: str, status: str, outcome: str | None) -> None:
    """A row in ``status``; the CRM's ``outcome`` written as the outcome route writes it."""
    at = datetime(2026, 11, 20, 12, tzinfo=UTC)
    intervention_id = await conn.fetchval(
        "INSERT INTO churn_interventions (tenant_id, lead_id, churn_probability, "
        "intervention_stage, status, detected_at, created_at) "
        "VALUES ('tenant-a', $1, 0.8, 'intervene', $2, $3, $3) RETURNING intervention_id",
        lead,
        status,
        at,
    )
    if outcome is not None:
        await conn.fetchrow(RECORD_OUTCOME, intervention_id, outcome, at)


async def test_only_delivered_interventions_whose_lead_answered_are_successes(
    settings_env: dict[str, str], owner_db: Database, db: Database
) -> None:
    async with owner_db.unscoped() as conn:
        for index, status in enumerate(UNDELIVERED):
            for outcome in ("responded", "re_engaged", "churned"):
                await _intervention(conn, f"lead-{status}-{outcome}", status, outcome)
            await _intervention(conn, f"lead-{index}", status, None)
        for answered in ("responded", "re_engaged", "churned", None):
            await _intervention(conn, f"lead-delivered-{answered}", "delivered", answered)
    await aggregate_day(db, DAY, ASSUMPTIONS)
    async with owner_db.unscoped() as conn:
        row = await conn.fetchrow(
            "SELECT usage_count, success_count, revenue_impact::float8 AS revenue "
            "FROM phase3_business_metrics WHERE tenant_id = 'tenant-a' "
            "AND feature_name = 'churn_prevention' AND metric_date = $1",
            DAY,
        )
    churn = ASSUMPTIONS["churn_prevention"]
    assert (row["usage_count"], row["success_count"]) == (len(UNDELIVERED) * 4 + 4, 2)
    # Revenue is driven by successes: two, not the twelve answered outcomes stored.
    assert row["revenue"] == round(2 * churn.lift * churn.value_per_unit, 2)


async def _churn_row(owner_db: Database, day: date) -> tuple[int, int, float] | None:
    async with owner_db.unscoped() as conn:
        row = await conn.fetchrow(
            "SELECT usage_count, success_count, revenue_impact::float8 AS revenue "
            "FROM phase3_business_metrics WHERE tenant_id = 'tenant-a' "
            "AND feature_name = 'churn_prevention' AND metric_date = $1",
            day,
        )
    return None if row is None else (row["usage_count"], row["success_count"], row["revenue"])


async def test_an_outcome_reported_two_days_later_is_counted_after_the_next_run(
    settings_env: dict[str, str],
    owner_db: Database,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The CronJob aggregated only the day before and never came back, while a
    # lead's answer arrives by webhook hours or days after its intervention:
    # the success was never counted, nor its revenue.
    async with owner_db.unscoped() as conn:
        await _intervention(conn, "lead-late", "delivered", None)
    aggregate = ("impact", "aggregate", "--date")  # the CronJob's command, on a given day
    assert await asyncio.to_thread(main, [*aggregate, DAY.isoformat()]) == 0
    assert await _churn_row(owner_db, DAY) == (1, 0, 0.0)
    later = DAY + timedelta(days=2)
    async with owner_db.unscoped() as conn:
        intervention = await conn.fetchval(
            "SELECT intervention_id FROM churn_interventions WHERE lead_id = 'lead-late'"
        )
        answered = datetime(later.year, later.month, later.day, 9, tzinfo=UTC)
        assert (await conn.fetchrow(RECORD_OUTCOME, intervention, "responded", answered))[
            "became_success"
        ]
    assert await asyncio.to_thread(main, [*aggregate, later.isoformat()]) == 0
    churn = ASSUMPTIONS["churn_prevention"]
    assert await _churn_row(owner_db, DAY) == (
        1,
        1,
        round(churn.lift * churn.value_per_unit, 2),
    )
    # One line per restated day, the intervention's among them.
    out = capsys.readouterr().out
    assert f"{DAY}: 1 row(s) for 1 tenant(s)" in out
    assert f"{later - timedelta(days=6)}: 0 row(s)" in out
