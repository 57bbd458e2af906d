"""Settings of ml-services (lead scoring), read from the environment at start-up."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from services.common.lead_model.settings import MAX_BATCH_LEADS, LeadModelSettings
from services.common.settings import CommonSettings

__all__ = ["MAX_BATCH_LEADS", "MLSettings"]

# MAX_BATCH_LEADS is the largest batch one request may carry. Larger lists are
# refused with 422 rather than queued: at about 40 us per lead
# (docs/benchmarks.md, W2) 1,000 leads stay well inside ML_INFERENCE_TIMEOUT.


class MLSettings(CommonSettings, LeadModelSettings):
    """CommonSettings, the lead model's ML_MODEL_* and the ML_* serving variables."""

    service_name: ClassVar[str] = "ml"

    ml_inference_timeout: float = Field(
        default=10.0, gt=0, le=300, description="Seconds before a scoring request gets 503."
    )
    ml_inference_workers: int = Field(
        default=2, ge=1, le=64, description="Threads running model inference."
    )
    ml_latency_window: int = Field(
        default=1000, ge=10, le=100_000, description="Recent inferences behind /health/ml."
    )
    ml_max_body_bytes: int = Field(
        default=2_097_152,
        ge=1024,
        le=50_000_000,
        description="Largest accepted request body (a full batch of leads is about 600 KB).",
    )
