"""Stored experiment results are read as one family: Holm across features and metrics."""

from __future__ import annotations

from typing import Any

from statsmodels.stats.multitest import multipletests

from services.common.database import Database
from services.impact.report import latest_results, measured_lifts


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
    await _store(owner_db, "property_vision", "revenue", 3, p_value=0.01)
    await _store(owner_db, "property_vision", "conversion", 1, p_value=0.04, lift=0.02)
    await _store(owner_db, "ai_coaching", "revenue", 9, p_value=0.5)  # superseded below
    await _store(owner_db, "ai_coaching", "revenue", 2, p_value=0.03)
    await _store(owner_db, "churn_prevention", "retention", 2)  # no test: not in the family

    results = {(r["feature_name"], r["metric"]): r for r in await latest_results(db)}
    assert set(results) == {
        ("property_vision", "revenue"),
        ("property_vision", "conversion"),
        ("ai_coaching", "revenue"),
        ("churn_prevention", "retention"),
    }
    family = [
        ("ai_coaching", "revenue", 0.03),
        ("property_vision", "conversion", 0.04),
        ("property_vision", "revenue", 0.01),
    ]
    _, expected, _, _ = multipletests([p for *_, p in family], method="holm")
    for (feature, metric, _), p_adjusted in zip(family, expected, strict=True):
        assert abs(results[feature, metric]["p_value_adjusted"] - p_adjusted) < 1e-12
        assert results[feature, metric]["family_size"] == 3
    assert results["churn_prevention", "retention"]["p_value_adjusted"] is None

    # The lift used for revenue is still each feature's newest result, now with its adjusted p.
    lifts = await measured_lifts(db)
    assert lifts["property_vision"]["metric"] == "conversion"
    assert lifts["property_vision"]["lift"] == 0.02
    assert (
        lifts["property_vision"]["p_value_adjusted"]
        == results["property_vision", "conversion"]["p_value_adjusted"]
    )
    assert lifts["ai_coaching"]["p_value"] == 0.03
    assert "result_id" not in lifts["ai_coaching"]
