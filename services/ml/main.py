"""ml-services (port 8002): lead scoring over HTTP.

``create_app()`` builds the app from the environment; ``enterprisehub serve ml``
runs it. Start-up loads and verifies the model artifact at ML_MODEL_URI (read
through the shared object-storage client when it is in S3) and fails, with
the artifact error's message, when it is missing, corrupt or incompatible: a
replica that cannot score must never pass its health check. Scoring reads
neither Postgres nor Redis, so the service declares only object storage.
"""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.common.app import Need
from services.common.app import create_app as create_service_app
from services.ml.config import MLSettings
from services.ml.health import ML_FEATURE_HEALTH
from services.ml.inference import InferenceTimeoutError
from services.ml.lifespan import ModelLoadError, inference_timeout, ml_lifespan
from services.ml.routes import scoring

__all__ = ["ModelLoadError", "create_app"]

NEEDS = frozenset({Need.STORAGE})


def create_app(
    settings: MLSettings | None = None, *, registry: CollectorRegistry | None = None
) -> FastAPI:
    """Build ml-services; settings default to the environment (MLSettings.from_env)."""
    settings = settings if settings is not None else MLSettings.from_env()
    app = create_service_app(
        settings=settings,
        title="EnterpriseHub ml-services",
        service="ml",
        routers=[scoring.router],
        needs=NEEDS,
        feature_health=ML_FEATURE_HEALTH,
        lifespan=ml_lifespan(settings),
        registry=registry,
    )
    app.add_exception_handler(InferenceTimeoutError, inference_timeout)
    return app
