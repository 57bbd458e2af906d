"""FastAPI dependencies of ml-services (on top of services.common.deps)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from services.common.deps import PrincipalDep
from services.ml.config import MLSettings
from services.ml.inference import InferenceService
from services.ml.vision.analysis import VisionAnalyzer
from services.ml.vision.fetch import PhotoFetcher
from services.ml.vision.images import ImageRejected
from services.ml.vision.media import MediaStore

__all__ = [
    "InferenceDep",
    "MediaDep",
    "OptionalMediaDep",
    "PhotoFetcherDep",
    "PrincipalDep",
    "SettingsDep",
    "VisionAnalyzerDep",
    "get_inference",
]


async def get_inference(conn: HTTPConnection) -> InferenceService:
    """The inference service the lifespan built around the loaded model.

    ``async`` on purpose: FastAPI runs plain ``def`` dependencies in its
    thread pool, a thread hop per request for a single attribute read.
    """
    inference: InferenceService = conn.app.state.inference
    return inference


async def get_ml_settings(conn: HTTPConnection) -> MLSettings:
    """ml-services' settings."""
    settings: MLSettings = conn.app.state.settings
    return settings


async def get_analyzer(conn: HTTPConnection) -> VisionAnalyzer:
    """The vision analyzer of this replica."""
    analyzer: VisionAnalyzer = conn.app.state.vision
    return analyzer


async def get_media(conn: HTTPConnection) -> MediaStore:
    """The media bucket; 422 ``media_not_configured`` when MEDIA_BUCKET is unset."""
    media: MediaStore | None = conn.app.state.media
    if media is None:
        raise ImageRejected(
            "media_not_configured", "no MEDIA_BUCKET is configured; send an image_url instead"
        )
    return media


async def get_optional_media(conn: HTTPConnection) -> MediaStore | None:
    """The media bucket, or None when MEDIA_BUCKET is unset."""
    media: MediaStore | None = conn.app.state.media
    return media


async def get_fetcher(conn: HTTPConnection) -> PhotoFetcher:
    """The SSRF-safe photo fetcher."""
    fetcher: PhotoFetcher = conn.app.state.photo_fetcher
    return fetcher


InferenceDep = Annotated[InferenceService, Depends(get_inference)]
SettingsDep = Annotated[MLSettings, Depends(get_ml_settings)]
VisionAnalyzerDep = Annotated[VisionAnalyzer, Depends(get_analyzer)]
MediaDep = Annotated[MediaStore, Depends(get_media)]
OptionalMediaDep = Annotated[MediaStore | None, Depends(get_optional_media)]
PhotoFetcherDep = Annotated[PhotoFetcher, Depends(get_fetcher)]
