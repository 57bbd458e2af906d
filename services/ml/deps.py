"""FastAPI dependencies of ml-services (on top of services.common.deps)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from services.common.deps import PrincipalDep
from services.ml.inference import InferenceService

__all__ = ["InferenceDep", "PrincipalDep", "get_inference"]


async def get_inference(conn: HTTPConnection) -> InferenceService:
    """The inference service the lifespan built around the loaded model.

    ``async`` on purpose: FastAPI runs plain ``def`` dependencies in its
    thread pool, a thread hop per request for a single attribute read.
    """
    inference: InferenceService = conn.app.state.inference
    return inference


InferenceDep = Annotated[InferenceService, Depends(get_inference)]
