"""Settings of coaching-engine, read from the environment at start-up."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from services.common.settings import CommonSettings, LatencyWindowSize, PositiveSeconds


class CoachingSettings(CommonSettings):
    """CommonSettings (which include the Claude client's) and the COACHING_* variables."""

    service_name: ClassVar[str] = "coaching"

    coaching_session_timeout: PositiveSeconds = Field(default=300.0, le=3600)
    """Seconds one analysis may take (then 504)."""

    coaching_max_concurrent_analyses: int = Field(default=50, ge=1, le=10_000)
    """Analyses at once per replica (then 429)."""

    coaching_max_concurrent_analyses_per_tenant: int = Field(default=10, ge=1, le=10_000)
    """Analyses of one tenant at once per replica (then 429), so that one tenant's burst
    leaves the replica's other slots to the other tenants; above
    COACHING_MAX_CONCURRENT_ANALYSES, that one binds."""

    coaching_max_input_tokens: int = Field(default=150_000, ge=1_000, le=1_000_000)
    """Input budget of one analysis; longer transcripts are refused with 422."""

    coaching_max_output_tokens: int = Field(default=2_048, ge=256, le=16_384)
    """max_tokens of one analysis's Claude call (billed as an upper bound when unanswered)."""

    coaching_latency_window: LatencyWindowSize = 1000
    """Recent analyses behind /health/coaching."""
