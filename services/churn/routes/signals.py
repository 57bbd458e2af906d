"""CRM input: the leads to watch and their engagement signals.

- ``PUT /v1/churn/leads``: create or update up to 1,000 leads (contact id,
  agent, IANA time zone, pipeline stage). A lead must exist before its signals.
- ``POST /v1/churn/signals``: a batch of signals, validated and stored as a
  whole under the caller's tenant. Refusals are 422 with a reason:
  ``validation_error`` (fields), ``timestamp_in_future``, ``invalid_signal``,
  ``unknown_lead``. A retried signal (same ``signal_id``) is a duplicate,
  stored once; the same ``signal_id`` twice in one batch with different
  fields is a ``validation_error``. A re-engaging signal (reply, message received, appointment
  booked) cancels the lead's pending sends before the answer is sent, and
  every batch queues detection for the leads it touched.

The ``churn_prevention`` flag gates what the feature does to leads, not what
it knows: a tenant outside the rollout still has its leads and signals stored
(a reply still cancels the sends queued before), but they queue no detection.
When the tenant is back in, the scheduled pass works on every signal received
meanwhile, so it does not contact a lead who answered while the feature was off.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from services.churn.deps import DbDep, RuntimeDep
from services.churn.queue import defer_detection
from services.churn.runtime import ChurnRuntime
from services.churn.schemas import (
    LeadBatchCreate,
    LeadsAccepted,
    SignalBatchCreate,
    SignalsAccepted,
)
from services.churn.signals import SignalRejected, store_signals, upsert_leads
from services.common.auth import IngestPrincipalDep, auth_responses, require_scope
from services.common.body import BODY_ERROR_RESPONSES, Model, read_model, request_body_openapi
from services.common.scopes import CRM_INGEST

# The CRM integration's token: the crm:ingest scope (as the realtime ingest's).
# No flag: facts are stored whatever the tenant's rollout (module docstring).
router = APIRouter(
    prefix="/v1/churn",
    tags=["churn-signals"],
    dependencies=[Depends(require_scope(CRM_INGEST))],
    responses=auth_responses(CRM_INGEST),
)


async def _read(request: Request, runtime: ChurnRuntime, model: type[Model]) -> Model:
    """The body as ``model``, at most CHURN_MAX_BODY_BYTES."""
    return await read_model(
        request,
        model,
        limit=runtime.settings.churn_max_body_bytes,
        setting="CHURN_MAX_BODY_BYTES",
    )


@router.put(
    "/leads",
    response_model=LeadsAccepted,
    openapi_extra=request_body_openapi(LeadBatchCreate),
    responses=BODY_ERROR_RESPONSES,
)
async def put_leads(
    request: Request, principal: IngestPrincipalDep, db: DbDep, runtime: RuntimeDep
) -> LeadsAccepted:
    """Create or update the leads the orchestrator watches."""
    body = await _read(request, runtime, LeadBatchCreate)
    async with db.tenant(principal.tenant_id) as conn:
        count = await upsert_leads(conn, body.leads)
    return LeadsAccepted(upserted=count)


@router.post(
    "/signals",
    status_code=202,
    response_model=SignalsAccepted,
    openapi_extra=request_body_openapi(SignalBatchCreate),
    responses={
        **BODY_ERROR_RESPONSES,
        422: {"description": "Invalid signals; nothing stored. The reason says why."},
    },
)
async def post_signals(
    request: Request, principal: IngestPrincipalDep, db: DbDep, runtime: RuntimeDep
) -> SignalsAccepted | JSONResponse:
    """Store a batch of engagement signals and queue detection for their leads."""
    body = await _read(request, runtime, SignalBatchCreate)
    limit = runtime.settings.churn_max_signals_per_request
    if len(body.signals) > limit:
        return JSONResponse(
            {
                "detail": f"at most {limit} signals per request (CHURN_MAX_SIGNALS_PER_REQUEST)",
                "reason": "too_many_signals",
            },
            status_code=422,
        )
    try:
        async with db.tenant(principal.tenant_id) as conn:
            result = await store_signals(conn, body.signals, now=datetime.now(UTC))
            if result.changed_leads and runtime.feature_enabled(principal.tenant_id):
                await defer_detection(
                    conn, tenant_id=principal.tenant_id, lead_ids=result.changed_leads
                )
    except SignalRejected as exc:
        return JSONResponse(
            {"detail": str(exc), "reason": exc.reason, "errors": exc.problems}, status_code=422
        )
    # Committed: counted as the outcome route counts (services/churn/success.py),
    # so the dashboards' success rate includes the outcomes signals set; each
    # change is a delivered intervention's.
    for change in result.outcomes:
        runtime.metrics.count_outcome(
            change.stage, change.outcome, changed=True, became_success=change.became_success
        )
    return SignalsAccepted(
        stored=result.stored, duplicates=result.duplicates, cancelled_sends=result.cancelled_sends
    )
