"""``decide``: the schedule's rules, one case each, including the ones that must never advance."""

from __future__ import annotations

import dataclasses
import math

import pytest

from alerts.catalog import rules, selected_metrics
from services.rollout.observe import error_rate_query, latency_query
from services.rollout.schedule import (
    PLANS,
    STAGES,
    Observations,
    Stage,
    Verdict,
    decide,
    stage_for,
)

PLAN = PLANS["property_vision"]  # target 1.5 s, rollback above 3 s
START = stage_for(0)
WEEK1 = stage_for(10)
WEEK3 = stage_for(50)
FULL = stage_for(100)
assert START is not None
assert WEEK1 is not None
assert WEEK3 is not None
assert FULL is not None

GOOD = Observations(
    days_in_stage=7.5,
    latency_p95_seconds=1.0,
    error_rate=0.002,
    adoption=0.8,
    n_control=600,
    n_treatment=590,
    srm_p_value=0.77,
    lift=0.05,
    lift_ci_low=0.01,
)


def _with(**changes: float | None) -> Observations:
    return dataclasses.replace(GOOD, **changes)


def test_schedule_is_the_seeds() -> None:
    assert [s.percentage for s in STAGES] == [0, 10, 25, 50, 100]
    assert [s.next_percentage for s in STAGES] == [10, 25, 50, 100, None]
    assert sum(s.min_days for s in STAGES) >= 27
    assert stage_for(33) is None


def test_everything_met_advances_to_the_next_stage() -> None:
    decision = decide(WEEK1, GOOD, plan=PLAN)
    assert (decision.verdict, decision.target_percentage) == (Verdict.ADVANCE, 25)
    assert decide(WEEK3, GOOD, plan=PLAN).target_percentage == 100


#: What the 0 % stage is judged on: the service, since the feature serves no one.
HEALTHY_SERVICE = Observations(days_in_stage=0.1, service_up=1.0, error_rate=0.0)


@pytest.mark.parametrize(
    ("stage", "field"),
    [
        (WEEK3, f.name)
        for f in dataclasses.fields(Observations)
        if f.name not in {"service_up", "daily_active_usage"}
    ]
    + [(START, "service_up"), (START, "error_rate"), (START, "days_in_stage")]
    + [(FULL, "adoption"), (FULL, "daily_active_usage")],
    ids=lambda value: value if isinstance(value, str) else f"{value.percentage:g}%",
)
@pytest.mark.parametrize("bad", [None, math.nan])
def test_missing_or_nan_input_never_advances(stage: Stage, field: str, bad: float | None) -> None:
    base = GOOD if stage.feature_traffic else HEALTHY_SERVICE
    if stage is FULL:
        base = dataclasses.replace(base, daily_active_usage=0.7)
    decision = decide(stage, dataclasses.replace(base, **{field: bad}), plan=PLAN)
    assert decision.verdict is Verdict.HOLD
    assert field in decision.reason


def test_empty_observations_hold() -> None:
    assert decide(WEEK1, Observations(), plan=PLAN).verdict is Verdict.HOLD


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"latency_p95_seconds": 3.2}, "p95 latency"),
        ({"error_rate": 0.11}, "error rate"),
        # A breach wins even when other inputs are missing.
        ({"error_rate": 0.2, "n_control": None, "days_in_stage": None}, "error rate"),
    ],
)
def test_guardrail_breach_rolls_back(changes: dict[str, float | None], words: str) -> None:
    decision = decide(WEEK1, _with(**changes), plan=PLAN)
    assert decision.verdict is Verdict.ROLLBACK
    assert words in decision.reason
    assert "guardrail" in decision.reason
    assert decision.target_percentage == 0


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"srm_p_value": 0.0004}, "sample-ratio mismatch"),
        ({"days_in_stage": 6.9}, "days in stage"),
        ({"n_treatment": 15}, "smaller arm"),
        ({"latency_p95_seconds": 1.6}, "target"),
        ({"error_rate": 0.02}, "error rate"),
        ({"adoption": 0.4}, "adoption"),
    ],
)
def test_unmet_criterion_holds(changes: dict[str, float], words: str) -> None:
    decision = decide(WEEK1, _with(**changes), plan=PLAN)
    assert decision.verdict is Verdict.HOLD
    assert words in decision.reason


def test_week_three_needs_the_interval_above_zero() -> None:
    assert decide(WEEK3, _with(lift_ci_low=-0.001), plan=PLAN).verdict is Verdict.HOLD
    # Week 1 does not look at the lift at all.
    assert decide(WEEK1, _with(lift_ci_low=-0.5, lift=-0.1), plan=PLAN).verdict is Verdict.ADVANCE


def test_full_rollout_holds() -> None:
    decision = decide(FULL, _with(daily_active_usage=0.7), plan=PLAN)
    assert decision.verdict is Verdict.HOLD
    assert "complete" in decision.reason
    # The seed's week-4 adoption criteria, reported with their numbers.
    assert "adoption 80.0% (target 80%+)" in decision.reason
    assert "daily active usage 70.0% (target 60%+)" in decision.reason


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"adoption": 0.79, "daily_active_usage": 0.7}, "adoption 79.0% below 80%"),
        ({"daily_active_usage": 0.59}, "daily active usage 59.0% below 60%"),
    ],
)
def test_full_rollout_reports_adoption_and_daily_active_usage_below_the_seeds(
    changes: dict[str, float], words: str
) -> None:
    """ "80%+ feature adoption rate among enabled tenants", "60%+ daily active usage
    rate": the 100 % stage had no criteria, so it reported complete whatever the usage."""
    decision = decide(FULL, _with(**changes), plan=PLAN)
    assert decision.verdict is Verdict.HOLD
    assert words in decision.reason
    assert "complete" not in decision.reason
    # "80%+" and "60%+": exactly the threshold meets it.
    exact = decide(FULL, _with(adoption=0.8, daily_active_usage=0.6), plan=PLAN)
    assert "complete" in exact.reason


@pytest.mark.parametrize(
    ("stage", "threshold"), [(WEEK1, 0.50), (stage_for(25), 0.50), (WEEK3, 0.60)]
)
def test_adoption_must_exceed_the_seeds_share(stage: Stage | None, threshold: float) -> None:
    """The seed's "Feature usage >50%" and "Feature adoption >60%" are strict: exactly
    50% or 60% passed with ``adoption < min_adoption``."""
    assert stage is not None
    at = decide(stage, _with(adoption=threshold), plan=PLAN)
    assert at.verdict is Verdict.HOLD
    assert f"adoption {threshold:.1%} not above {threshold:.0%}" in at.reason
    assert decide(stage, _with(adoption=threshold + 0.001), plan=PLAN).verdict is Verdict.ADVANCE


@pytest.mark.parametrize("feature", sorted(PLANS))
def test_infrastructure_stage_needs_only_the_services_health(feature: str) -> None:
    # At 0 % the feature has no latency of its own (websocket-manager refuses
    # every socket, churn sends nothing): requiring it held realtime and churn
    # at 0 % forever with "no data for latency_p95_seconds".
    decision = decide(START, HEALTHY_SERVICE, plan=PLANS[feature])
    assert (decision.verdict, decision.target_percentage) == (Verdict.ADVANCE, 10)


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"service_up": 0.0}, "scrape targets down"),
        ({"error_rate": 0.02}, "error rate"),
        # Not healthy enough to start: a hold, since there is nothing to roll back.
        ({"error_rate": 0.5}, "guardrail: error rate"),
        ({"latency_p95_seconds": 9.0}, "guardrail: p95 latency"),
    ],
)
def test_an_unhealthy_service_holds_at_zero(changes: dict[str, float], words: str) -> None:
    decision = decide(START, dataclasses.replace(HEALTHY_SERVICE, **changes), plan=PLAN)
    assert decision.verdict is Verdict.HOLD
    assert words in decision.reason


@pytest.mark.parametrize("feature", sorted(PLANS))
def test_each_feature_is_judged_on_the_series_its_alerts_read(feature: str) -> None:
    # `rollout advance` and the alerts must agree on what "the feature's latency"
    # is: a guardrail on the whole service's HTTP would hold or roll back one
    # feature for another's traffic (and count health probes as answers).
    plan = PLANS[feature]
    histogram = f"{plan.latency_histogram}_bucket"
    latency = latency_query(plan.latency_histogram, plan.latency_selector(), "1d")
    errors = error_rate_query(plan.request_selector(), "1d")
    assert selected_metrics(latency) == {histogram}  # parses as PromQL
    assert selected_metrics(errors) == {"http_requests_total"}
    assert f'job="{plan.service}"' in plan.latency_selector()
    assert "route=" in plan.request_selector()  # API answers only
    read_by_alerts = [
        rule.body["expr"] for rule in rules() if histogram in selected_metrics(rule.body["expr"])
    ]
    assert any(plan.latency_matchers in expr for expr in read_by_alerts), (
        f"no alert reads {histogram} with {plan.latency_matchers}"
    )
