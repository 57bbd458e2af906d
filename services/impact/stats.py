"""Experiment statistics over per-tenant units (randomisation is by tenant).

- ``welch``: Welch's unequal-variance t-test: two-sided p-value and the
  confidence interval of the absolute difference (Welch-Satterthwaite df);
  the relative lift ``mean_t / mean_c - 1`` with a delta-method interval.
- ``srm_p_value``: the sample-ratio-mismatch chi-square test of the arm sizes
  against the expected split (flag at p < 0.001).
- ``cuped``: variance reduction with a pre-period covariate (Deng et al.
  2013): ``y - theta (x - mean x)`` with ``theta = cov(x, y) / var(x)`` pooled
  over both arms, then Welch on the adjusted values.
- ``confidence_sequence_radius``: an always-valid interval (the asymptotic
  confidence sequence of Waudby-Smith et al., "Time-uniform central limit
  theory", 2023, Gaussian mixture boundary): with it the daily dashboard
  may be looked at every day, and stopping when it excludes 0 keeps the
  false-positive rate at or below alpha. A fixed-horizon p-value looked at
  daily does not (tests/services/impact show 30 daily looks at about 25%).
- ``mde``: the minimum detectable effect at the current sample (two-sided
  alpha, 80% power).
- ``adjust``: Holm (default) or Benjamini-Hochberg across features x metrics
  (statsmodels' ``multipletests``).

The functions accept numpy arrays with leading batch dimensions where noted,
so the A/A simulation runs thousands of experiments at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import stats
from scipy.optimize import brentq
from statsmodels.stats.multitest import multipletests

SRM_ALPHA: Final = 0.001
#: Units (tenants) at which the confidence sequence is tightest, by default.
DEFAULT_PLANNED_UNITS: Final = 1000
#: How often `mde` doubles its search interval (8 standard errors at first).
MDE_BRACKET_DOUBLINGS: Final = 40

Array = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Moments:
    """Count, mean and unbiased variance of one arm (arrays for batches)."""

    n: Any
    mean: Any
    var: Any

    @classmethod
    def of(cls, values: ArrayLike) -> Moments:
        """Moments of a 1-D sample."""
        data = np.asarray(values, dtype=np.float64)
        return cls(float(data.size), float(data.mean()), float(data.var(ddof=1)))


@dataclass(frozen=True, slots=True)
class Welch:
    """Welch's test for ``treatment - control`` and the delta-method lift."""

    diff: Any
    se: Any
    df: Any
    t: Any
    p_value: Any
    diff_ci_low: Any
    diff_ci_high: Any
    lift: Any
    lift_se: Any
    lift_ci_low: Any
    lift_ci_high: Any


def welch(control: Moments, treatment: Moments, *, alpha: float = 0.05) -> Welch:
    """Welch's t-test (two-sided) with confidence intervals; works on arrays."""
    vc = np.asarray(control.var) / np.asarray(control.n)
    vt = np.asarray(treatment.var) / np.asarray(treatment.n)
    se = np.sqrt(vc + vt)
    # Neither arm varying makes this 0 / 0: NaN, reported as null.
    with np.errstate(divide="ignore", invalid="ignore"):
        df = (vc + vt) ** 2 / (
            vc**2 / (np.asarray(control.n) - 1) + vt**2 / (np.asarray(treatment.n) - 1)
        )
    diff = np.asarray(treatment.mean) - np.asarray(control.mean)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = diff / se
    p_value = 2 * stats.t.sf(np.abs(t), df)
    quantile = stats.t.ppf(1 - alpha / 2, df)
    mean_c = np.asarray(control.mean)
    with np.errstate(divide="ignore", invalid="ignore"):
        lift = np.asarray(treatment.mean) / mean_c - 1
        # Delta method for g(mt, mc) = mt / mc: grad = (1/mc, -mt/mc^2).
        lift_se = np.sqrt(vt / mean_c**2 + vc * np.asarray(treatment.mean) ** 2 / mean_c**4)
    z = stats.norm.ppf(1 - alpha / 2)
    return Welch(
        diff=diff,
        se=se,
        df=df,
        t=t,
        p_value=p_value,
        diff_ci_low=diff - quantile * se,
        diff_ci_high=diff + quantile * se,
        lift=lift,
        lift_se=lift_se,
        lift_ci_low=lift - z * lift_se,
        lift_ci_high=lift + z * lift_se,
    )


def srm_p_value(n_control: float, n_treatment: float, expected_treatment_share: float) -> float:
    """Chi-square goodness-of-fit p-value of the arm sizes against the expected split."""
    if not 0 < expected_treatment_share < 1:
        raise ValueError("expected split must be strictly between 0 and 1")
    total = n_control + n_treatment
    expected = np.array([1 - expected_treatment_share, expected_treatment_share]) * total
    statistic = float(((np.array([n_control, n_treatment]) - expected) ** 2 / expected).sum())
    return float(stats.chi2.sf(statistic, df=1))


def optimal_rho(planned_units: float, alpha: float) -> float:
    """The mixture parameter that makes the sequence tightest at ``planned_units``."""
    log_term = -2 * math.log(alpha)
    return math.sqrt((log_term + math.log(log_term + 1)) / planned_units)


def confidence_sequence_radius(
    se: ArrayLike, units: ArrayLike, *, alpha: float = 0.05, rho: float
) -> Any:
    """Half-width of the always-valid interval for an estimate with standard error ``se``.

    ``units`` is the number of randomised units (tenants) so far; the
    per-unit standard deviation is ``se * sqrt(units)``. The radius is
    ``sigma * sqrt(2 (n rho^2 + 1) / (n^2 rho^2) * log(sqrt(n rho^2 + 1) / alpha))``.
    """
    n = np.asarray(units, dtype=np.float64)
    sigma = np.asarray(se) * np.sqrt(n)
    factor = (n * rho**2 + 1) / (n**2 * rho**2)
    return sigma * np.sqrt(2 * factor * np.log(np.sqrt(n * rho**2 + 1) / alpha))


def mde(control: Moments, treatment: Moments, *, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest absolute difference the fixed-horizon Welch test detects with ``power``.

    Solved exactly on the noncentral t distribution (the normal shortcut
    ``(z_a + z_b) se`` overstates power a little at small samples).
    NaN (null in the JSON) when there is none to find: neither arm varies
    (a standard error of 0 leaves the test undefined), or the values are too
    large for their variance to be a finite number.
    """
    result = welch(control, treatment, alpha=alpha)
    se, df = float(result.se), float(result.df)
    if not (math.isfinite(se) and se > 0 and math.isfinite(df)):
        return math.nan
    critical = stats.t.ppf(1 - alpha / 2, df)

    def shortfall(effect: float) -> float:
        nc = effect / se
        # The lower tail vanishes (and can come back NaN) for large effects.
        lower = float(np.nan_to_num(stats.nct.cdf(-critical, df, nc)))
        return float(stats.nct.sf(critical, df, nc)) + lower - power

    # Power at 8 standard errors is ~1 for any df > 2; with two or three units
    # an arm (df <= 2) it rises slowly, so the bracket widens until it holds the root.
    upper = 8 * se
    for _ in range(MDE_BRACKET_DOUBLINGS):
        if shortfall(upper) > 0:
            return float(brentq(shortfall, 0.0, upper, xtol=1e-12 * se))
        upper *= 2
    return math.nan


@dataclass(frozen=True, slots=True)
class Cuped:
    """CUPED-adjusted comparison."""

    theta: float
    variance_reduction: float
    result: Welch


def cuped(
    control: tuple[Array, Array],
    treatment: tuple[Array, Array],
    *,
    alpha: float = 0.05,
) -> Cuped:
    """Welch on ``y - theta (x - mean x)``; each arm is ``(y, x_pre)``."""
    y = np.concatenate([control[0], treatment[0]])
    x = np.concatenate([control[1], treatment[1]])
    variance_x = float(np.var(x, ddof=1))
    if variance_x == 0:
        raise ValueError("pre_value is constant: CUPED needs a covariate that varies")
    theta = float(np.cov(x, y, ddof=1)[0, 1] / variance_x)
    mean_x = float(x.mean())
    adjusted_c = control[0] - theta * (control[1] - mean_x)
    adjusted_t = treatment[0] - theta * (treatment[1] - mean_x)
    pooled_before = float(np.var(y, ddof=1))
    pooled_after = float(np.var(np.concatenate([adjusted_c, adjusted_t]), ddof=1))
    return Cuped(
        theta=theta,
        variance_reduction=1 - pooled_after / pooled_before if pooled_before else 0.0,
        result=welch(Moments.of(adjusted_c), Moments.of(adjusted_t), alpha=alpha),
    )


def adjust(p_values: Sequence[float], *, alpha: float = 0.05, method: str = "holm") -> list[float]:
    """Adjusted p-values across a family of tests (Holm, or ``fdr_bh``)."""
    if not p_values:
        return []
    _, adjusted, _, _ = multipletests(list(p_values), alpha=alpha, method=method)
    return [float(p) for p in adjusted]


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic | np.ndarray):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def analyze(
    control: Array,
    treatment: Array,
    *,
    alpha: float = 0.05,
    expected_split: float = 0.5,
    pre: tuple[Array, Array] | None = None,
    planned_units: float = DEFAULT_PLANNED_UNITS,
) -> dict[str, Any]:
    """Everything ``enterprisehub experiment analyze`` prints, as plain JSON values.

    A value that cannot be computed (no variance in either arm, values whose
    variance overflows) is null, and no interval of them is significant.
    """
    if control.size < 2 or treatment.size < 2:
        raise ValueError("each variant needs at least 2 units")
    # Overflow and 0/0 give inf and NaN, which come out as null.
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _analyze(
            control,
            treatment,
            alpha=alpha,
            expected_split=expected_split,
            pre=pre,
            planned_units=planned_units,
        )


def _analyze(
    control: Array,
    treatment: Array,
    *,
    alpha: float,
    expected_split: float,
    pre: tuple[Array, Array] | None,
    planned_units: float,
) -> dict[str, Any]:
    mc, mt = Moments.of(control), Moments.of(treatment)
    result = welch(mc, mt, alpha=alpha)
    units = mc.n + mt.n
    rho = optimal_rho(planned_units, alpha)
    radius = float(confidence_sequence_radius(result.se, units, alpha=alpha, rho=rho))
    lift_radius = float(confidence_sequence_radius(result.lift_se, units, alpha=alpha, rho=rho))
    srm = srm_p_value(mc.n, mt.n, expected_split)
    out: dict[str, Any] = {
        "n_control": int(mc.n),
        "n_treatment": int(mt.n),
        "mean_control": mc.mean,
        "mean_treatment": mt.mean,
        **{key: value for key, value in asdict(result).items() if key not in {"t"}},
        "alpha": alpha,
        "expected_split": expected_split,
        "srm_p_value": srm,
        "srm_detected": srm < SRM_ALPHA,
        "seq_diff_ci_low": float(result.diff) - radius,
        "seq_diff_ci_high": float(result.diff) + radius,
        "seq_lift_ci_low": float(result.lift) - lift_radius,
        "seq_lift_ci_high": float(result.lift) + lift_radius,
        "seq_planned_units": planned_units,
        "mde": mde(mc, mt, alpha=alpha),
    }
    out["mde_relative"] = out["mde"] / abs(mc.mean) if mc.mean else None
    low, high = out["seq_diff_ci_low"], out["seq_diff_ci_high"]
    # Without a positive, finite standard error the interval is [diff, diff] or
    # NaN: it says nothing (a NaN bound compared false and read as significant).
    out["seq_significant"] = (
        math.isfinite(float(result.se))
        and float(result.se) > 0
        and math.isfinite(low)
        and math.isfinite(high)
        and not low <= 0 <= high
    )
    if pre is not None:
        adjusted = cuped((control, pre[0]), (treatment, pre[1]), alpha=alpha)
        out["cuped"] = {
            "theta": adjusted.theta,
            "variance_reduction": adjusted.variance_reduction,
            "diff": adjusted.result.diff,
            "diff_ci_low": adjusted.result.diff_ci_low,
            "diff_ci_high": adjusted.result.diff_ci_high,
            "p_value": adjusted.result.p_value,
        }
    return _clean(out)


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    return _plain(value)
