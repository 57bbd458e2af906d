"""ml-services (port 8002): lead scoring over HTTP.

``create_app()`` builds the app from the environment; ``enterprisehub serve ml``
runs it. Start-up loads and verifies the model artifact at ML_MODEL_URI (read
through the shared object-storage client when it is in S3) and fails, with
the artifact error's message, when it is missing, corrupt or incompatible: a
replica that cannot score must never pass its health check. Scoring reads
neither Postgres nor Redis; property vision (routes/vision.py) needs Postgres
and Claude, and Redis for its feature flag.
"""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.common.app import Need
from services.common.app import create_app as create_service_app
from services.ml.config import MLSettings
from services.ml.health import ML_FEATURE_HEALTH
from services.ml.inference import InferenceTimeoutError
from services.ml.lifespan import ModelLoadError, image_rejected, inference_timeout, ml_lifespan
from services.ml.routes import scoring, vision
from services.ml.vision.images import ImageRejected

__all__ = ["ModelLoadError", "create_app"]

# Scoring needs only storage (its model); property vision adds Postgres (analyses,
# claims, the cost ledger), Claude, and Redis for the feature-flag cache. Postgres
# being down fails vision, not scoring; Redis being down fails neither (the cache
# keeps the last known flags), so the health check requires no store.
NEEDS = frozenset({Need.STORAGE, Need.POSTGRES, Need.REDIS, Need.CLAUDE})


def create_app(
    settings: MLSettings | None = None, *, registry: CollectorRegistry | None = None
) -> FastAPI:
    """Build ml-services; settings default to the environment (MLSettings.from_env)."""
    settings = settings if settings is not None else MLSettings.from_env()
    app = create_service_app(
        settings=settings,
        title="EnterpriseHub ml-services",
        routers=[scoring.router, vision.router],
        needs=NEEDS,
        feature_health=ML_FEATURE_HEALTH,
        lifespan=ml_lifespan(settings),
        registry=registry,
    )
    app.add_exception_handler(InferenceTimeoutError, inference_timeout)
    app.add_exception_handler(ImageRejected, image_rejected)
    return app
