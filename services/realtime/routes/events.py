"""The CRM webhooks that feed the real-time stream.

- ``POST /v1/leads/events``: one event.
- ``POST /v1/leads/events/batch``: ``{"events": [...]}``, up to
  REALTIME_MAX_BATCH_EVENTS events of the caller's tenant, as CRMs deliver
  webhooks (HubSpot and Salesforce send up to 100 per request). The batch is
  validated as a whole and stored in one transaction: all its events are
  acknowledged, or none is stored and the answer says why.

The body is read and validated here (``services.common.body``) rather than by
FastAPI's body parameter so that each route's own limit applies while it
streams; authentication comes first, at the app's edge guard and again in
``PrincipalDep``, so an unauthenticated caller learns nothing about the
payload rules.
Malformed JSON or fields answer 422 with the field (for a batch, its index)
and the problem, a body over REALTIME_MAX_EVENT_BYTES (batch:
REALTIME_MAX_BATCH_BYTES) 413, a batch event over REALTIME_MAX_EVENT_BYTES
as compact JSON 422 with its index; none is ever stored.

CRMs retry webhooks: both routes take an ``Idempotency-Key`` header (1-255
visible ASCII characters, per tenant, honoured for 24 hours). A retry with
the same key and the same body gets the first answer and stores nothing
twice, also while the first request is still being stored; the same key
with another body is a 422 ``idempotency_key_reused``.

Each tenant has a budget of REALTIME_TENANT_EVENT_RATE events per second
across replicas (``services.realtime.budget``); a request past it is a 429
``tenant_rate_limited`` with ``Retry-After``, and nothing of it is stored. A
retry is charged like any request, the replay of an Idempotency-Key too, and
so is a request the budget took that then failed (a 503 while Postgres is
down, an Idempotency-Key reused): the budget is checked before storing, so it
cannot know the outcome. Retry-After says when the retries fit again.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Sequence
from typing import Annotated, TypeVar

import orjson
from fastapi import APIRouter, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from prometheus_client import Counter

from services.common.auth import IngestPrincipalDep, auth_responses
from services.common.body import BodyTooLarge, parse_body, read_body, request_body_openapi
from services.common.errors import ApiError
from services.common.scopes import CRM_INGEST
from services.realtime.budget import WINDOW_SECONDS as BUDGET_WINDOW_SECONDS
from services.realtime.deps import RuntimeDep
from services.realtime.ingest import IdempotencyKey, IdempotencyKeyReusedError
from services.realtime.runtime import RealtimeRuntime
from services.realtime.schemas import (
    LeadEventAccepted,
    LeadEventBatchAccepted,
    LeadEventBatchCreate,
    LeadEventCreate,
)

router = APIRouter(prefix="/v1/leads", tags=["lead-events"], responses=auth_responses(CRM_INGEST))

# Visible ASCII, as Stripe and the IETF draft (httpapi-idempotency-key) allow.
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Makes a retry safe: the same key and body within 24 h get the first "
        "answer and store nothing twice; the same key with another body is a 422.",
    ),
]


def _idempotency(value: str | None, body: bytes) -> IdempotencyKey | None:
    if value is None:
        return None
    if not _IDEMPOTENCY_KEY.fullmatch(value):
        raise RequestValidationError(
            [
                {
                    "loc": ("header", "Idempotency-Key"),
                    "msg": "must be 1-255 visible ASCII characters (a UUID is a good key)",
                    "type": "value_error",
                }
            ]
        )
    return IdempotencyKey(key=value, request_sha256=hashlib.sha256(body).digest())


async def _store(
    runtime: RealtimeRuntime,
    *,
    tenant_id: str,
    events: Sequence[LeadEventCreate],
    body: bytes,
    idempotency_key: str | None,
    answer: Callable[[list[LeadEventAccepted]], object],
) -> Response:
    """Store and publish the events of one request; 202 with ``answer(acknowledgements)``."""
    key = _idempotency(idempotency_key, body)
    wait = await runtime.budget.take(tenant_id, len(events))
    if wait is not None:
        rate = runtime.settings.realtime_tenant_event_rate
        runtime.metrics.events_rejected.labels(reason="rate_limited").inc()
        raise ApiError(
            429,
            f"the tenant sends more than {rate} events/s over {BUDGET_WINDOW_SECONDS} s "
            "(REALTIME_TENANT_EVENT_RATE); nothing was stored, retry after Retry-After seconds",
            reason="tenant_rate_limited",
            headers={"Retry-After": str(wait)},
        )
    try:
        # Microsecond precision: what timestamptz stores, so a frame relayed
        # from Postgres carries exactly the accepted_at the acknowledgement gave.
        accepted = await runtime.ingest.ingest_many(
            tenant_id=tenant_id,
            events=events,
            accepted_at=round(time.time(), 6),
            idempotency=key,
        )
    except IdempotencyKeyReusedError as error:
        raise ApiError(
            422, f"{error}; use a new key for a new request", reason="idempotency_key_reused"
        ) from None
    return Response(orjson.dumps(answer(accepted)), status_code=202, media_type="application/json")


_RATE_LIMITED = {
    "description": "The tenant is over REALTIME_TENANT_EVENT_RATE: nothing was stored; "
    "retry after Retry-After seconds.",
    "headers": {"Retry-After": {"schema": {"type": "integer"}}},
}

# Both routes authenticate and authorize alike.
Body = TypeVar("Body", LeadEventCreate, LeadEventBatchCreate)


async def _read_valid(
    request: Request, runtime: RealtimeRuntime, model: type[Body], limit: int, setting: str
) -> tuple[Body, bytes]:
    """The request's body read (at most ``limit`` bytes) and validated as ``model``.

    Refusals are counted in ``realtime_events_rejected_total`` by reason.
    """
    rejected = runtime.metrics.events_rejected
    try:
        body = await read_body(request, limit=limit, setting=setting)
    except BodyTooLarge:
        rejected.labels(reason="too_large").inc()
        raise
    try:
        return parse_body(body, model), body
    except RequestValidationError:
        rejected.labels(reason="invalid").inc()
        raise


def _check_event_sizes(batch: LeadEventBatchCreate, limit: int, rejected: Counter) -> None:
    """422 naming the first event of ``batch`` larger than one event may be.

    An event is stored, kept in its tenant's Redis stream (REALTIME_STREAM_MAXLEN
    of them) and sent to every socket as it is, whichever route brought it: the
    single-event route bounds its body by REALTIME_MAX_EVENT_BYTES, so a batch
    must bound each of its events too, or one batch event could be as large as
    REALTIME_MAX_BATCH_BYTES, 16 times the stream memory and frame size planned
    for. Measured as compact JSON, so any event the single route accepts fits.
    """
    for index, event in enumerate(batch.events):
        size = len(event.__pydantic_serializer__.to_json(event))
        if size > limit:
            rejected.labels(reason="too_large").inc()
            raise RequestValidationError(
                [
                    {
                        "loc": ("body", "events", index),
                        "msg": f"the event is {size} bytes as JSON; one event holds at most "
                        f"{limit} (REALTIME_MAX_EVENT_BYTES), in a batch too",
                        "type": "too_long",
                    }
                ]
            )


@router.post(
    "/events",
    status_code=202,
    response_model=LeadEventAccepted,
    summary="Ingest a CRM lead event",
    responses={
        413: {"description": "Body larger than REALTIME_MAX_EVENT_BYTES."},
        422: {
            "description": "Malformed JSON or fields (the detail names the field), input "
            "that cannot be stored, or an Idempotency-Key reused with another body."
        },
        429: _RATE_LIMITED,
        503: {"description": "Postgres unreachable: nothing was stored, retry."},
    },
    openapi_extra=request_body_openapi(LeadEventCreate),
)
async def ingest_lead_event(
    request: Request,
    principal: IngestPrincipalDep,
    # One dependency rather than one per part: each costs FastAPI work on
    # every request, and this is the hottest route of the service.
    runtime: RuntimeDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Validate, score and store the event, then publish it to the tenant's feed.

    Answers 202 once the event is stored: ``delivery`` is ``published`` or,
    when Redis is unreachable, ``deferred`` (the outbox relay publishes it
    when Redis is back). The tenant comes from the token only.
    """
    event, body = await _read_valid(
        request,
        runtime,
        LeadEventCreate,
        runtime.settings.realtime_max_event_bytes,
        "REALTIME_MAX_EVENT_BYTES",
    )
    return await _store(
        runtime,
        tenant_id=principal.tenant_id,
        events=[event],
        body=body,
        idempotency_key=idempotency_key,
        answer=lambda accepted: accepted[0].model_dump(),
    )


@router.post(
    "/events/batch",
    status_code=202,
    response_model=LeadEventBatchAccepted,
    summary="Ingest a batch of CRM lead events",
    responses={
        413: {"description": "Body larger than REALTIME_MAX_BATCH_BYTES."},
        422: {
            "description": "Malformed JSON or fields (the reason names the event's index "
            "and the field), an event over REALTIME_MAX_EVENT_BYTES as JSON, more than "
            "REALTIME_MAX_BATCH_EVENTS events, input that cannot be "
            "stored, or an Idempotency-Key reused with another body. Nothing stored."
        },
        429: _RATE_LIMITED,
        503: {"description": "Postgres unreachable: no event of the batch was stored, retry."},
    },
    openapi_extra=request_body_openapi(LeadEventBatchCreate),
)
async def ingest_lead_event_batch(
    request: Request,
    principal: IngestPrincipalDep,
    runtime: RuntimeDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Validate, score and store every event of the batch together, then publish them.

    Answers 202 with one acknowledgement per event, in request order, once
    all are stored (one transaction); ``accepted_at`` is the same for all.
    """
    settings = runtime.settings
    batch, body = await _read_valid(
        request,
        runtime,
        LeadEventBatchCreate,
        settings.realtime_max_batch_bytes,
        "REALTIME_MAX_BATCH_BYTES",
    )
    rejected = runtime.metrics.events_rejected
    if len(batch.events) > settings.realtime_max_batch_events:
        rejected.labels(reason="too_many_events").inc()
        raise RequestValidationError(
            [
                {
                    "loc": ("body", "events"),
                    "msg": f"a batch holds at most {settings.realtime_max_batch_events} "
                    f"events (REALTIME_MAX_BATCH_EVENTS), got {len(batch.events)}; "
                    "split it into several requests",
                    "type": "too_long",
                }
            ]
        )
    _check_event_sizes(batch, settings.realtime_max_event_bytes, rejected)
    return await _store(
        runtime,
        tenant_id=principal.tenant_id,
        events=batch.events,
        body=body,
        idempotency_key=idempotency_key,
        answer=lambda accepted: {"events": [one.model_dump() for one in accepted]},
    )
