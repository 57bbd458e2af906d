"""The statistics agree with scipy/statsmodels, and behave as claimed under simulation."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestIndPower
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from services.impact.stats import (
    Moments,
    adjust,
    analyze,
    confidence_sequence_radius,
    cuped,
    mde,
    optimal_rho,
    srm_p_value,
    welch,
)

RNG_SEED = 20261203


def _fixture(seed: int, n_c: int = 137, n_t: int = 151) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.gamma(2.0, 50.0, n_c), rng.gamma(2.2, 48.0, n_t) + 3


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_welch_matches_scipy_and_statsmodels(seed: int) -> None:
    control, treatment = _fixture(seed)
    ours = welch(Moments.of(control), Moments.of(treatment), alpha=0.05)
    reference = scipy_stats.ttest_ind(treatment, control, equal_var=False)
    assert abs(float(ours.t) - reference.statistic) < 1e-9
    assert abs(float(ours.p_value) - reference.pvalue) < 1e-9
    assert abs(float(ours.df) - reference.df) < 1e-9
    low, high = reference.confidence_interval(0.95)
    assert abs(float(ours.diff_ci_low) - low) < 1e-9
    assert abs(float(ours.diff_ci_high) - high) < 1e-9
    compare = CompareMeans(DescrStatsW(treatment), DescrStatsW(control))
    sm_low, sm_high = compare.tconfint_diff(alpha=0.05, usevar="unequal")
    assert abs(float(ours.diff_ci_low) - sm_low) < 1e-9
    assert abs(float(ours.diff_ci_high) - sm_high) < 1e-9
    _, sm_p, _ = compare.ttest_ind(usevar="unequal")
    assert abs(float(ours.p_value) - sm_p) < 1e-9


def test_delta_method_lift_matches_the_formula_and_covers() -> None:
    control, treatment = _fixture(7)
    ours = welch(Moments.of(control), Moments.of(treatment))
    mc, mt = control.mean(), treatment.mean()
    vc, vt = control.var(ddof=1) / control.size, treatment.var(ddof=1) / treatment.size
    expected_se = math.sqrt(vt / mc**2 + vc * mt**2 / mc**4)
    assert abs(float(ours.lift) - (mt / mc - 1)) < 1e-12
    assert abs(float(ours.lift_se) - expected_se) < 1e-12
    # Coverage of the 95% interval for a true lift of 10% (1,000 experiments).
    rng = np.random.default_rng(RNG_SEED)
    c = rng.gamma(2.0, 50.0, size=(1000, 400))
    t = rng.gamma(2.0, 55.0, size=(1000, 400))
    batch = welch(
        Moments(400.0, c.mean(1), c.var(1, ddof=1)), Moments(400.0, t.mean(1), t.var(1, ddof=1))
    )
    covered = np.mean((batch.lift_ci_low <= 0.10) & (batch.lift_ci_high >= 0.10))
    assert 0.93 < covered < 0.97


def test_srm_matches_scipy_chisquare_and_fires_only_on_a_skewed_split() -> None:
    assert abs(srm_p_value(9600, 10400, 0.5) - scipy_stats.chisquare([9600, 10400]).pvalue) < 1e-12
    assert srm_p_value(9600, 10400, 0.5) < 0.001  # 48/52 of 20,000
    assert srm_p_value(10_030, 9_970, 0.5) > 0.001  # a fair coin's wobble
    assert srm_p_value(7500, 2500, 0.25) > 0.5  # the expected 25% split
    with pytest.raises(ValueError, match="strictly between"):
        srm_p_value(1, 1, 1.0)


def test_srm_false_alarm_rate_on_fair_splits_is_tiny() -> None:
    rng = np.random.default_rng(RNG_SEED)
    treated = rng.binomial(20_000, 0.5, size=2000)
    alarms = sum(srm_p_value(20_000 - k, k, 0.5) < 0.001 for k in treated)
    assert alarms <= 10  # expected 2 of 2,000


def test_cuped_matches_a_regression_adjustment_and_reduces_variance() -> None:
    rng = np.random.default_rng(RNG_SEED)
    pre_c, pre_t = rng.normal(100, 20, 300), rng.normal(100, 20, 300)
    y_c = pre_c * 0.9 + rng.normal(0, 8, 300)
    y_t = pre_t * 0.9 + rng.normal(0, 8, 300) + 2.0
    adjusted = cuped((y_c, pre_c), (y_t, pre_t))
    x, y = np.concatenate([pre_c, pre_t]), np.concatenate([y_c, y_t])
    slope = np.cov(x, y, ddof=1)[0, 1] / np.var(x, ddof=1)
    assert abs(adjusted.theta - slope) < 1e-9
    assert adjusted.variance_reduction > 0.6
    plain = welch(Moments.of(y_c), Moments.of(y_t))
    assert float(adjusted.result.se) < 0.6 * float(plain.se)
    reference = scipy_stats.ttest_ind(
        y_t - slope * (pre_t - x.mean()), y_c - slope * (pre_c - x.mean()), equal_var=False
    )
    assert abs(float(adjusted.result.p_value) - reference.pvalue) < 1e-9


def test_holm_and_bh_are_statsmodels() -> None:
    p = [0.001, 0.04, 0.03, 0.2, 0.012, 0.5, 0.049, 0.0001]
    for method in ("holm", "fdr_bh"):
        expected = multipletests(p, alpha=0.05, method=method)[1]
        assert np.allclose(adjust(p, method=method), expected, atol=1e-12)
    assert adjust([]) == []


def test_mde_is_the_80_percent_power_effect_of_statsmodels() -> None:
    control, treatment = _fixture(11, 200, 200)
    mc, mt = Moments.of(control), Moments.of(treatment)
    effect = mde(mc, mt)
    pooled_sd = math.sqrt((mc.var + mt.var) / 2)
    power = TTestIndPower().power(effect / pooled_sd, nobs1=200, alpha=0.05, ratio=1.0)
    assert abs(power - 0.8) < 2e-3


def _aa_paths(
    rng: np.random.Generator, experiments: int, days: int, per_day: int, effect: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative per-look moments of each arm: (n, (mean_c, var_c), (mean_t, var_t))."""
    units = days * per_day
    c = rng.lognormal(3.0, 1.0, size=(experiments, units))
    t = rng.lognormal(3.0, 1.0, size=(experiments, units)) + effect
    looks = np.arange(1, days + 1) * per_day

    def moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s1 = np.cumsum(x, axis=1)[:, looks - 1]
        s2 = np.cumsum(x**2, axis=1)[:, looks - 1]
        mean = s1 / looks
        var = (s2 - looks * mean**2) / (looks - 1)
        return mean, var

    return looks.astype(float), np.stack(moments(c)), np.stack(moments(t))


def test_peeking_every_day_inflates_the_naive_test_but_not_the_confidence_sequence() -> None:
    """2,000 A/A experiments, 30 daily looks, 20 tenants per arm per day."""
    rng = np.random.default_rng(RNG_SEED)
    experiments, days, per_day = 2000, 30, 20
    looks, (mc, vc), (mt, vt) = _aa_paths(rng, experiments, days, per_day)
    result = welch(Moments(looks, mc, vc), Moments(looks, mt, vt))
    naive_z = np.abs(result.diff / result.se) > scipy_stats.norm.ppf(0.975)
    naive_rate = float(np.mean(naive_z.any(axis=1)))
    rho = optimal_rho(planned_units=2 * days * per_day, alpha=0.05)
    radius = confidence_sequence_radius(result.se, 2 * looks, alpha=0.05, rho=rho)
    ours_rate = float(np.mean((np.abs(result.diff) > radius).any(axis=1)))
    se_naive = math.sqrt(naive_rate * (1 - naive_rate) / experiments)
    se_ours = math.sqrt(max(ours_rate * (1 - ours_rate), 0.05 * 0.95) / experiments)
    print(
        f"A/A, {experiments} experiments x {days} daily looks: naive z-test "
        f"{naive_rate:.3f} +/- {se_naive:.3f}, "
        f"confidence sequence {ours_rate:.3f} +/- {se_ours:.3f}"
    )
    # Last look alone is a fixed-horizon test: about 5%.
    assert abs(float(np.mean(naive_z[:, -1])) - 0.05) < 3 * math.sqrt(0.05 * 0.95 / experiments)
    assert naive_rate > 0.15  # far above 5%
    assert ours_rate <= 0.05


def test_a_planted_effect_at_the_mde_is_found_80_percent_of_the_time() -> None:
    rng = np.random.default_rng(RNG_SEED + 1)
    experiments, n = 4000, 300
    # The MDE of a sample whose variance is the population's (lognormal(3, 1)).
    variance = (math.e - 1) * math.exp(7)
    arm = Moments(float(n), math.exp(3.5), variance)
    effect = mde(arm, arm)
    c = rng.lognormal(3.0, 1.0, size=(experiments, n))
    t = rng.lognormal(3.0, 1.0, size=(experiments, n)) + effect
    result = welch(
        Moments(float(n), c.mean(1), c.var(1, ddof=1)),
        Moments(float(n), t.mean(1), t.var(1, ddof=1)),
    )
    found = float(np.mean(result.p_value < 0.05))
    se = math.sqrt(0.8 * 0.2 / experiments)
    print(f"planted effect {effect:.3f} at the MDE: found {found:.3f} +/- {se:.3f}")
    # At least 80% up to the simulation's error; and not far above (the MDE is not loose).
    assert found >= 0.80 - 2 * se
    assert found <= 0.80 + 4 * se


def test_analyze_reports_every_field() -> None:
    control, treatment = _fixture(5, 500, 520)
    out = analyze(control, treatment, pre=(control * 0.5 + 10, treatment * 0.5 + 10))
    for key in (
        "n_control",
        "n_treatment",
        "mean_control",
        "mean_treatment",
        "diff",
        "diff_ci_low",
        "diff_ci_high",
        "lift",
        "lift_ci_low",
        "lift_ci_high",
        "p_value",
        "srm_p_value",
        "seq_diff_ci_low",
        "seq_diff_ci_high",
        "seq_lift_ci_low",
        "seq_lift_ci_high",
        "mde",
    ):
        assert isinstance(out[key], int | float), key
    assert (
        out["seq_diff_ci_low"] < out["diff_ci_low"] < out["diff_ci_high"] < out["seq_diff_ci_high"]
    )
    assert out["cuped"]["variance_reduction"] > 0.99


@pytest.mark.parametrize(
    ("control", "treatment"),
    [
        ([1.0, 1.0, 1.0], [1.0, 1.0, 1.0]),  # every tenant at 0 conversions, say
        ([1.0, 1.0, 1.0], [2.0, 2.0, 2.0]),  # constant in each arm, different arms
        ([1e308, -1e308, 1e308], [1e308, 1e308, -1e308]),  # the variance overflows
    ],
    ids=["equal-constants", "different-constants", "overflow"],
)
def test_analyze_without_a_finite_standard_error_answers_nulls_not_scipy_errors(
    control: list[float], treatment: list[float]
) -> None:
    # Was ValueError "xtol too small (0 <= 0)" or "The function value at x=0.0 is
    # NaN" from brentq, and a NaN interval read as significant.
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning on the operator's terminal
        out = analyze(np.array(control), np.array(treatment))
    assert out["mde"] is None
    assert out["p_value"] is None
    assert out["seq_significant"] is False
    assert out["n_control"] == out["n_treatment"] == 3


def test_mde_with_two_units_an_arm_is_still_the_80_percent_power_effect() -> None:
    # Unequal variances and two units an arm: Welch's df is 1.47, power at 8
    # standard errors is below 80%, and brentq refused ("f(a) and f(b) must
    # have different signs").
    control, treatment = np.array([1.0, 2.0]), np.array([2.0, 4.0])
    mc, mt = Moments.of(control), Moments.of(treatment)
    effect = mde(mc, mt)
    se = math.sqrt(mc.var / 2 + mt.var / 2)
    df = (mc.var / 2 + mt.var / 2) ** 2 / ((mc.var / 2) ** 2 + (mt.var / 2) ** 2)
    critical = scipy_stats.t.ppf(0.975, df)
    # The lower tail is ~0 this far out (scipy answers NaN for it).
    lower = np.nan_to_num(scipy_stats.nct.cdf(-critical, df, effect / se))
    power = scipy_stats.nct.sf(critical, df, effect / se) + lower
    assert df < 2
    assert effect > 8 * se
    assert abs(power - 0.8) < 1e-6
    assert analyze(control, treatment)["mde"] == pytest.approx(effect)
