"""Reading a JSON body after authentication, bounded while it streams.

Routes take the body here rather than as a FastAPI body parameter so that
the bearer token is checked first (an unauthenticated caller learns nothing
about the payload rules) and an oversized body is refused with 413 before it
is held in memory.
"""

from __future__ import annotations

from typing import TypeVar

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)


async def read_model(request: Request, model: type[Model], *, limit: int, setting: str) -> Model:
    """The body (at most ``limit`` bytes) validated as ``model``; 413 or 422 otherwise."""
    too_large = f"body exceeds {limit} bytes ({setting}); send less data per request"
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, too_large)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, too_large)
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body:
        raise RequestValidationError(
            [
                {
                    "loc": ("body",),
                    "msg": "request body is empty; send a JSON object",
                    "type": "missing",
                }
            ]
        )
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**err, "loc": ("body", *err["loc"])} for err in exc.errors(include_url=False)]
        ) from None
