"""FastAPI dependencies of ml-services (on top of services.common.deps)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from services.common.deps import PrincipalDep, state_getter
from services.ml.inference import InferenceService

__all__ = ["InferenceDep", "PrincipalDep", "get_inference"]

get_inference = state_getter(
    "inference", InferenceService, "The inference service the lifespan built around the model."
)

InferenceDep = Annotated[InferenceService, Depends(get_inference)]
