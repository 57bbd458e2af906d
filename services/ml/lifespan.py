"""ml-services' own lifespan hook: the model and the inference service around it.

``create_app``'s common lifespan has opened object storage by the time this
runs; the model is read through that client, verified, and wrapped in an
`InferenceService` on ``app.state.inference`` (``InferenceDep``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.common.app import ServiceLifespan
from services.common.scoring import LeadScorer, ModelArtifactError
from services.common.storage import Storage
from services.ml.config import MLSettings
from services.ml.inference import InferenceService
from services.ml.vision.analysis import VisionAnalyzer
from services.ml.vision.fetch import PhotoFetcher
from services.ml.vision.images import ImageRejected
from services.ml.vision.media import MediaStore

log = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = "1"


class ModelLoadError(RuntimeError):
    """Start-up could not load the model artifact; the message says why."""


def load_scorer(settings: MLSettings, storage: Storage) -> LeadScorer:
    """The verified model of ML_MODEL_URI, or `ModelLoadError` saying why not."""
    try:
        return LeadScorer.from_settings(settings, s3=storage.client)
    except ModelArtifactError as exc:
        raise ModelLoadError(
            f"ml-services cannot start: model artifact ML_MODEL_URI={settings.ml_model_uri!r} "
            f"is unusable: {exc}"
        ) from exc


def ml_lifespan(settings: MLSettings) -> ServiceLifespan:
    """Load the model, start inference; stop it on shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Loading reads a file or S3 and unpickles: keep it off the event loop.
        scorer = await asyncio.to_thread(load_scorer, settings, app.state.storage)
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
        open_vision(app, settings)
        try:
            yield
        finally:
            del app.state.inference
            await inference.close()
            await app.state.photo_fetcher.close()

    return lifespan


def open_vision(app: FastAPI, settings: MLSettings) -> None:
    """Property vision's objects (the Claude client itself comes from ``Need.CLAUDE``)."""
    app.state.vision = VisionAnalyzer(
        db=app.state.db,
        model=settings.claude_model,
        wait_seconds=settings.vision_claim_wait_seconds,
        stale_seconds=settings.vision_claim_stale_seconds,
        analysis_timeout=settings.vision_analysis_timeout_seconds,
    )
    app.state.media = MediaStore.from_storage(app.state.storage)
    app.state.photo_fetcher = PhotoFetcher(
        allowed_hosts=settings.vision_url_allowed_hosts,
        max_bytes=settings.vision_max_image_bytes,
        timeout_seconds=settings.vision_fetch_timeout_seconds,
    )


async def image_rejected(_: Request, exc: Exception) -> JSONResponse:
    """422 ``{detail, reason}`` for a photo or photo reference that is refused."""
    assert isinstance(exc, ImageRejected)
    return JSONResponse({"detail": exc.detail, "reason": exc.reason}, status_code=422)


async def inference_timeout(_: Request, exc: Exception) -> JSONResponse:
    """503 ``inference_timeout`` with Retry-After: the caller may retry shortly."""
    return JSONResponse(
        {"detail": str(exc), "reason": "inference_timeout"},
        status_code=503,
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )
