"""Stored experiment results are read as one family: Holm across features and metrics."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

import pytest
from statsmodels.stats.multitest import multipletests

from services.common.database import Database
from services.impact.assumptions import (
    ASSUMPTIONS,
    PRIMARY_METRICS,
    annual_goal,
    load_assumptions,
)
from services.impact.report import latest_results, measured_lifts, summarize


async def _store(
    owner_db: Database, feature: str, metric: str, days_ago: int, **result: Any
) -> None:
    async with owner_db.unscoped() as conn:
        await conn.execute(
            "INSERT INTO experiment_results (feature_name, metric, window_start, window_end, "
            "result, computed_at) VALUES ($1, $2, current_date - 7, current_date, $3, "
            "now() - make_interval(days => $4))",
            feature,
            metric,
            {"lift": 0.05, "lift_ci_low": 0.01, "lift_ci_high": 0.09, **result},
            days_ago,
        )


async def test_every_features_metrics_are_one_holm_family(owner_db: Database, db: Database) -> None:
    await _store(owner_db, "property_vision", "match_rate", 3, p_value=0.01)
    await _store(owner_db, "property_vision", "latency_p95", 1, p_value=0.04, lift=0.02)
    await _store(owner_db, "ai_coaching", "agent_daily_revenue", 9, p_value=0.5)  # superseded
    await _store(owner_db, "ai_coaching", "agent_daily_revenue", 2, p_value=0.03)
    await _store(owner_db, "churn_prevention", "retention_rate", 2)  # no test: not in the family

    results = {(r["feature_name"], r["metric"]): r for r in await latest_results(db)}
    assert set(results) == {
        ("property_vision", "match_rate"),
        ("property_vision", "latency_p95"),
        ("ai_coaching", "agent_daily_revenue"),
        ("churn_prevention", "retention_rate"),
    }
    family = [
        ("ai_coaching", "agent_daily_revenue", 0.03),
        ("property_vision", "latency_p95", 0.04),
        ("property_vision", "match_rate", 0.01),
    ]
    _, expected, _, _ = multipletests([p for *_, p in family], method="holm")
    for (feature, metric, _), p_adjusted in zip(family, expected, strict=True):
        assert abs(results[feature, metric]["p_value_adjusted"] - p_adjusted) < 1e-12
        assert results[feature, metric]["family_size"] == 3
    assert results["churn_prevention", "retention_rate"]["p_value_adjusted"] is None

    # The lift used for revenue is each feature's newest result of its primary
    # metric (a newer latency result is in the family, not the price), with its adjusted p.
    lifts = await measured_lifts(db)
    assert lifts["property_vision"]["metric"] == "match_rate"
    assert lifts["property_vision"]["lift"] == 0.05
    assert (
        lifts["property_vision"]["p_value_adjusted"]
        == results["property_vision", "match_rate"]["p_value_adjusted"]
    )
    assert lifts["ai_coaching"]["p_value"] == 0.03
    assert "result_id" not in lifts["ai_coaching"]


@pytest.mark.parametrize("primary_first", [True, False], ids=["primary-first", "primary-last"])
async def test_the_measured_lift_is_the_primary_metrics_whatever_was_stored_last(
    owner_db: Database, db: Database, primary_first: bool
) -> None:
    # A latency analysis stored after the conversion one replaced the revenue lift.
    primary = PRIMARY_METRICS["realtime_intelligence"]
    stored = [(primary, {"lift": 0.08}), ("websocket_latency_p95", {"lift": -0.3})]
    for days_ago, (metric, result) in zip(
        (2, 1), stored if primary_first else stored[::-1], strict=True
    ):
        await _store(owner_db, "realtime_intelligence", metric, days_ago, **result)
    lifts = await measured_lifts(db)
    assert lifts["realtime_intelligence"]["metric"] == primary
    assert lifts["realtime_intelligence"]["lift"] == 0.08
    # Only a secondary metric stored: no measured lift, the assumed one prices the feature.
    await _store(owner_db, "ai_coaching", "coaching_latency_p95", 0, lift=-0.5)
    assert "ai_coaching" not in await measured_lifts(db)


async def test_churns_measured_lift_is_the_churn_reduction(
    owner_db: Database, db: Database
) -> None:
    """Churn's assumed lift is a churn reduction (the seed's 15%). A retention-rate
    lift in its place priced a 15% reduction (30% to 25.5% churn) as a 6.4% gain
    (70% to 74.5% retention); the churn rate's lift, as measured, is negative."""
    await _store(
        owner_db,
        "churn_prevention",
        PRIMARY_METRICS["churn_prevention"],
        1,
        lift=-0.15,
        lift_ci_low=-0.25,
        lift_ci_high=-0.05,
        seq_lift_ci_low=-0.3,
        seq_lift_ci_high=0.01,
    )
    churn = (await measured_lifts(db))["churn_prevention"]
    assert (churn["lift"], churn["lift_ci_low"], churn["lift_ci_high"]) == (0.15, 0.05, 0.25)
    assert (churn["seq_lift_ci_low"], churn["seq_lift_ci_high"]) == (-0.01, 0.3)
    # The ROI page's table shows each result as measured.
    [stored] = [r for r in await latest_results(db) if r["feature_name"] == "churn_prevention"]
    assert stored["lift"] == -0.15


def test_the_seeds_yearly_goal_is_the_sum_of_its_features_values() -> None:
    """$265K-440K, and per feature $75K-120K, $75K-150K, $55K-80K, $60K-90K."""
    assert annual_goal(ASSUMPTIONS) == (265_000, 440_000)
    goals = {f: (a.annual_value_low, a.annual_value_high) for f, a in ASSUMPTIONS.items()}
    assert goals == {
        "realtime_intelligence": (75_000, 120_000),
        "property_vision": (75_000, 150_000),
        "churn_prevention": (55_000, 80_000),
        "ai_coaching": (60_000, 90_000),
    }


def test_each_feature_is_projected_to_a_year_beside_its_own_goal() -> None:
    """The per-feature yearly values were declared and shown nowhere: a feature far
    behind its goal hid inside a platform total that another feature carried."""
    day = date(2026, 11, 2)
    rows = [
        {
            "metric_date": day,
            "feature_name": "property_vision",
            "tenant_id": "tenant-a",
            "usage_count": 10,
            "success_count": 0,
            "operating_cost": 0.5,
            "estimated_operating_cost": 0.0,
            "performance_p95_seconds": 1.0,
        }
    ]
    overrides = load_assumptions('{"ai_coaching": {"annual_value_high": 100000}}')
    summary = summarize(
        rows, start=day, end=day + timedelta(days=6), assumptions=overrides, lifts={}
    )
    vision = summary["features"]["property_vision"]
    assert vision["annual_goal"] == {"low": 75_000, "high": 150_000}
    a = ASSUMPTIONS["property_vision"]
    assert vision["projected_annual_revenue"]["point"] == pytest.approx(
        10 * a.lift * a.value_per_unit * 365 / 7
    )
    # The platform's goal follows the assumptions the report was given.
    assert summary["total_platform"]["annual_goal"] == {"low": 265_000, "high": 450_000}


@pytest.mark.parametrize(
    ("overrides", "refused"),
    [
        ('{"ai_coaching": {"lift": 0.3}}', "lift_low (0.1) <= lift (0.3) <= lift_high (0.25)"),
        ('{"ai_coaching": {"lift_low": 0.2}}', "lift_low (0.2) <= lift (0.1)"),
        ('{"churn_prevention": {"annual_value_low": 90000}}', "annual_value_low (90000)"),
    ],
)
def test_an_override_that_turns_a_range_inside_out_is_refused(overrides: str, refused: str) -> None:
    """One end of a range overridden past the other was accepted: every interval built
    on it (revenue, ROI, the yearly goal) had its point outside its bounds."""
    with pytest.raises(ValueError, match=re.escape(refused)):
        load_assumptions(overrides)
    # Moving the whole range is accepted.
    moved = load_assumptions('{"ai_coaching": {"lift": 0.3, "lift_high": 0.4}}')
    assert (moved["ai_coaching"].lift, moved["ai_coaching"].lift_high) == (0.3, 0.4)


def test_infrastructure_is_charged_for_every_day_of_the_period() -> None:
    """The seed allocates infrastructure per day, used or not: charging only the days
    with rows made an idle day free and inflated ROI (one used day in a week paid
    one day of infrastructure)."""
    day = date(2026, 11, 2)
    row = {
        "metric_date": day,
        "feature_name": "ai_coaching",
        "tenant_id": "tenant-a",
        "usage_count": 10,
        "success_count": 10,
        "operating_cost": 0.1,
        "estimated_operating_cost": 0.0,
        "performance_p95_seconds": 1.0,
    }
    summary = summarize(
        [row], start=day, end=day + timedelta(days=6), assumptions=ASSUMPTIONS, lifts={}
    )
    for feature, a in ASSUMPTIONS.items():
        stored = 0.1 if feature == "ai_coaching" else 0.0
        cost = summary["features"][feature]["operating_cost"]
        assert cost == pytest.approx(stored + 7 * a.infra_cost_per_day)
    # A tenant's share scales the allocation, not the days.
    shared = summarize(
        [row],
        start=day,
        end=day + timedelta(days=6),
        assumptions=ASSUMPTIONS,
        lifts={},
        infra_share=0.25,
    )
    coaching = shared["features"]["ai_coaching"]["operating_cost"]
    assert coaching == pytest.approx(0.1 + 7 * ASSUMPTIONS["ai_coaching"].infra_cost_per_day / 4)


def _coaching_row(day: date, uses: int, cost: float) -> dict[str, Any]:
    """An AI Coaching row: $20 of assumed revenue a use (10% x $200)."""
    return {
        "metric_date": day,
        "feature_name": "ai_coaching",
        "tenant_id": "tenant-a",
        "usage_count": uses,
        "success_count": uses,
        "operating_cost": cost,
        "estimated_operating_cost": 0.0,
        "performance_p95_seconds": 1.0,
    }


#: The assumed infrastructure of all four features, a day ($15 + $20 + $10 + $15).
INFRA_A_DAY = sum(a.infra_cost_per_day for a in ASSUMPTIONS.values())


def _criteria(rows: list[dict[str, Any]], start: date, days: int) -> dict[str, Any]:
    end = start + timedelta(days=days - 1)
    summary = summarize(rows, start=start, end=end, assumptions=ASSUMPTIONS, lifts={})
    criteria: dict[str, Any] = summary["criteria"]
    return criteria


def test_roi_criteria_inside_their_windows() -> None:
    """Ten days: net impact already positive (pass), ROI short of 500% with 80 days
    to go (not yet measurable), cost over 20% of revenue (fail)."""
    start = date(2026, 11, 2)
    criteria = _criteria([_coaching_row(start, 100, 1.0)], start, 10)
    cost = 10 * INFRA_A_DAY + 1.0
    net = criteria["positive_net_impact_30d"]
    assert (net["status"], net["net_impact"]) == ("pass", pytest.approx(2000 - cost))
    assert net["days_measured"] == 10
    ratio = criteria["roi_500_90d"]
    assert ratio["status"] == "not_yet_measurable"
    assert ratio["roi"] == pytest.approx((2000 - cost) / cost, abs=1e-4)
    assert ratio["roi_low"] <= ratio["roi"] <= ratio["roi_high"]
    budget = criteria["cost_within_budget"]
    assert budget["status"] == "fail"
    assert budget["cost_share_of_revenue"] == pytest.approx(cost / 2000, abs=1e-4)
    assert budget["threshold"] == 0.20


def test_roi_criteria_are_judged_on_the_first_days_of_their_window() -> None:
    """A hundred days, all the revenue on day 40: too late for the 30-day net impact
    (fail, though the period's net is positive), in time for 500% within 90 days."""
    start = date(2026, 11, 2)
    rows = [_coaching_row(start + timedelta(days=39), 20_000, 200.0)]
    criteria = _criteria(rows, start, 100)
    net = criteria["positive_net_impact_30d"]
    assert (net["status"], net["net_impact"]) == ("fail", pytest.approx(-30 * INFRA_A_DAY))
    ratio = criteria["roi_500_90d"]
    cost = 90 * INFRA_A_DAY + 200
    assert ratio["status"] == "pass"
    assert ratio["roi"] == pytest.approx((400_000 - cost) / cost, abs=1e-4)
    assert criteria["cost_within_budget"]["status"] == "pass"


def test_roi_criteria_with_no_usage_fail_once_their_deadline_passes() -> None:
    start = date(2026, 11, 2)
    criteria = _criteria([], start, 30)
    assert criteria["positive_net_impact_30d"]["status"] == "fail"
    # ROI is -100% after 30 days: 60 days remain to reach 500%.
    assert criteria["roi_500_90d"]["status"] == "not_yet_measurable"
    assert criteria["roi_500_90d"]["roi"] == -1.0
    # No revenue at all: any cost is over budget.
    budget = criteria["cost_within_budget"]
    assert (budget["status"], budget["cost_share_of_revenue"]) == ("fail", None)
    assert _criteria([], start, 90)["roi_500_90d"]["status"] == "fail"
