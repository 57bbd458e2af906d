"""FastAPI dependencies of ml-services (on top of services.common.deps)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from services.common.deps import state_getter
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
    "SettingsDep",
    "VisionAnalyzerDep",
    "get_inference",
]

get_inference = state_getter(
    "inference", InferenceService, "The inference service the lifespan built around the model."
)

InferenceDep = Annotated[InferenceService, Depends(get_inference)]
get_ml_settings = state_getter("settings", MLSettings, "ml-services' settings.")
get_analyzer = state_getter("vision", VisionAnalyzer, "The vision analyzer of this replica.")
get_fetcher = state_getter("photo_fetcher", PhotoFetcher, "The SSRF-safe photo fetcher.")


async def get_optional_media(conn: HTTPConnection) -> MediaStore | None:
    """The media bucket, or None when MEDIA_BUCKET is unset."""
    media: MediaStore | None = conn.app.state.media
    return media


async def get_media(conn: HTTPConnection) -> MediaStore:
    """The media bucket; 422 ``media_not_configured`` when MEDIA_BUCKET is unset."""
    media: MediaStore | None = conn.app.state.media
    if media is None:
        raise ImageRejected(
            "media_not_configured", "no MEDIA_BUCKET is configured; send an image_url instead"
        )
    return media


SettingsDep = Annotated[MLSettings, Depends(get_ml_settings)]
VisionAnalyzerDep = Annotated[VisionAnalyzer, Depends(get_analyzer)]
MediaDep = Annotated[MediaStore, Depends(get_media)]
OptionalMediaDep = Annotated[MediaStore | None, Depends(get_optional_media)]
PhotoFetcherDep = Annotated[PhotoFetcher, Depends(get_fetcher)]
