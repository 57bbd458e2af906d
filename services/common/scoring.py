"""Stable in-process lead-scoring API (used by ml-services and the realtime ingest).

    from services.common.scoring import LeadFeatures, LeadScorer

    scorer = LeadScorer.load("s3://models/lead-scoring/v1-abc/model.joblib", cache_size=100)
    scorer.score(LeadFeatures(...), tenant_id="t1")        # -> float in [0, 1]
    scorer.score_batch([...], tenant_id="t1")               # -> list[float], input order
    scorer.version                                          # "v1-<sha12>"

`LeadScorer.load` accepts a plain path, ``file:///abs/path`` or
``s3://bucket/key`` (read with ``services.common.storage``'s client) and
raises a `ModelArtifactError` subclass with a clear message when the artifact
is missing, corrupt (sha256 mismatch) or incompatible (features or
scikit-learn major.minor). Scoring is thread-safe; ``tenant_id`` keys the
LRU cache (omit it to bypass the cache). See docs/lead-scoring-model.md.
"""

from services.common.lead_model.artifact import (
    ArtifactCompatibilityError,
    ArtifactIntegrityError,
    ArtifactMetadata,
    ArtifactNotFoundError,
    ModelArtifactError,
    load_artifact,
    parse_artifact_uri,
)
from services.common.lead_model.features import (
    FEATURE_NAMES,
    FEATURE_SCHEMA_VERSION,
    SOURCES,
    TIMELINES,
    BuyingTimeline,
    LeadFeatures,
    LeadSource,
)
from services.common.lead_model.scorer import CacheStats, LeadScorer, ScoreCache
from services.common.lead_model.settings import MAX_BATCH_LEADS, LeadModelSettings

__all__ = [
    "FEATURE_NAMES",
    "FEATURE_SCHEMA_VERSION",
    "MAX_BATCH_LEADS",
    "SOURCES",
    "TIMELINES",
    "ArtifactCompatibilityError",
    "ArtifactIntegrityError",
    "ArtifactMetadata",
    "ArtifactNotFoundError",
    "BuyingTimeline",
    "CacheStats",
    "LeadFeatures",
    "LeadModelSettings",
    "LeadScorer",
    "LeadSource",
    "ModelArtifactError",
    "ScoreCache",
    "load_artifact",
    "parse_artifact_uri",
]
