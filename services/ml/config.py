"""Settings of ml-services (lead scoring), read from the environment at start-up."""

from __future__ import annotations

from typing import ClassVar, Self

from pydantic import Field, model_validator

from services.common.lead_model.settings import MAX_BATCH_LEADS, LeadModelSettings
from services.common.settings import (
    CommaSeparated,
    CommonSettings,
    LatencyWindowSize,
    PositiveSeconds,
)

__all__ = ["MAX_BATCH_LEADS", "MLSettings"]

# MAX_BATCH_LEADS is the largest batch one request may carry. Larger lists are
# refused with 422 rather than queued: at about 40 us per lead
# (docs/benchmarks.md, W2) 1,000 leads stay well inside ML_INFERENCE_TIMEOUT.


class MLSettings(CommonSettings, LeadModelSettings):
    """CommonSettings, the lead model's ML_MODEL_* and the ML_* serving variables."""

    service_name: ClassVar[str] = "ml"

    ml_inference_timeout: PositiveSeconds = Field(default=10.0, le=300)
    """Seconds before a scoring request gets 503."""

    ml_inference_workers: int = Field(default=2, ge=1, le=64)
    """Threads running model inference."""

    ml_latency_window: LatencyWindowSize = 1000
    """Recent inferences behind /health/ml."""

    vision_url_allowed_hosts: CommaSeparated = Field(default_factory=list)
    """Comma-separated hosts photo URLs may point at (name or *.suffix)."""

    vision_max_image_bytes: int = Field(default=20 * 1024 * 1024, gt=0, le=100 * 1024 * 1024)
    """Largest photo accepted, uploaded or fetched from a URL (also bound by
    MAX_REQUEST_BODY_BYTES)."""

    vision_fetch_timeout_seconds: PositiveSeconds = Field(default=10.0, le=120)
    """Longest a photo URL's fetch may take."""

    vision_claim_wait_seconds: PositiveSeconds = Field(default=60.0, le=600)
    """How long a request waits for another's analysis."""

    vision_claim_stale_seconds: PositiveSeconds = Field(default=180.0, le=3600)
    """Age at which a pending claim is taken over."""

    vision_analysis_timeout_seconds: PositiveSeconds = Field(default=120.0, le=3000)
    """Longest a replica's Claude analysis of one photo may take (504 after it, the claim given
    back); below VISION_CLAIM_STALE_SECONDS, so that the claim of a replica still calling is
    never taken over and paid for twice."""

    @model_validator(mode="after")
    def _owner_gives_up_before_its_claim_goes_stale(self) -> Self:
        if self.vision_analysis_timeout_seconds >= self.vision_claim_stale_seconds:
            raise ValueError(
                "VISION_ANALYSIS_TIMEOUT_SECONDS must be below VISION_CLAIM_STALE_SECONDS "
                f"({self.vision_claim_stale_seconds:g} s): a claim must never go stale "
                "while its owner is still calling Claude"
            )
        return self
