"""In-process lead scoring: a verified model, chunked batch inference, an LRU cache.

`LeadScorer` is thread-safe: the ML service calls it from a worker thread per
request and the realtime service from its event handlers. Scores are the
model's probability that the lead converts, in [0, 1].
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sklearn

from services.common.lead_model.artifact import ArtifactMetadata, load_artifact
from services.common.lead_model.fastpath import compile_model
from services.common.lead_model.features import LeadFeatures
from services.common.lead_model.settings import LeadModelSettings

DEFAULT_BATCH_SIZE = 32


@dataclass(frozen=True)
class CacheStats:
    """Counters of a `ScoreCache` since it was created."""

    hits: int
    misses: int
    size: int
    capacity: int
    #: When the cache was created (Unix time): where its counters started at 0.
    created: float


class ScoreCache:
    """A bounded, thread-safe LRU map from (tenant, encoded lead) to a score.

    It holds only floats keyed by the tenant id and the lead's encoded feature
    row (no lead ids, names or contact data). The tenant is part of the key so
    one tenant's entries are never served to another, even for identical
    features. Entries belong to one loaded model: a new model gets a new cache.
    A capacity of 0 disables caching (every lookup is a miss).
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 0:
            raise ValueError(f"cache capacity must be >= 0, got {capacity}")
        self._capacity = capacity
        self._entries: OrderedDict[Hashable, float] = OrderedDict()
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0
        self._created = time.time()

    def get_many(self, keys: Sequence[Hashable]) -> list[float | None]:
        """Look up ``keys``; a hit becomes the most recently used entry."""
        found: list[float | None] = []
        with self._lock:
            for key in keys:
                value = self._entries.get(key)
                if value is None:
                    self._misses += 1
                else:
                    self._hits += 1
                    self._entries.move_to_end(key)
                found.append(value)
        return found

    def put_many(self, items: Sequence[tuple[Hashable, float]]) -> None:
        """Store scores, evicting the least recently used beyond capacity."""
        if self._capacity == 0:
            return
        with self._lock:
            for key, value in items:
                self._entries[key] = value
                self._entries.move_to_end(key)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)

    def stats(self) -> CacheStats:
        """Return hit/miss counters and the current size."""
        with self._lock:
            return CacheStats(
                self._hits, self._misses, len(self._entries), self._capacity, self._created
            )


class LeadScorer:
    """Scores leads with a verified lead-conversion model.

    Build it with `LeadScorer.load`. ``tenant_id`` is keyword-only on the
    scoring methods: with a tenant, scores go through the tenant-keyed cache;
    without one (``None``) the cache is bypassed, so a caller that does not
    know the tenant can never read another tenant's entry.
    """

    def __init__(
        self,
        model: Any,
        metadata: ArtifactMetadata,
        *,
        cache_size: int,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self._model = model
        # Verified at load against predict_proba; None (logged) means the pipeline scores.
        self._fast = compile_model(model)
        self._metadata = metadata
        self._batch_size = batch_size
        self.cache = ScoreCache(cache_size)

    @classmethod
    def load(
        cls,
        uri: str,
        *,
        cache_size: int,
        batch_size: int = DEFAULT_BATCH_SIZE,
        s3: Any | None = None,
    ) -> LeadScorer:
        """Load and verify the artifact at ``uri`` (path, ``file://`` or ``s3://``).

        Raises a `ModelArtifactError` subclass naming the problem when the
        artifact is missing, corrupt, or built for other features or another
        scikit-learn release. ``s3`` is the boto3 client for ``s3://`` URIs
        (``Storage.client``); without one it is built from the environment.
        """
        artifact = load_artifact(uri, s3=s3)
        return cls(artifact.model, artifact.metadata, cache_size=cache_size, batch_size=batch_size)

    @classmethod
    def from_settings(cls, settings: LeadModelSettings, *, s3: Any | None = None) -> LeadScorer:
        """`load` with ML_MODEL_URI, ML_MODEL_CACHE_SIZE and ML_BATCH_SIZE."""
        return cls.load(
            settings.ml_model_uri,
            cache_size=settings.ml_model_cache_size,
            batch_size=settings.ml_batch_size,
            s3=s3,
        )

    @property
    def version(self) -> str:
        """The artifact version (``v<schema>-<sha12>``)."""
        return self._metadata.version

    @property
    def metadata(self) -> ArtifactMetadata:
        """The verified metadata of the loaded artifact."""
        return self._metadata

    @property
    def batch_size(self) -> int:
        """How many uncached leads go to the model per call."""
        return self._batch_size

    def score(self, features: LeadFeatures, *, tenant_id: str | None = None) -> float:
        """Return the conversion probability of one lead."""
        return self.score_batch([features], tenant_id=tenant_id)[0]

    def score_batch(
        self, features: Sequence[LeadFeatures], *, tenant_id: str | None = None
    ) -> list[float]:
        """Return conversion probabilities, in input order.

        Cached leads are answered from the cache; the rest go to the model in
        chunks of ``batch_size`` rows, which bounds the memory of one call and
        keeps each predict call in the size range the latency was measured at.
        """
        rows = [lead.to_row() for lead in features]
        return self.score_rows(rows, tenant_id=tenant_id)

    def score_rows(
        self, rows: Sequence[tuple[float, ...]], *, tenant_id: str | None = None
    ) -> list[float]:
        """Score already-encoded rows (from `LeadFeatures.to_row`) of one tenant."""
        return self._score_keyed(rows, [tenant_id] * len(rows))

    def score_pairs(self, items: Sequence[tuple[str | None, LeadFeatures]]) -> list[float]:
        """Score ``(tenant_id, lead)`` pairs of possibly different tenants in one pass.

        Used to coalesce concurrent single-lead requests into one model call;
        each pair is cached under its own tenant (``None``: not cached).
        """
        return self._score_keyed(
            [lead.to_row() for _, lead in items], [tenant for tenant, _ in items]
        )

    def _score_keyed(
        self, rows: Sequence[tuple[float, ...]], tenants: Sequence[str | None]
    ) -> list[float]:
        if not rows:
            return []
        positions = [i for i, tenant in enumerate(tenants) if tenant is not None]
        results: list[float | None] = [None] * len(rows)
        if positions:
            keys = [(tenants[i], rows[i]) for i in positions]
            for i, value in zip(positions, self.cache.get_many(keys), strict=True):
                results[i] = value
        missing = [i for i, value in enumerate(results) if value is None]
        if missing:
            fresh = self._predict([rows[i] for i in missing])
            for i, value in zip(missing, fresh, strict=True):
                results[i] = value
            self.cache.put_many(
                [
                    ((tenants[i], rows[i]), value)
                    for i, value in zip(missing, fresh, strict=True)
                    if tenants[i] is not None
                ]
            )
        return [value for value in results if value is not None]

    def _predict(self, rows: Sequence[tuple[float, ...]]) -> list[float]:
        if self._fast is not None:
            return self._fast.predict(rows)
        scores: list[float] = []
        # Rows come from validated LeadFeatures (finite by construction) and the
        # estimator's parameters were validated when it was fitted, so
        # scikit-learn's per-call re-checks are skipped: they are a large share
        # of a one-row call. The context is thread-local, so concurrent callers
        # and the rest of the process are unaffected.
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            for start in range(0, len(rows), self._batch_size):
                chunk = np.asarray(rows[start : start + self._batch_size], dtype=np.float64)
                # Column 1 is P(converted); classes_ == [0, 1] was checked on load.
                scores.extend(float(p) for p in self._model.predict_proba(chunk)[:, 1])
        return scores


__all__ = ["DEFAULT_BATCH_SIZE", "CacheStats", "LeadScorer", "ScoreCache"]
