"""The churn-risk model as the service uses it: loaded, verified, vectorised."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

from services.churn.features import FEATURE_NAMES, FEATURE_SCHEMA_VERSION
from services.common.lead_model.artifact import ArtifactMetadata, load_artifact


@functools.cache
def _threadpools() -> ThreadpoolController:
    """The process's native thread pools, inspected once (``threadpool_limits``
    inspects every loaded library on each entry: about a millisecond, at one
    call per tenant and pass). First called from ``predict``, after the
    estimator is unpickled, so scikit-learn's OpenMP runtime is loaded."""
    return ThreadpoolController()


@dataclass(frozen=True)
class ChurnModel:
    """A verified churn artifact: ``predict`` maps feature rows to probabilities."""

    estimator: Any
    metadata: ArtifactMetadata
    uri: str

    @classmethod
    def load(cls, uri: str, *, s3: Any | None = None) -> ChurnModel:
        """Load and verify (sha256, feature list, scikit-learn version) the artifact.

        ``s3``: the shared boto3 client (``services.common.storage``) for ``s3://`` URIs.
        """
        loaded = load_artifact(
            uri,
            s3=s3,
            features=FEATURE_NAMES,
            feature_schema_version=FEATURE_SCHEMA_VERSION,
        )
        return cls(estimator=loaded.model, metadata=loaded.metadata, uri=loaded.uri)

    @property
    def version(self) -> str:
        """The artifact's content-addressed version."""
        return self.metadata.version

    def predict(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        """Calibrated churn probabilities, one per row of ``x``."""
        if len(x) == 0:
            return np.empty(0, dtype=np.float64)
        # One thread: OpenMP's team for a few thousand rows cost ten times the
        # CPU of the work itself on a shared 2-core host (docs/benchmarks.md, W4).
        with _threadpools().limit(limits=1, user_api="openmp"):
            result: NDArray[np.float64] = self.estimator.predict_proba(x)[:, 1]
        return result
