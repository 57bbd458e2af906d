"""``GET /health/ml``: the model's state and live inference latency.

Latencies are measured from submitting a scoring call to the worker threads
to its result (queueing included, HTTP parsing excluded), over the last
ML_LATENCY_WINDOW calls of each kind. The status follows the seed: healthy
while the single-lead p95 stays under the 50 ms alert threshold (the target
itself, ML_INFERENCE_TARGET_MS = 35, is reported alongside), degraded above
it, unhealthy when no model is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from fastapi import FastAPI

from services.common.health import FeatureHealth
from services.ml.inference import InferenceService

# The seed's MLInferenceSlowdown alert fires at p95 > 50 ms.
DEGRADED_P95_MS: Final = 50.0


async def ml_health(app: FastAPI) -> Mapping[str, Any]:
    """Live values for /health/ml (see the module docstring)."""
    target_ms = float(app.state.settings.ml_inference_target_ms)
    inference: InferenceService | None = getattr(app.state, "inference", None)
    if inference is None:
        return {
            "status": "unhealthy",
            "model_loaded": False,
            "model_version": None,
            "p50_latency_ms": None,
            "p95_latency_ms": None,
            "target_p95_ms": target_ms,
        }
    single = inference.latency("single")
    batch = inference.latency("batch")
    cache = inference.scorer.cache.stats()
    slow = single.p95_ms is not None and single.p95_ms > DEGRADED_P95_MS
    return {
        "status": "degraded" if slow else "healthy",
        "model_loaded": True,
        "model_version": inference.scorer.version,
        "model_heldout_auc": inference.scorer.metadata.heldout_auc,
        "p50_latency_ms": single.p50_ms,
        "p95_latency_ms": single.p95_ms,
        "target_p95_ms": target_ms,
        "degraded_above_p95_ms": DEGRADED_P95_MS,
        "window_calls": single.samples,
        "batch_p50_latency_ms": batch.p50_ms,
        "batch_p95_latency_ms": batch.p95_ms,
        "batch_window_calls": batch.samples,
        "cache": {
            "size": cache.size,
            "capacity": cache.capacity,
            "hits": cache.hits,
            "misses": cache.misses,
        },
    }


# Scoring reads neither Postgres nor Redis: their outage is reported, not fatal.
ML_FEATURE_HEALTH: Final = FeatureHealth(path="/health/ml", check=ml_health, requires=frozenset())
