"""InferenceService on its own: failure propagation and lifecycle."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from services.common.metrics import new_registry
from services.common.scoring import LeadFeatures, LeadScorer
from services.ml.inference import KINDS, InferenceService


class _BrokenModel:
    """An estimator whose prediction fails, as a model with a bad library might."""

    classes_ = np.array([0, 1])

    def predict_proba(self, rows: Any) -> Any:
        raise FloatingPointError("model exploded")


def _service(scorer: LeadScorer) -> InferenceService:
    return InferenceService(
        scorer, registry=new_registry(), timeout_seconds=10, workers=1, window_size=10
    )


async def test_a_model_error_reaches_every_coalesced_caller(
    scorer: LeadScorer, leads: list[LeadFeatures]
) -> None:
    broken = LeadScorer(_BrokenModel(), scorer.metadata, cache_size=0)
    service = _service(broken)
    service.start()
    try:
        results = await asyncio.gather(
            *(service.score_one(lead, tenant_id="t1") for lead in leads[:5]),
            return_exceptions=True,
        )
    finally:
        await service.close()
    assert all(isinstance(r, FloatingPointError) for r in results)
    assert service.latency("single").samples == 0


async def test_single_scoring_needs_start(scorer: LeadScorer, leads: list[LeadFeatures]) -> None:
    service = _service(scorer)
    with pytest.raises(RuntimeError, match=r"start\(\) was not called"):
        await service.score_one(leads[0], tenant_id="t1")
    await service.close()


async def test_scores_match_the_scorer_and_close_is_clean(
    scorer: LeadScorer, leads: list[LeadFeatures]
) -> None:
    service = _service(scorer)
    service.start()
    single = await service.score_one(leads[0], tenant_id="t1")
    many = await service.score_many(leads[:10], tenant_id="t1")
    await service.close()
    assert single == many[0]
    assert many == scorer.score_batch(leads[:10])
    assert service.latency("single").samples == 1
    assert service.latency("batch").samples == 1


def test_every_kind_is_exported_at_zero_before_its_first_call(scorer: LeadScorer) -> None:
    """The latency and timeout rules rate these series: a pod's first call of a
    kind, counted into a series that appears at 1, was lost to rate()."""
    registry = new_registry()
    InferenceService(scorer, registry=registry, timeout_seconds=10, workers=1, window_size=10)
    for kind in KINDS:
        labels = {"kind": kind}
        assert registry.get_sample_value("ml_predictions_total", labels) == 0
        assert registry.get_sample_value("ml_inference_timeouts_total", labels) == 0
        assert registry.get_sample_value("ml_inference_duration_seconds_count", labels) == 0
