"""Interventions as operators see them (the ``operator`` scope).

- ``GET /v1/churn/interventions?status=&limit=``: the tenant's latest interventions.

Their outcomes come from the CRM integration (routes/outcomes.py). A read:
answered whatever the tenant's ``churn_prevention`` rollout (the operators of
a tenant the feature was turned off for need it most).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query

from services.churn.deps import DbDep
from services.churn.schemas import InterventionPublic
from services.common.auth import OperatorPrincipalDep, auth_responses, require_scope
from services.common.scopes import OPERATOR

router = APIRouter(
    prefix="/v1/churn",
    tags=["churn-interventions"],
    dependencies=[Depends(require_scope(OPERATOR))],
    responses=auth_responses(OPERATOR),
)

StatusFilter = Literal["pending", "delivered", "not_sent", "suppressed", "cancelled", "dead_letter"]


@router.get("/interventions", response_model=list[InterventionPublic])
async def list_interventions(
    principal: OperatorPrincipalDep,
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
