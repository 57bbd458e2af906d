"""The seed's revenue formulas and every number they rest on, labelled as assumptions.

Revenue of a feature on a day = (its driver count) x (lift) x (value per unit):

| feature | driver | assumed lift (range) | value per unit |
|---|---|---|---|
| realtime_intelligence | uses | conversion +5% (5-10%) | $50 commission per lead |
| property_vision | uses | match rate +3% (3-5%) | $75 per match |
| churn_prevention | successful interventions | churn -15% (15-40%) | $100 lead lifetime value |
| ai_coaching | uses | productivity +10% (10-25%) | $200 agent daily revenue |

The point lift is the seed's formula; the range runs from it to the seed's
own success indicator for that feature (10% conversion lift, 5% match
satisfaction, 40% churn reduction, 25% productivity). Operating cost = the
seed's infrastructure allocation per day plus an API cost per use; the
Claude cost ledger replaces the API assumption where a feature reports it.
Where an experiment has measured a lift (``experiment_results``), the
measured lift and its interval replace the assumed ones in every report.

Override any number with IMPACT_ASSUMPTIONS (JSON ``{feature: {field: value}}``).

``PRIMARY_METRICS`` names, per feature, the one experiment metric whose
measured lift replaces the assumed lift above and decides ``rollout
advance``'s lift criteria (services/rollout/observe.py): the metric that lift
describes. Results of other metrics are stored and shown (and Holm-adjusted
with the rest), but neither gate a stage nor price a feature. Churn's is the
churn rate, which the feature lowers: its benefit (``benefit``) is the
measured lift's opposite, the relative churn reduction the seed's 15% is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Final, Literal

import orjson

from services.common.flags import FEATURES, InvalidFlag, check_feature


@dataclass(frozen=True, slots=True)
class FeatureAssumptions:
    """ASSUMPTIONS behind one feature's revenue and cost (not measurements)."""

    driver: Literal["usage", "successes"]
    lift: float
    lift_low: float
    lift_high: float
    value_per_unit: float
    infra_cost_per_day: float
    api_cost_per_use: float
    hours_saved_per_use: float
    annual_value_low: float
    annual_value_high: float
    description: str


ASSUMPTIONS: Final[Mapping[str, FeatureAssumptions]] = {
    "realtime_intelligence": FeatureAssumptions(
        "usage", 0.05, 0.05, 0.10, 50.0, 15.0, 0.001, 0.05, 75_000, 120_000,
        "conversion lift x $50 average commission per lead",
    ),
    "property_vision": FeatureAssumptions(
        "usage", 0.03, 0.03, 0.05, 75.0, 20.0, 0.05, 0.083, 75_000, 150_000,
        "higher match rate x $75 average value per match",
    ),
    "churn_prevention": FeatureAssumptions(
        "successes", 0.15, 0.15, 0.40, 100.0, 10.0, 0.002, 0.25, 55_000, 80_000,
        "churn reduction x $100 average lead lifetime value",
    ),
    "ai_coaching": FeatureAssumptions(
        "usage", 0.10, 0.10, 0.25, 200.0, 15.0, 0.01, 0.5, 60_000, 90_000,
        "productivity increase x $200 average agent daily revenue",
    ),
}  # fmt: skip


#: Feature -> its decision metric, as ``experiment analyze --store --metric`` names it.
#: One name each, here only: a latency analysis stored after the conversion one
#: decided the 25 % and 50 % stages and priced the feature when the newest result
#: of any metric was read.
PRIMARY_METRICS: Final[Mapping[str, str]] = {
    "realtime_intelligence": "conversion_rate",
    "property_vision": "match_rate",
    "churn_prevention": "churn_rate",
    "ai_coaching": "agent_daily_revenue",
}
#: Primary metrics the feature lowers when it works. A retention lift in place
#: of churn's would have priced a 15% churn reduction (30% to 25.5% churn) as a
#: 6.4% retention gain (70% to 74.5%): less than half of it.
LOWER_IS_BETTER: Final = frozenset({"churn_rate"})
_LIFT_BOUNDS: Final = (("lift_ci_low", "lift_ci_high"), ("seq_lift_ci_low", "seq_lift_ci_high"))


def benefit(metric: str, result: Mapping[str, Any]) -> dict[str, Any]:
    """``result`` with its lift read as the feature's benefit: as measured, or, for a
    metric in ``LOWER_IS_BETTER``, negated (its intervals' bounds swapped)."""
    out = dict(result)
    if metric not in LOWER_IS_BETTER:
        return out
    if isinstance(out.get("lift"), int | float):
        out["lift"] = -out["lift"]
    for low, high in _LIFT_BOUNDS:
        if isinstance(out.get(low), int | float) and isinstance(out.get(high), int | float):
            out[low], out[high] = -out[high], -out[low]
    return out


def annual_goal(assumptions: Mapping[str, FeatureAssumptions]) -> tuple[float, float]:
    """The yearly value goal of all the features together (low, high), dollars: the sum
    of the features' ``annual_value_low``/``_high`` (the seed's $265K-440K)."""
    return (
        sum(assumptions[feature].annual_value_low for feature in FEATURES),
        sum(assumptions[feature].annual_value_high for feature in FEATURES),
    )


#: The assumptions that are ranges, lowest first.
RANGES: Final = (("lift_low", "lift", "lift_high"), ("annual_value_low", "annual_value_high"))
NUMERIC_FIELDS: Final = frozenset(
    f.name for f in fields(FeatureAssumptions) if f.name not in {"driver", "description"}
)


def load_assumptions(raw: str | None) -> dict[str, FeatureAssumptions]:
    """The defaults with IMPACT_ASSUMPTIONS' overrides applied; ValueError names the bad one."""
    merged = dict(ASSUMPTIONS)
    if not raw:
        return merged
    try:
        data: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"IMPACT_ASSUMPTIONS is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("IMPACT_ASSUMPTIONS must be a JSON object {feature: {field: value}}")
    for feature, overrides in data.items():
        try:
            check_feature(feature)
        except InvalidFlag as exc:
            raise ValueError(f"IMPACT_ASSUMPTIONS: {exc}") from None
        if not isinstance(overrides, dict) or not set(overrides) <= NUMERIC_FIELDS:
            allowed = ", ".join(sorted(NUMERIC_FIELDS))
            raise ValueError(f"IMPACT_ASSUMPTIONS.{feature}: fields are {allowed}")
        for name, value in overrides.items():
            if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
                raise ValueError(f"IMPACT_ASSUMPTIONS.{feature}.{name} must be a number >= 0")
        updates: dict[str, Any] = {k: float(v) for k, v in overrides.items()}
        merged[feature] = replace(merged[feature], **updates)
        # An override of one end could turn a range inside out (a point lift above
        # its high bound): every interval built from it would be meaningless.
        for names in RANGES:
            values = [getattr(merged[feature], name) for name in names]
            if values != sorted(values):
                order = " <= ".join(
                    f"{name} ({value:g})" for name, value in zip(names, values, strict=True)
                )
                raise ValueError(f"IMPACT_ASSUMPTIONS.{feature}: must hold {order}")
    return merged


@dataclass(frozen=True, slots=True)
class Interval:
    """A point and its interval (low <= point <= high when the inputs are ordered)."""

    point: float
    low: float
    high: float

    def scale(self, factor: float) -> Interval:
        """Multiply by a non-negative factor."""
        return Interval(self.point * factor, self.low * factor, self.high * factor)


@dataclass(frozen=True, slots=True)
class Lift:
    """The lift used for revenue: measured (with its interval) or assumed (its range)."""

    value: Interval
    source: Literal["measured", "assumed"]


_MEASURED_KEYS = ("lift", "lift_ci_low", "lift_ci_high")


def lift_for(
    feature: str, measured: Mapping[str, Any] | None, table: Mapping[str, FeatureAssumptions]
) -> Lift:
    """The measured lift and its interval when given, else the assumed lift and range."""
    if measured and all(isinstance(measured.get(k), int | float) for k in _MEASURED_KEYS):
        low, point, high = (float(measured[k]) for k in ("lift_ci_low", "lift", "lift_ci_high"))
        return Lift(Interval(point, low, high), "measured")
    a = table[feature]
    return Lift(Interval(a.lift, a.lift_low, a.lift_high), "assumed")


def revenue(driver_count: float, lift: Interval, value_per_unit: float) -> Interval:
    """Revenue = driver count x lift x value per unit, as an interval."""
    return lift.scale(driver_count * value_per_unit)


def roi(revenue_value: Interval, cost: float) -> Interval | None:
    """(revenue - cost) / cost as an interval; None without cost."""
    if cost <= 0:
        return None
    return Interval(
        (revenue_value.point - cost) / cost,
        (revenue_value.low - cost) / cost,
        (revenue_value.high - cost) / cost,
    )


__all__ = [
    "ASSUMPTIONS",
    "FEATURES",
    "LOWER_IS_BETTER",
    "PRIMARY_METRICS",
    "FeatureAssumptions",
    "Interval",
    "Lift",
    "annual_goal",
    "benefit",
    "lift_for",
    "load_assumptions",
    "revenue",
    "roi",
]
