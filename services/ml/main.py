"""ml-services (port 8002): lead scoring over HTTP.

``create_app()`` builds the app from the environment; ``enterprisehub serve ml``
runs it. Start-up loads and verifies the model artifact at ML_MODEL_URI and
fails, with the artifact error's message, when it is missing, corrupt or
incompatible: a replica that cannot score must never pass its health check.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry

from services.common.app import ServiceLifespan
from services.common.app import create_app as create_common_app
from services.common.claude import close_claude, install_claude_error_handlers, open_claude
from services.common.scoring import LeadScorer, ModelArtifactError
from services.ml.config import MLSettings
from services.ml.health import ML_FEATURE_HEALTH
from services.ml.inference import InferenceService, InferenceTimeoutError
from services.ml.routes import scoring, vision
from services.ml.vision.analysis import VisionAnalyzer
from services.ml.vision.fetch import PhotoFetcher
from services.ml.vision.images import ImageRejected
from services.ml.vision.media import MediaStore

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "1"


class ModelLoadError(RuntimeError):
    """Start-up could not load the model artifact; the message says why."""


def _load_scorer(settings: MLSettings) -> LeadScorer:
    try:
        return LeadScorer.load(
            settings.ml_model_uri,
            cache_size=settings.ml_model_cache_size,
            batch_size=settings.ml_batch_size,
            s3_endpoint_url=settings.s3_endpoint_url,
        )
    except ModelArtifactError as exc:
        raise ModelLoadError(
            f"ml-services cannot start: model artifact ML_MODEL_URI={settings.ml_model_uri!r} "
            f"is unusable: {exc}"
        ) from exc


def _lifespan(settings: MLSettings) -> ServiceLifespan:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Loading reads a file or S3 and unpickles: keep it off the event loop.
        scorer = await asyncio.to_thread(_load_scorer, settings)
        inference = InferenceService(
            scorer,
            registry=app.state.registry,
            timeout_seconds=settings.ml_inference_timeout,
            workers=settings.ml_inference_workers,
            window_size=settings.ml_latency_window,
        )
        inference.start()
        app.state.inference = inference
        log.info(
            "lead-scoring model %s loaded from %s (held-out AUC %.4f)",
            scorer.version,
            settings.ml_model_uri,
            scorer.metadata.heldout_auc,
        )
        _open_vision(app, settings)
        try:
            yield
        finally:
            del app.state.inference
            await inference.close()
            await app.state.photo_fetcher.close()
            await close_claude(app)

    return lifespan


def _open_vision(app: FastAPI, settings: MLSettings) -> None:
    """Property vision's clients; without ANTHROPIC_API_KEY its routes answer 503."""
    open_claude(app, settings)
    app.state.vision = VisionAnalyzer(
        db=app.state.db,
        model=settings.claude_model,
        wait_seconds=settings.vision_claim_wait_seconds,
        stale_seconds=settings.vision_claim_stale_seconds,
    )
    app.state.media = (
        MediaStore(settings.media_bucket, endpoint_url=settings.s3_endpoint_url)
        if settings.media_bucket
        else None
    )
    app.state.photo_fetcher = PhotoFetcher(
        allowed_hosts=settings.vision_url_allowed_hosts,
        max_bytes=settings.vision_max_image_bytes,
        timeout_seconds=settings.vision_fetch_timeout_seconds,
    )


async def _image_rejected(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ImageRejected)
    return JSONResponse({"detail": exc.detail, "reason": exc.reason}, status_code=422)


async def _inference_timeout(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"detail": str(exc), "reason": "inference_timeout"},
        status_code=503,
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


def create_app(
    settings: MLSettings | None = None, *, registry: CollectorRegistry | None = None
) -> FastAPI:
    """Build ml-services; settings default to the environment (MLSettings.from_env)."""
    settings = settings if settings is not None else MLSettings.from_env()
    app = create_common_app(
        settings=settings,
        title="EnterpriseHub ml-services",
        service="ml",
        routers=[scoring.router, vision.router],
        feature_health=ML_FEATURE_HEALTH,
        lifespan=_lifespan(settings),
        registry=registry,
    )
    app.add_exception_handler(InferenceTimeoutError, _inference_timeout)
    app.add_exception_handler(ImageRejected, _image_rejected)
    install_claude_error_handlers(app)
    return app
