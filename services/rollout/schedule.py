"""The seed's 30-day schedule and weekly success criteria, as data, and ``decide``.

Schedule (seed, "Deployment Phases"): infrastructure first (days 1-3, 0%),
then 10% (week 1), 25% (week 2), 50% (week 3), 100% (week 4), each stage held
at least a week. ``decide(stage, observations)`` is the one pure function
that turns what was measured into ``advance``, ``hold`` or ``rollback``, with
the reason. Its rules, in order:

1. A guardrail breach (p95 latency above the rollback threshold, or an error
   rate above the rollback rate; the seed's ``rollback_config``) -> rollback
   (at 0 %, where the feature is already off, -> hold).
2. A missing, empty or NaN input that the stage needs -> hold, never advance.
3. A sample-ratio mismatch (SRM p < 0.001): the split is broken, so the
   experiment's numbers cannot be trusted -> hold.
4. Less than the stage's minimum time, or fewer tenants per arm than its
   minimum sample -> hold.
5. A success criterion not met (latency target, error rate, adoption, daily
   active usage, lift) -> hold.
6. Otherwise -> advance to the next stage (at 100 %, hold: the rollout is
   complete, and the reason reports the adoption and daily active usage).

Adoption follows the seed's words: above 50 % at weeks 1 and 2 ("usage > 50%
of enabled tenants") and above 60 % at week 3 ("adoption > 60%"), so exactly
50 % or 60 % holds; at least 80 % at 100 % ("80%+ feature adoption rate among
enabled tenants"), with at least 60 % daily active usage ("60%+ daily active
usage rate"). Before 100 % adoption is the experiment's (the share of its
treatment tenants that used the feature); at 100 % there is no control arm to
analyse, and every tenant has the feature, so both rates come from the stored
daily rows (``services/impact/usage.py``).

The move off 0 % is judged on the service, not the feature: at 0 % no tenant
has the feature, so it has no traffic of its own (websocket-manager refuses
every socket with ``feature_disabled``, churn sends nothing) and its latency
has no data, which held realtime and churn at 0 % forever. The infrastructure
stage (seed: "all services healthy, health checks passing") needs instead
every scrape target of the service up and its 5xx share, over all its
answers (readiness probes of the feature path, which answer 503 while a store
the feature needs is down, included), below the stage's maximum.

Criteria the seed lists but nothing measures (user satisfaction, support
tickets, NPS) are not invented here; docs/architecture.md names them as
left to the operator's judgement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Final, Literal

SRM_ALPHA: Final = 0.001


class Verdict(StrEnum):
    """What ``rollout advance`` does."""

    ADVANCE = "advance"
    HOLD = "hold"
    ROLLBACK = "rollback"


@dataclass(frozen=True, slots=True)
class Guardrails:
    """Thresholds whose breach rolls a feature back (seed: rollback_config.yml)."""

    latency_p95_seconds: float
    error_rate: float = 0.10


@dataclass(frozen=True, slots=True)
class Stage:
    """One step of the schedule and what must hold before leaving it."""

    percentage: float
    next_percentage: float | None
    min_days: float
    #: Tenants per arm before the experiment's numbers count (0: not needed).
    min_units_per_arm: int = 0
    max_error_rate: float = 0.01
    #: Share of the tenants with the feature that used it in the stage: above this
    #: (the seed's "> 50%"), or at least this with ``adoption_at_least`` ("80%+").
    min_adoption: float | None = None
    adoption_at_least: bool = False
    #: Mean share, over the stage's days, of the tenants using the feature that day:
    #: at least this (the seed's "60%+ daily active usage rate").
    min_daily_active: float | None = None
    #: Where adoption is measured: the stage's experiment (its treatment tenants'
    #: ``used`` share), or the stored daily rows (at 100 %, with no control arm).
    adoption_source: Literal["experiment", "rows"] = "experiment"
    #: The relative lift's point estimate must exceed this ("impact visible").
    min_lift: float | None = None
    #: The always-valid interval's lower bound must exceed this ("ROI validated").
    min_lift_ci_low: float | None = None
    label: str = ""
    #: False at 0 %: the feature serves no tenant, so the stage is judged on the
    #: service's health (``service_up`` and the error rate of all its answers),
    #: not on the feature's own latency and routes, which have no data.
    feature_traffic: bool = True


#: The seed's schedule: 0 -> 10 -> 25 -> 50 -> 100 over 30 days.
STAGES: Final[tuple[Stage, ...]] = (
    Stage(
        0,
        10,
        min_days=0,
        label="infrastructure (days 1-3): healthy before any tenant",
        feature_traffic=False,
    ),
    Stage(
        10,
        25,
        min_days=7,
        min_units_per_arm=20,
        min_adoption=0.50,
        label="week 1: targets met, no critical errors, usage > 50% of enabled tenants",
    ),
    Stage(
        25,
        50,
        min_days=7,
        min_units_per_arm=50,
        min_adoption=0.50,
        min_lift=0.0,
        label="week 2: week-1 criteria kept, business impact visible",
    ),
    Stage(
        50,
        100,
        min_days=7,
        min_units_per_arm=100,
        min_adoption=0.60,
        min_lift=0.0,
        min_lift_ci_low=0.0,
        label="week 3: positive lift validated (always-valid interval above 0), adoption > 60%",
    ),
    Stage(
        100,
        None,
        min_days=6,
        min_adoption=0.80,
        adoption_at_least=True,
        min_daily_active=0.60,
        adoption_source="rows",
        label="week 4: full rollout, adoption 80%+ and daily active usage 60%+",
    ),
)


@dataclass(frozen=True, slots=True)
class FeaturePlan:
    """Per-feature targets: the seed's performance targets and rollback thresholds.

    The latency is the feature's own (the series its alerts read, not the whole
    service's HTTP), and the error rate counts the answers of the feature's API
    routes only: health probes and scrapes would water it down.
    """

    service: str
    latency_target_seconds: float
    guardrails: Guardrails = field(default_factory=lambda: Guardrails(1.0))
    #: The histogram whose p95 is the feature's latency.
    latency_histogram: str = "http_request_duration_seconds"
    #: Label matchers of that histogram's series, after ``job="<service>"``.
    latency_matchers: str = 'route=~"/v1/.+"'
    #: Label matchers of the feature's answers in ``http_requests_total``, after the job.
    request_matchers: str = 'route=~"/v1/.+"'

    def latency_selector(self) -> str:
        """The label matchers of the latency histogram's series."""
        return ",".join(filter(None, (f'job="{self.service}"', self.latency_matchers)))

    def request_selector(self) -> str:
        """The label matchers of the feature's answers (the error rate)."""
        return ",".join(filter(None, (f'job="{self.service}"', self.request_matchers)))

    def service_selector(self) -> str:
        """The label matchers of the whole service (its targets, all its answers)."""
        return f'job="{self.service}"'


#: The vision and coaching routes, as their alerts select them (alerts/rules/features.yml).
VISION_ROUTES: Final = 'method="POST",route=~"/v1/ml/vision/analyses.*"'
COACHING_ROUTES: Final = 'method="POST",route="/v1/coaching/sessions"'

#: Feature -> the service whose metrics judge it, its p95 target, its guardrail.
PLANS: Final[dict[str, FeaturePlan]] = {
    # Delivery to a live socket, the seed's 50 ms (RealtimeLatencyRollback's series).
    "realtime_intelligence": FeaturePlan(
        "websocket-manager",
        0.050,
        Guardrails(latency_p95_seconds=0.200),
        latency_histogram="websocket_message_latency_seconds",
        latency_matchers='delivery="live"',
    ),
    "property_vision": FeaturePlan(
        "ml-services",
        1.5,
        Guardrails(latency_p95_seconds=3.0),
        latency_matchers=VISION_ROUTES,
        request_matchers=VISION_ROUTES,
    ),
    # The seed sets no rollback latency for these two: twice the target. Churn's
    # is detection to the CRM accepting the first send (its 30 s promise).
    "churn_prevention": FeaturePlan(
        "churn-orchestrator",
        30.0,
        Guardrails(latency_p95_seconds=60.0),
        latency_histogram="churn_intervention_latency_seconds",
        latency_matchers="",
    ),
    "ai_coaching": FeaturePlan(
        "coaching-engine",
        2.0,
        Guardrails(latency_p95_seconds=4.0),
        latency_matchers=COACHING_ROUTES,
        request_matchers=COACHING_ROUTES,
    ),
}


def stage_for(percentage: float) -> Stage | None:
    """The schedule stage at ``percentage``, or None off the schedule."""
    for stage in STAGES:
        if math.isclose(stage.percentage, percentage):
            return stage
    return None


@dataclass(frozen=True, slots=True)
class Observations:
    """What was measured for one feature in its current stage (None: not measured)."""

    days_in_stage: float | None = None
    #: ``min(up)`` over the service's scrape targets: 1 when every one is up.
    service_up: float | None = None
    latency_p95_seconds: float | None = None
    error_rate: float | None = None
    adoption: float | None = None
    daily_active_usage: float | None = None
    n_control: float | None = None
    n_treatment: float | None = None
    srm_p_value: float | None = None
    lift: float | None = None
    lift_ci_low: float | None = None

    def as_dict(self) -> dict[str, float | None]:
        """Field -> value, NaN as None (JSON for the decision record)."""
        out: dict[str, float | None] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            out[item.name] = None if value is None or not math.isfinite(value) else value
        return out


@dataclass(frozen=True, slots=True)
class Decision:
    """``decide``'s answer."""

    verdict: Verdict
    reason: str
    target_percentage: float | None = None


def _required(stage: Stage) -> tuple[str, ...]:
    names = ["days_in_stage", "error_rate"]
    names.append("latency_p95_seconds" if stage.feature_traffic else "service_up")
    if stage.min_units_per_arm:
        names += ["n_control", "n_treatment", "srm_p_value"]
    if stage.min_adoption is not None:
        names.append("adoption")
    if stage.min_daily_active is not None:
        names.append("daily_active_usage")
    if stage.min_lift is not None:
        names.append("lift")
    if stage.min_lift_ci_low is not None:
        names.append("lift_ci_low")
    return tuple(names)


def decide(stage: Stage, observations: Observations, *, plan: FeaturePlan) -> Decision:
    """Advance, hold or roll back, and why (the rules are in the module docstring)."""
    known = {k: v for k, v in observations.as_dict().items() if v is not None}
    breach = _guardrail_breach(plan.guardrails, known)
    if breach is not None:
        if stage.percentage == 0:
            # Nothing to roll back: the feature is off. Not healthy enough to start.
            return Decision(Verdict.HOLD, f"{breach}: holding at 0%")
        return Decision(Verdict.ROLLBACK, breach, 0)
    missing = [name for name in _required(stage) if name not in known]
    if missing:
        return Decision(Verdict.HOLD, f"no data for {', '.join(missing)}: holding")
    return _criteria(stage, plan, known)


def _guardrail_breach(guard: Guardrails, known: dict[str, float]) -> str | None:
    """Why a guardrail is breached (rule 1), or None."""
    latency = known.get("latency_p95_seconds")
    if latency is not None and latency > guard.latency_p95_seconds:
        return f"guardrail: p95 latency {latency:.3f}s > {guard.latency_p95_seconds:g}s"
    errors = known.get("error_rate")
    if errors is not None and errors > guard.error_rate:
        return f"guardrail: error rate {errors:.2%} > {guard.error_rate:.0%}"
    return None


def _criteria(stage: Stage, plan: FeaturePlan, known: dict[str, float]) -> Decision:
    """Rules 3-6 once every required input is known."""
    if stage.min_units_per_arm and known["srm_p_value"] < SRM_ALPHA:
        return Decision(
            Verdict.HOLD,
            f"sample-ratio mismatch (p = {known['srm_p_value']:.2g} < {SRM_ALPHA}): "
            "assignment or exposure logging is broken",
        )
    if known["days_in_stage"] < stage.min_days:
        return Decision(
            Verdict.HOLD, f"{known['days_in_stage']:.1f} of {stage.min_days:g} days in stage"
        )
    if stage.min_units_per_arm:
        smallest = min(known["n_control"], known["n_treatment"])
        if smallest < stage.min_units_per_arm:
            return Decision(
                Verdict.HOLD,
                f"{smallest:g} tenants in the smaller arm, {stage.min_units_per_arm} needed",
            )
    checks: list[tuple[bool, str]] = []
    if stage.feature_traffic:
        checks.append(
            (
                known["latency_p95_seconds"] > plan.latency_target_seconds,
                f"p95 latency {known['latency_p95_seconds']:.3f}s above the "
                f"{plan.latency_target_seconds:g}s target",
            )
        )
    else:
        checks.append(
            (
                known["service_up"] < 1,
                f"{plan.service} has scrape targets down (min up = {known['service_up']:g})",
            )
        )
    checks.append(
        (
            known["error_rate"] >= stage.max_error_rate,
            f"error rate {known['error_rate']:.2%} not below {stage.max_error_rate:.0%}",
        )
    )
    if stage.min_adoption is not None:
        adoption, least = known["adoption"], stage.min_adoption
        checks.append(
            (adoption < least, f"adoption {adoption:.1%} below {least:.0%}")
            if stage.adoption_at_least
            else (adoption <= least, f"adoption {adoption:.1%} not above {least:.0%}")
        )
    if stage.min_daily_active is not None:
        checks.append(
            (
                known["daily_active_usage"] < stage.min_daily_active,
                f"daily active usage {known['daily_active_usage']:.1%} below "
                f"{stage.min_daily_active:.0%}",
            )
        )
    if stage.min_lift is not None:
        checks.append(
            (
                known["lift"] <= stage.min_lift,
                f"lift {known['lift']:+.2%} not above {stage.min_lift:+.0%}",
            )
        )
    if stage.min_lift_ci_low is not None:
        checks.append(
            (
                known["lift_ci_low"] <= stage.min_lift_ci_low,
                f"lift interval's lower bound {known['lift_ci_low']:+.2%} not above "
                f"{stage.min_lift_ci_low:+.0%}",
            )
        )
    for failed, reason in checks:
        if failed:
            return Decision(Verdict.HOLD, reason)
    if stage.next_percentage is None:
        return Decision(Verdict.HOLD, f"rollout complete: already at 100%{_usage(stage, known)}")
    return Decision(
        Verdict.ADVANCE,
        f"{stage.label or f'{stage.percentage:g}%'}: criteria met",
        stage.next_percentage,
    )


def _usage(stage: Stage, known: dict[str, float]) -> str:
    """The adoption and daily active usage that met the stage's criteria, as words."""
    parts = []
    if stage.min_adoption is not None:
        parts.append(f"adoption {known['adoption']:.1%} (target {stage.min_adoption:.0%}+)")
    if stage.min_daily_active is not None:
        parts.append(
            f"daily active usage {known['daily_active_usage']:.1%} "
            f"(target {stage.min_daily_active:.0%}+)"
        )
    return f"; {', '.join(parts)}" if parts else ""
