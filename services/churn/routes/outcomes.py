"""What became of an intervention's lead, reported by the CRM (the ``crm:ingest`` scope).

- ``POST /v1/churn/interventions/{intervention_id}/outcome``: record
  ``responded``, ``re_engaged`` or ``churned`` (a churned lead stops being
  watched). 404 ``unknown_intervention`` for an id the caller's tenant does
  not have (another tenant's included: row-level security hides it).

The CRM integration posts these with the same token as its leads and signals:
outcomes are CRM data, and the success rate is computed from them.
"""

from __future__ import annotations

from uuid import UUID

from fastapi import APIRouter, Request

from services.churn.deps import DbDep, RuntimeDep, route_guard
from services.churn.schemas import InterventionPublic, OutcomeUpdate
from services.common.auth import CRM_INGEST, IngestPrincipalDep
from services.common.body import parse_body, read_body
from services.common.errors import ApiError

#: An outcome body is ``{"outcome": "..."}``: a few bytes.
MAX_OUTCOME_BODY_BYTES = 4096

router = APIRouter(
    prefix="/v1/churn", tags=["churn-outcomes"], dependencies=route_guard(CRM_INGEST)
)


@router.post("/interventions/{intervention_id}/outcome", response_model=InterventionPublic)
async def record_outcome(
    intervention_id: UUID,
    request: Request,
    principal: IngestPrincipalDep,
    db: DbDep,
    runtime: RuntimeDep,
) -> InterventionPublic:
    """Record what became of an intervention's lead."""
    body = parse_body(
        await read_body(request, limit=MAX_OUTCOME_BODY_BYTES, setting="outcome body"),
        OutcomeUpdate,
    )
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
            raise ApiError(
                404, "no such intervention for this tenant", reason="unknown_intervention"
            )
        if body.outcome == "churned":
            await conn.execute(
                "UPDATE churn_leads SET status = 'churned' WHERE lead_id = $1", row["lead_id"]
            )
    runtime.metrics.interventions.labels(row["intervention_stage"], "any", body.outcome).inc()
    return InterventionPublic(**dict(row))
