"""Interventions and dead letters, for operators and the CRM's outcome callbacks.

- ``GET /v1/churn/interventions?status=&limit=``: the tenant's latest interventions.
- ``POST /v1/churn/interventions/{intervention_id}/outcome``: record
  ``responded``, ``re_engaged`` or ``churned`` (a churned lead stops being watched).
- ``GET /v1/churn/dead-letters``: sends that exhausted their retries, with
  the last error.
- ``POST /v1/churn/dead-letters/{outbox_id}/retry``: put one back in the
  queue with a fresh retry budget (same idempotency key).
"""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, HTTPException, Query, Request

from services.churn.config import CHURN_FEATURE
from services.churn.deps import DbDep, PrincipalDep, RuntimeDep
from services.churn.queue import defer_deliveries, pending_backlog
from services.churn.schemas import DeadLetterPublic, InterventionPublic, OutcomeUpdate
from services.common.body import parse_body, read_body
from services.common.flags import require_feature

# edges: the operator scope goes on this router.
# A tenant outside the churn_prevention rollout gets 403 feature_disabled.
router = APIRouter(
    prefix="/v1/churn", tags=["churn-interventions"], dependencies=[require_feature(CHURN_FEATURE)]
)

StatusFilter = Literal["pending", "delivered", "not_sent", "suppressed", "cancelled", "dead_letter"]


@router.get("/interventions", response_model=list[InterventionPublic])
async def list_interventions(
    principal: PrincipalDep,
    db: DbDep,
    status: StatusFilter | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[InterventionPublic]:
    """The tenant's most recent interventions, newest first."""
    async with db.tenant(principal.tenant_id) as conn:
        rows = await conn.fetch(
            """
            SELECT intervention_id, lead_id, churn_probability::float8 AS churn_probability,
                   intervention_stage, channels_used, status, reason, outcome, detected_at,
                   intervened_at, detection_latency_seconds, intervention_latency_seconds
            FROM churn_interventions WHERE ($1::text IS NULL OR status = $1)
            ORDER BY created_at DESC LIMIT $2
            """,
            status,
            limit,
        )
    return [InterventionPublic(**dict(row)) for row in rows]


@router.post("/interventions/{intervention_id}/outcome", response_model=InterventionPublic)
async def record_outcome(
    intervention_id: UUID,
    request: Request,
    principal: PrincipalDep,
    db: DbDep,
    runtime: RuntimeDep,
) -> InterventionPublic:
    """Record what became of an intervention's lead."""
    body = parse_body(await read_body(request, limit=4096, setting="outcome body"), OutcomeUpdate)
    async with db.tenant(principal.tenant_id) as conn:
        row = await conn.fetchrow(
            """
            UPDATE churn_interventions SET outcome = $2, outcome_at = now()
            WHERE intervention_id = $1
            RETURNING intervention_id, lead_id, churn_probability::float8 AS churn_probability,
                      intervention_stage, channels_used, status, reason, outcome, detected_at,
                      intervened_at, detection_latency_seconds, intervention_latency_seconds
            """,
            intervention_id,
            body.outcome,
        )
        if row is None:
            raise HTTPException(404, "no such intervention for this tenant")
        if body.outcome == "churned":
            await conn.execute(
                "UPDATE churn_leads SET status = 'churned' WHERE lead_id = $1", row["lead_id"]
            )
    if runtime.metrics is not None:
        runtime.metrics.interventions.labels(row["intervention_stage"], "any", body.outcome).inc()
    return InterventionPublic(**dict(row))


@router.get("/dead-letters", response_model=list[DeadLetterPublic])
async def list_dead_letters(
    principal: PrincipalDep, db: DbDep, limit: Annotated[int, Query(ge=1, le=500)] = 100
) -> list[DeadLetterPublic]:
    """Sends in the dead-letter state, newest first, with their last error."""
    async with db.tenant(principal.tenant_id) as conn:
        rows = await conn.fetch(
            "SELECT outbox_id, intervention_id, lead_id, channel, attempts, last_error, "
            "updated_at FROM churn_outbox WHERE status = 'dead_letter' "
            "ORDER BY updated_at DESC LIMIT $1",
            limit,
        )
    return [DeadLetterPublic(**dict(row)) for row in rows]


@router.post("/dead-letters/{outbox_id}/retry", status_code=202)
async def retry_dead_letter(outbox_id: UUID, principal: PrincipalDep, db: DbDep) -> dict[str, str]:
    """Queue a dead-lettered send again, with a fresh retry budget."""
    async with db.tenant(principal.tenant_id) as conn:
        row = await conn.fetchrow(
            "UPDATE churn_outbox SET status = 'pending', attempts = 0, not_before = now(), "
            "reason = NULL WHERE outbox_id = $1 AND status = 'dead_letter' "
            "RETURNING outbox_id, intervention_id, not_before",
            outbox_id,
        )
        if row is None:
            raise HTTPException(404, "no dead letter with this id for this tenant")
        await conn.execute(
            "UPDATE churn_interventions SET status = 'pending', reason = NULL "
            "WHERE intervention_id = $1 AND status = 'dead_letter'",
            row["intervention_id"],
        )
        await defer_deliveries(
            conn,
            tenant_id=principal.tenant_id,
            outbox_ids=[row["outbox_id"]],
            priorities=[-(await pending_backlog(conn))],
            not_before=[row["not_before"]],
        )
    return {"status": "queued", "outbox_id": str(outbox_id)}
