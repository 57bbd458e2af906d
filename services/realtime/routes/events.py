"""``POST /v1/leads/events``: the CRM webhook that feeds the real-time stream.

The body is read and validated here rather than by FastAPI's body parameter
so that authentication comes first (an unauthenticated caller learns nothing
about the payload rules) and an oversized body is refused while it streams.
Malformed JSON or fields answer 422 with the field and the problem, a body
over REALTIME_MAX_EVENT_BYTES 413; neither is ever stored.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from services.realtime.deps import IngestDep, PrincipalDep, RealtimeSettingsDep
from services.realtime.schemas import LeadEventAccepted, LeadEventCreate

router = APIRouter(prefix="/v1/leads", tags=["lead-events"])


def _inline_refs(schema: Any, defs: dict[str, Any]) -> Any:
    # OpenAPI cannot resolve pydantic's local "#/$defs/..." references inside
    # an operation's schema, so nested models are inlined.
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline_refs(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inline_refs(item, defs) for item in schema]
    return schema


def _request_schema() -> dict[str, Any]:
    schema = LeadEventCreate.model_json_schema()
    inlined: dict[str, Any] = _inline_refs(schema, schema.get("$defs", {}))
    return inlined


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"event body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"event body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(body: bytes) -> LeadEventCreate:
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
        return LeadEventCreate.model_validate_json(body)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**err, "loc": ("body", *err.get("loc", ()))} for err in exc.errors(include_url=False)]
        ) from None


@router.post(
    "/events",
    status_code=202,
    response_model=LeadEventAccepted,
    summary="Ingest a CRM lead event",
    responses={
        401: {"description": "Missing, expired or forged bearer token."},
        413: {"description": "Body larger than REALTIME_MAX_EVENT_BYTES."},
        422: {"description": "Malformed JSON or fields; the reason names the field."},
        503: {"description": "Postgres unreachable: nothing was stored, retry."},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _request_schema()}},
        }
    },
)
async def ingest_lead_event(
    request: Request,
    principal: PrincipalDep,
    ingest: IngestDep,
    settings: RealtimeSettingsDep,
) -> Response:
    """Validate, score and store the event, then publish it to the tenant's feed.

    Answers 202 once the event is stored: ``delivery`` is ``published`` or,
    when Redis is unreachable, ``deferred`` (the outbox relay publishes it
    when Redis is back). The tenant comes from the token only.
    """
    event = _parse(await _read_body(request, settings.realtime_max_event_bytes))
    # Microsecond precision: what timestamptz stores, so a frame relayed from
    # Postgres carries exactly the accepted_at the acknowledgement gave.
    accepted = await ingest.ingest(
        tenant_id=principal.tenant_id, event=event, accepted_at=round(time.time(), 6)
    )
    return Response(
        orjson.dumps(accepted.model_dump()), status_code=202, media_type="application/json"
    )
