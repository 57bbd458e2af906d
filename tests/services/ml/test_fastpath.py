"""The lead model's numpy fast path: same scores as the pipeline, or not used at all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sklearn
from sklearn.pipeline import Pipeline

from services.common.lead_model import fastpath
from services.common.lead_model.artifact import load_artifact
from services.common.scoring import LeadFeatures, LeadScorer
from services.ml import datagen
from services.ml.training import train_to_file


def _pipeline_scores(model: Pipeline, rows: list[tuple[float, ...]]) -> np.ndarray:
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        return np.asarray(model.predict_proba(np.asarray(rows, dtype=np.float64))[:, 1])


@pytest.fixture(scope="module")
def model(artifact_path: Path) -> Pipeline:
    loaded: Pipeline = load_artifact(str(artifact_path)).model
    return loaded


def test_fast_path_equals_the_pipeline_on_generated_leads(model: Pipeline) -> None:
    fast = fastpath.compile_model(model)
    assert fast is not None
    rows = [lead.to_row() for lead in datagen.generate_leads(2000, seed=123)]
    expected = _pipeline_scores(model, rows)
    got = np.asarray(fast.predict(rows))
    assert np.max(np.abs(got - expected)) < fastpath.MAX_ABS_DIFF
    # A lead's score does not depend on the batch it is in, to the bit.
    singles = [fast.predict([row])[0] for row in rows[:50]]
    assert singles == list(got[:50])
    assert fast.predict(rows[7:19]) == list(got[7:19])


def test_fast_path_covers_the_extremes_of_the_validated_ranges(model: Pipeline) -> None:
    fast = fastpath.compile_model(model)
    assert fast is not None
    base = datagen.generate_leads(1, seed=5)[0].model_dump()
    low = {
        k: (0 if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
        for k, v in base.items()
    }
    high = {
        **base,
        "budget_usd": 100_000_000.0,
        "response_time_minutes": 525_600.0,
        "email_opens": 100_000,
        "days_since_created": 3650,
    }
    rows = [LeadFeatures.model_validate(low).to_row(), LeadFeatures.model_validate(high).to_row()]
    got = np.asarray(fast.predict(rows))
    assert np.max(np.abs(got - _pipeline_scores(model, rows))) < fastpath.MAX_ABS_DIFF


def test_unknown_category_is_refused_like_the_pipeline(model: Pipeline) -> None:
    fast = fastpath.compile_model(model)
    assert fast is not None
    row = list(datagen.generate_leads(1, seed=1)[0].to_row())
    row[0] = 99.0
    with pytest.raises(ValueError, match="unknown categor"):
        _pipeline_scores(model, [tuple(row)])
    with pytest.raises(ValueError, match="unknown category"):
        fast.predict([row])


def test_scorer_scores_through_the_fast_path(artifact_path: Path, model: Pipeline) -> None:
    scorer = LeadScorer.load(str(artifact_path), cache_size=0, batch_size=8)
    assert scorer._fast is not None
    leads = datagen.generate_leads(100, seed=42)
    expected = _pipeline_scores(model, [lead.to_row() for lead in leads])
    assert np.max(np.abs(np.asarray(scorer.score_batch(leads)) - expected)) < 1e-9


def test_unsupported_estimator_falls_back_to_the_pipeline(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "hgb.joblib"
    train_to_file(out=path, rows=2000, seed=3, estimator="hgb")
    with caplog.at_level("INFO", logger=fastpath.__name__):
        scorer = LeadScorer.load(str(path), cache_size=0)
    assert "fast path off" in caplog.text
    assert "HistGradientBoostingClassifier" in caplog.text
    # The scorer still scores, with the pipeline itself.
    assert scorer._fast is None
    hgb: Pipeline = load_artifact(str(path)).model
    rows = [lead.to_row() for lead in datagen.generate_leads(20, seed=4)]
    assert scorer.score_rows(rows) == list(_pipeline_scores(hgb, rows))


def test_a_fast_path_that_disagrees_is_not_used(
    model: Pipeline, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Any difference at all is "too large" here: the check must refuse.
    monkeypatch.setattr(fastpath, "MAX_ABS_DIFF", -1.0)
    with caplog.at_level("WARNING", logger=fastpath.__name__):
        assert fastpath.compile_model(model) is None
    assert "exceeds" in caplog.text


def test_unsupported_transformer_falls_back(model: Pipeline) -> None:
    from sklearn.base import clone
    from sklearn.preprocessing import FunctionTransformer

    changed = clone(model)
    changed.set_params(preprocess__numeric__log1p=FunctionTransformer(np.sqrt))
    rows = np.asarray([lead.to_row() for lead in datagen.generate_leads(500, seed=8)])
    changed.fit(rows, (rows[:, 5] > np.median(rows[:, 5])).astype(int))
    assert fastpath.compile_model(changed) is None
