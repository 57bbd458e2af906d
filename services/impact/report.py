"""Daily and weekly business-impact reports, computed from stored rows only.

Inputs: ``phase3_business_metrics`` (read per tenant, under row-level
security), the newest ``experiment_results`` row of each feature's primary
metric (``PRIMARY_METRICS``: the measured lifts), and the assumptions.
Nothing is read from live services, so any number in a report can be
recomputed from the database.

Revenue per feature = driver count x lift x value per unit, where the lift is
the measured one (with its interval) when an experiment has measured it,
else the assumed one (with its assumed range); the report says which.
Operating cost = the stored per-use cost plus the infrastructure allocation
per day (an assumption) for every day of the period, with or without rows:
the services run (and are paid for) from the infrastructure stage on, before
any tenant has the feature and on days nobody uses it. Charging only the days
with rows made an idle day free and inflated ROI. The days since a feature was
enabled are not used: the flag audit is kept per environment and says when
tenants got the feature, not when its infrastructure started costing.
ROI = (revenue - cost) / cost, as an interval: the seed defines it twice, and
this is its dashboard's ``net_impact / operating_cost``, not its weekly
report's ``revenue / cost`` (100 points higher): ROI is 0 at break-even, so
"positive net impact" is "ROI > 0", and the 500% criterion asks for revenue 6x
cost rather than restating the 20%-of-revenue budget
(services/impact/criteria.py). Each summary carries the seed's ROI criteria
(``criteria``: pass, fail or not yet measurable, with the numbers).
``estimated_operating_cost`` says how much of the operating cost is the
ledger's upper-bound estimate of Claude calls that got no answer (the rest
is billed, or assumed).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from services.common.database import Database
from services.common.flags import FEATURES
from services.impact.aggregate import active_tenants, day_bounds
from services.impact.assumptions import (
    PRIMARY_METRICS,
    FeatureAssumptions,
    Interval,
    annual_goal,
    benefit,
    lift_for,
    revenue,
    roi,
)
from services.impact.criteria import Totals, roi_criteria
from services.impact.stats import adjust

ROW_QUERY = (
    "SELECT tenant_id, metric_date, feature_name, usage_count, success_count, "
    "revenue_impact::float8 AS revenue_impact, operating_cost::float8 AS operating_cost, "
    "estimated_operating_cost::float8 AS estimated_operating_cost, "
    "performance_p50_seconds, performance_p95_seconds, performance_p99_seconds "
    "FROM phase3_business_metrics WHERE metric_date >= $1 AND metric_date <= $2 "
    "ORDER BY metric_date, feature_name"
)


async def tenant_rows(db: Database, tenant_id: str, start: date, end: date) -> list[dict[str, Any]]:
    """One tenant's stored rows for ``[start, end]`` (inclusive)."""
    async with db.tenant(tenant_id) as conn:
        return [dict(row) for row in await conn.fetch(ROW_QUERY, start, end)]


async def platform_rows(db: Database, start: date, end: date) -> list[dict[str, Any]]:
    """Every tenant's stored rows for ``[start, end]``, read tenant by tenant."""
    since, _ = day_bounds(start)
    _, until = day_bounds(end)
    rows: list[dict[str, Any]] = []
    for tenant_id in await active_tenants(db, since, until):
        rows.extend(await tenant_rows(db, tenant_id, start, end))
    return rows


async def latest_results(db: Database) -> list[dict[str, Any]]:
    """The newest stored result of every (feature, metric), with the family's adjusted p.

    These results are read together (the ROI page, the weekly report), so they
    are one family of tests across features and metrics: each carries
    ``p_value_adjusted`` (Holm, which controls the family-wise error rate under
    any dependence between the tests) and ``family_size``. A result without a
    Welch p-value is not part of the family (``p_value_adjusted`` None).
    """
    async with db.unscoped() as conn:
        rows = await conn.fetch(
            "SELECT DISTINCT ON (feature_name, metric) feature_name, metric, computed_at, "
            "result_id, result FROM experiment_results "
            "ORDER BY feature_name, metric, computed_at DESC, result_id DESC"
        )
    results = [
        {
            **row["result"],
            "feature_name": row["feature_name"],
            "metric": row["metric"],
            "computed_at": row["computed_at"].isoformat(),
            "result_id": row["result_id"],
        }
        for row in rows
    ]
    tested = [r for r in results if isinstance(r.get("p_value"), int | float)]
    for result, p_adjusted in zip(
        tested, adjust([float(r["p_value"]) for r in tested]), strict=True
    ):
        result["p_value_adjusted"] = p_adjusted
    for result in results:
        result.setdefault("p_value_adjusted", None)
        result["family_size"] = len(tested)
    return results


async def measured_lifts(db: Database) -> dict[str, dict[str, Any]]:
    """Feature -> the newest stored result of its primary metric (lift, interval, adjusted p).

    Only the primary metric (``PRIMARY_METRICS``): the lift replaces the assumed
    lift of that metric, and the newest result of any metric let a latency
    analysis stored after the conversion one price the feature.
    """
    lifts: dict[str, dict[str, Any]] = {}
    for result in await latest_results(db):
        feature = result.pop("feature_name")
        if result["metric"] == PRIMARY_METRICS.get(feature):
            result.pop("result_id")
            lifts[feature] = benefit(result["metric"], result)
    return lifts


@dataclass(frozen=True, slots=True)
class FeatureSummary:
    """One feature over a period."""

    feature: str
    usage: int
    successes: int
    tenants: int
    revenue: Interval
    lift_source: str
    operating_cost: float
    #: The part of ``operating_cost`` estimated for calls that got no answer.
    estimated_operating_cost: float
    roi: Interval | None
    hours_saved: float
    p95_seconds: float | None


def _features(
    rows: Sequence[Mapping[str, Any]],
    *,
    days: int,
    assumptions: Mapping[str, FeatureAssumptions],
    lifts: Mapping[str, Mapping[str, Any]],
    infra_share: float,
) -> dict[str, FeatureSummary]:
    """Each feature's summary of ``rows``, a period of ``days`` days."""
    by_feature: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        by_feature[row["feature_name"]].append(row)
    features: dict[str, FeatureSummary] = {}
    for feature in FEATURES:
        items = by_feature.get(feature, [])
        a = assumptions[feature]
        usage = sum(int(r["usage_count"]) for r in items)
        successes = sum(int(r["success_count"]) for r in items)
        lift = lift_for(feature, lifts.get(feature), assumptions)
        driver = usage if a.driver == "usage" else successes
        value = revenue(driver, lift.value, a.value_per_unit)
        cost = sum(float(r["operating_cost"]) for r in items)
        estimated = sum(float(r["estimated_operating_cost"]) for r in items)
        # Every day of the period, used or not: the infrastructure runs from the
        # infrastructure stage (0 %) on, whether or not a tenant used the feature.
        cost += a.infra_cost_per_day * days * infra_share
        p95s = [
            float(r["performance_p95_seconds"])
            for r in items
            if r["performance_p95_seconds"] is not None
        ]
        features[feature] = FeatureSummary(
            feature=feature,
            usage=usage,
            successes=successes,
            tenants=len({r["tenant_id"] for r in items}),
            revenue=value,
            lift_source=lift.source,
            operating_cost=round(cost, 2),
            estimated_operating_cost=round(estimated, 2),
            roi=roi(value, cost),
            hours_saved=usage * a.hours_saved_per_use,
            p95_seconds=max(p95s) if p95s else None,
        )
    return features


def _totals(features: Mapping[str, FeatureSummary]) -> Totals:
    return Totals(
        Interval(
            sum(f.revenue.point for f in features.values()),
            sum(f.revenue.low for f in features.values()),
            sum(f.revenue.high for f in features.values()),
        ),
        sum(f.operating_cost for f in features.values()),
    )


def summarize(
    rows: Sequence[Mapping[str, Any]],
    *,
    start: date,
    end: date,
    assumptions: Mapping[str, FeatureAssumptions],
    lifts: Mapping[str, Mapping[str, Any]],
    infra_share: float = 1.0,
) -> dict[str, Any]:
    """The seed's weekly summary (any period): per feature, platform totals and the
    seed's ROI criteria (``criteria``, services/impact/criteria.py).

    ``infra_share`` scales the infrastructure allocation (1.0 for the whole
    platform; a tenant's dashboard passes its share).
    """
    days = (end - start).days + 1

    def first(n: int) -> Totals:
        last = start + timedelta(days=n - 1)
        head = [r for r in rows if r["metric_date"] <= last]
        return _totals(
            _features(head, days=n, assumptions=assumptions, lifts=lifts, infra_share=infra_share)
        )

    features = _features(
        rows, days=days, assumptions=assumptions, lifts=lifts, infra_share=infra_share
    )
    totals = _totals(features)
    total_revenue, total_cost = totals.revenue, totals.cost
    total_estimated = sum(f.estimated_operating_cost for f in features.values())
    to_annual = 365 / days
    goal_low, goal_high = annual_goal(assumptions)
    return {
        "period": {"start": start.isoformat(), "end": end.isoformat(), "days": days},
        "features": {
            name: {
                "usage": f.usage,
                "successes": f.successes,
                "tenants": f.tenants,
                "revenue": _interval(f.revenue),
                "lift_source": f.lift_source,
                "operating_cost": f.operating_cost,
                "estimated_operating_cost": f.estimated_operating_cost,
                "net_impact": round(f.revenue.point - f.operating_cost, 2),
                "roi": _interval(f.roi),
                "hours_saved": round(f.hours_saved, 1),
                "worst_daily_p95_seconds": f.p95_seconds,
                "projected_annual_revenue": _interval(f.revenue.scale(to_annual)),
                "annual_goal": {
                    "low": assumptions[name].annual_value_low,
                    "high": assumptions[name].annual_value_high,
                },
            }
            for name, f in features.items()
        },
        "total_platform": {
            "revenue": _interval(total_revenue),
            "operating_cost": round(total_cost, 2),
            "estimated_operating_cost": round(total_estimated, 2),
            "net_impact": round(total_revenue.point - total_cost, 2),
            "roi": _interval(roi(total_revenue, total_cost)),
            "projected_annual_revenue": _interval(total_revenue.scale(to_annual)),
            "annual_goal": {"low": goal_low, "high": goal_high},
        },
        "criteria": roi_criteria(days=days, first=first),
    }


def _interval(value: Interval | None) -> dict[str, float] | None:
    if value is None:
        return None
    return {
        "point": round(value.point, 4),
        "low": round(value.low, 4),
        "high": round(value.high, 4),
    }


def week_of(start: date) -> tuple[date, date]:
    """``[start, start + 6 days]``."""
    return start, start + timedelta(days=6)
