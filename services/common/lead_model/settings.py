"""Where the lead-scoring model comes from: the one home of the ML_MODEL_* settings.

Both services that score leads (ml-services over HTTP, websocket-manager
in-process at ingest) mix `LeadModelSettings` into their settings class, so
the variables, defaults and validation are written once.
"""

from __future__ import annotations

from pydantic import Field

from services.common.lead_model.artifact import ArtifactUri
from services.common.settings import EnvSettings

#: The largest batch one scoring call may carry (ML_BATCH_SIZE's upper bound).
MAX_BATCH_LEADS = 1000


class LeadModelSettings(EnvSettings):
    """ML_MODEL_URI, ML_MODEL_CACHE_SIZE and ML_BATCH_SIZE."""

    ml_model_uri: ArtifactUri = "models/lead_scoring.joblib"
    """Model artifact: s3://bucket/key, a published s3:// or file:// prefix ending in /,
    file:///abs/path or a relative path."""

    ml_model_cache_size: int = Field(default=100, ge=0, le=1_000_000)
    """LRU score-cache entries (0 disables)."""

    ml_batch_size: int = Field(default=32, ge=1, le=MAX_BATCH_LEADS)
    """Leads per model call."""
