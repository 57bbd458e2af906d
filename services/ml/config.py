"""Settings of ml-services (lead scoring), read from the environment at start-up."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from services.common.claude import ClaudeSettings
from services.common.scoring import ModelArtifactError, parse_artifact_uri
from services.common.settings import CommonSettings

# The largest batch one request may carry. Larger lists are refused with 422
# rather than queued: at about 40 us per lead (docs/benchmarks.md, W2) 1,000
# leads stay well inside ML_INFERENCE_TIMEOUT, and the body stays under ~1 MB.
MAX_BATCH_LEADS = 1000


class MLSettings(CommonSettings, ClaudeSettings):
    """CommonSettings plus the ML_* and VISION_* variables, the Claude client's settings
    and where the model artifact lives."""

    service_name: ClassVar[str] = "ml"

    ml_model_uri: str = Field(
        default="models/lead_scoring.joblib",
        description="Model artifact: s3://bucket/key, file:///abs/path or a relative path.",
    )
    ml_model_cache_size: int = Field(
        default=100, ge=0, le=1_000_000, description="LRU score-cache entries (0 disables)."
    )
    ml_batch_size: int = Field(
        default=32, ge=1, le=MAX_BATCH_LEADS, description="Leads per model call."
    )
    ml_inference_timeout: float = Field(
        default=10.0, gt=0, le=300, description="Seconds before a scoring request gets 503."
    )
    ml_inference_workers: int = Field(
        default=2, ge=1, le=64, description="Threads running model inference."
    )
    ml_latency_window: int = Field(
        default=1000, ge=10, le=100_000, description="Recent inferences behind /health/ml."
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="S3-compatible endpoint (in-cluster storage); unset for AWS."
    )

    media_bucket: str | None = Field(
        default=None, description="Bucket of tenants' photos; unset disables uploads and keys."
    )
    vision_url_allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated hosts photo URLs may point at (name or *.suffix).",
    )
    vision_max_image_bytes: int = Field(default=20 * 1024 * 1024, gt=0, le=100 * 1024 * 1024)
    vision_fetch_timeout_seconds: float = Field(default=10.0, gt=0, le=120)
    vision_claim_wait_seconds: float = Field(
        default=60.0, gt=0, le=600, description="How long a request waits for another's analysis."
    )
    vision_claim_stale_seconds: float = Field(
        default=180.0, gt=0, le=3600, description="Age at which a pending claim is taken over."
    )

    @field_validator("vision_url_allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("ml_model_uri")
    @classmethod
    def _model_uri_parses(cls, value: str) -> str:
        try:
            parse_artifact_uri(value)
        except ModelArtifactError as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("s3_endpoint_url", "media_bucket", mode="before")
    @classmethod
    def _empty_endpoint_is_unset(cls, value: object) -> object:
        return None if value == "" else value
