"""``enterprisehub impact aggregate --date D``: one row per tenant, feature and day.

For each tenant with activity on the day (``impact_tenants``, revision 0005)
the job opens that tenant's transaction (row-level security: it can only see
and write that tenant's rows), reads each feature's source table, deletes the
tenant's rows of that day and inserts the new ones. Re-running a day
therefore gives the same rows, whatever ran before. Every statement is a
constant with bound parameters.

Per feature (the seed's tables): usage = rows created that day; successes =
rows that did what the feature promises (feed events published to the
stream, vision analyses with a result and no ``error`` key, delivered
interventions whose lead responded or re-engaged (services/churn/success.py:
an outcome the CRM reports for an intervention that never reached its lead
is stored but is no success), coaching sessions with insights);
latency percentiles from the feature's own latency column (seconds).
Revenue uses the assumed point lift (``assumptions.py``); reports replace it
with a measured lift where one exists. ``operating_cost`` is the per-use API
cost: the Claude cost ledger's when the table exists, else the assumption.
``estimated_operating_cost`` is the part of it that the ledger only estimated:
calls that got no answer (a timeout), booked at an upper bound of what they
may have been billed (services/common/claude/estimate.py). A feature with
ledger cost and no row of the day (all its calls failed) gets a row with
that cost and no usage; ``impact_tenants`` lists ledger tenants (revision 0019).

Each run rewrites the ``RESTATED_DAYS`` days ending with the one it is given
(``aggregate_days``), not that day alone. A day's successes are its own
rows' (the seed's success rate is ``success_count / usage_count`` of one
row), but a churn intervention succeeds when its lead answers, which the CRM
reports by webhook hours or days after the intervention's day was
aggregated: the daily job aggregated only the day before and never came
back, so churn's successes, revenue and ROI stayed at what was known by
00:30 the next morning. Rewriting is idempotent per day, so restating the
last week costs only time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

from services.churn.success import SUCCEEDED_SQL
from services.common.database import Database
from services.impact.assumptions import FeatureAssumptions

_PERCENTILES: Final = (
    "percentile_cont(0.5) WITHIN GROUP (ORDER BY {col}) AS p50, "
    "percentile_cont(0.95) WITHIN GROUP (ORDER BY {col}) AS p95, "
    "percentile_cont(0.99) WITHIN GROUP (ORDER BY {col}) AS p99"
)


def _source(table: str, success: str, latency: str) -> str:
    return (
        f"SELECT count(*) AS usage, count(*) FILTER (WHERE {success}) AS successes, "  # noqa: S608 - constants
        f"{_PERCENTILES.format(col=latency)} FROM {table} "
        "WHERE created_at >= $1 AND created_at < $2"
    )


SOURCES: Final[Mapping[str, str]] = {
    "realtime_intelligence": _source(
        "realtime_intelligence_events", "published_at IS NOT NULL", "websocket_latency_seconds"
    ),
    "property_vision": _source(
        "property_vision_analyses",
        "analysis_results IS NOT NULL AND NOT (analysis_results ? 'error')",
        "analysis_latency_seconds",
    ),
    "churn_prevention": _source(
        "churn_interventions",
        SUCCEEDED_SQL,
        "intervention_latency_seconds",
    ),
    "ai_coaching": _source(
        "coaching_sessions",
        "coaching_insights NOT IN ('{}'::jsonb, '[]'::jsonb, 'null'::jsonb)",
        "analysis_latency_seconds",
    ),
}

#: The Claude cost ledger (integer micro-dollars per tenant, feature, model), when present:
#: all of a feature's cost of the day, and the part estimated for unanswered calls.
LEDGER_TABLE: Final = "claude_cost_ledger"
LEDGER_COST: Final = (
    "SELECT coalesce(sum(cost_micro_usd), 0) AS total, "
    "coalesce(sum(cost_micro_usd) FILTER (WHERE outcome <> 'answered'), 0) AS estimated "
    "FROM claude_cost_ledger WHERE feature = $1 AND created_at >= $2 AND created_at < $3"
)

UPSERT: Final = (
    "INSERT INTO phase3_business_metrics (metric_date, feature_name, usage_count, success_count, "
    "revenue_impact, operating_cost, estimated_operating_cost, performance_p50_seconds, "
    "performance_p95_seconds, performance_p99_seconds) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
    "ON CONFLICT ON CONSTRAINT phase3_business_metrics_one_row_per_day DO UPDATE SET "
    "usage_count = EXCLUDED.usage_count, success_count = EXCLUDED.success_count, "
    "revenue_impact = EXCLUDED.revenue_impact, operating_cost = EXCLUDED.operating_cost, "
    "estimated_operating_cost = EXCLUDED.estimated_operating_cost, "
    "performance_p50_seconds = EXCLUDED.performance_p50_seconds, "
    "performance_p95_seconds = EXCLUDED.performance_p95_seconds, "
    "performance_p99_seconds = EXCLUDED.performance_p99_seconds, updated_at = now()"
)


#: Days each run rewrites, ending with its day. A week: the churn window
#: (CHURN_WINDOW_DAYS, 7 by default) is how long the orchestrator waits before
#: it may contact a lead again at the same stage, so a lead's answer to one
#: intervention is expected within it. A later answer still sets succeeded_at;
#: ``impact aggregate --date D --days N`` restates further back.
RESTATED_DAYS: Final = 7


@dataclass(frozen=True, slots=True)
class DayTotals:
    """What one run wrote."""

    day: date
    tenants: int
    rows: int


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """``[day 00:00 UTC, next day 00:00 UTC)``."""
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start, start + timedelta(days=1)


async def active_tenants(db: Database, start: datetime, end: datetime) -> list[str]:
    """Ids of tenants with feature activity in ``[start, end)`` (ids only)."""
    async with db.unscoped() as conn:
        rows = await conn.fetch("SELECT impact_tenants($1, $2) AS tenant_id", start, end)
    return sorted(row["tenant_id"] for row in rows if row["tenant_id"])


async def _ledger_exists(conn: Any) -> bool:
    return bool(await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"public.{LEDGER_TABLE}"))


async def aggregate_tenant_day(
    db: Database, tenant_id: str, day: date, assumptions: Mapping[str, FeatureAssumptions]
) -> int:
    """Rewrite ``tenant_id``'s rows of ``day``; return how many were written."""
    start, end = day_bounds(day)
    written = 0
    async with db.tenant(tenant_id) as conn:
        has_ledger = await _ledger_exists(conn)
        await conn.execute("DELETE FROM phase3_business_metrics WHERE metric_date = $1", day)
        for feature, query in SOURCES.items():
            row = await conn.fetchrow(query, start, end)
            usage, successes = int(row["usage"]), int(row["successes"])
            a = assumptions[feature]
            driver = usage if a.driver == "usage" else successes
            revenue = round(driver * a.lift * a.value_per_unit, 2)
            cost, estimated = usage * a.api_cost_per_use, 0.0
            if has_ledger:
                booked = await conn.fetchrow(LEDGER_COST, feature, start, end)
                if booked["total"]:
                    cost = int(booked["total"]) / 1_000_000
                    estimated = int(booked["estimated"]) / 1_000_000
            # A day of spend without a result (every call timed out) is still a
            # day of cost: the row says so, with no usage and no revenue.
            if usage == 0 and cost == 0:
                continue
            await conn.execute(
                UPSERT,
                day,
                feature,
                usage,
                successes,
                revenue,
                round(cost, 4),
                round(estimated, 4),
                row["p50"],
                row["p95"],
                row["p99"],
            )
            written += 1
    return written


async def aggregate_day(
    db: Database, day: date, assumptions: Mapping[str, FeatureAssumptions]
) -> DayTotals:
    """Aggregate every active tenant's ``day``."""
    start, end = day_bounds(day)
    tenants = await active_tenants(db, start, end)
    rows = 0
    for tenant_id in tenants:
        rows += await aggregate_tenant_day(db, tenant_id, day, assumptions)
    return DayTotals(day, len(tenants), rows)


async def aggregate_days(
    db: Database, last_day: date, days: int, assumptions: Mapping[str, FeatureAssumptions]
) -> list[DayTotals]:
    """Aggregate the ``days`` days ending with ``last_day``, oldest first."""
    first = last_day - timedelta(days=days - 1)
    return [
        await aggregate_day(db, first + timedelta(days=offset), assumptions)
        for offset in range(days)
    ]
