"""What became of an intervention's lead, reported by the CRM (the ``crm:ingest`` scope).

- ``POST /v1/churn/interventions/{intervention_id}/outcome``: record
  ``responded``, ``re_engaged`` or ``churned`` (a churned lead stops being
  watched). 404 ``unknown_intervention`` for an id the caller's tenant does
  not have (another tenant's included: row-level security hides it). A repeated
  report of the same outcome (the CRM retrying) is stored and counted once, and
  an intervention becomes a success once (services/churn/success.py).

Answered whatever the tenant's ``churn_prevention`` rollout: the flag gates
what the feature does to leads, not its measurement (a tenant rolled back still
has delivered interventions whose outcomes count).

The CRM integration posts these with the same token as its leads and signals:
outcomes are CRM data, stored whatever the intervention's status (a lead that
churned before we reached it still counts against churn). The success rate
counts only delivered interventions (services/churn/success.py), so
``churn_interventions_total{channel="any", outcome}`` counts an outcome only
when its intervention is delivered at the time of the report: the dashboards
divide it by delivered interventions, and an outcome of one that never reached
its lead would inflate that rate.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

from fastapi import APIRouter, Depends, Request

from services.churn.deps import DbDep, RuntimeDep
from services.churn.schemas import InterventionPublic, OutcomeUpdate
from services.churn.success import BECAME_SUCCESS, DELIVERED, SUCCEEDED_AT_AFTER
from services.common.auth import IngestPrincipalDep, auth_responses, require_scope
from services.common.body import BODY_ERROR_RESPONSES, read_model, request_body_openapi
from services.common.errors import ApiError
from services.common.identifiers import CanonicalUuid
from services.common.scopes import CRM_INGEST

#: An outcome body is ``{"outcome": "..."}``: a few bytes.
MAX_OUTCOME_BODY_BYTES = 4096

#: The outcome ``$2`` of intervention ``$1``, reported at ``$3``. The row is locked
#: first, so of two concurrent copies the second reads the first's outcome as
#: ``previous`` and counts nothing.
RECORD_OUTCOME: Final = f"""
WITH previous AS (
    SELECT intervention_id, outcome, succeeded_at FROM churn_interventions
    WHERE intervention_id = $1 FOR UPDATE
)
UPDATE churn_interventions i SET outcome = $2,
       outcome_at = CASE WHEN previous.outcome IS DISTINCT FROM $2
                         THEN $3 ELSE i.outcome_at END,
       succeeded_at = {SUCCEEDED_AT_AFTER}
FROM previous WHERE i.intervention_id = previous.intervention_id
RETURNING i.intervention_id, i.lead_id,
          i.churn_probability::float8 AS churn_probability, i.intervention_stage,
          i.channels_used, i.status, i.reason, i.outcome, i.detected_at,
          i.intervened_at, i.detection_latency_seconds,
          i.intervention_latency_seconds,
          previous.outcome IS DISTINCT FROM $2 AS changed, {BECAME_SUCCESS}
"""  # noqa: S608 - constants

#: The lead of intervention ``$1``, locked before the intervention: the order of
#: every writer of both (a signal batch locks its leads, then their
#: interventions), or a ``churned`` report and a reply of its lead deadlock.
LOCK_LEAD_SQL: Final = """
SELECT 1 FROM churn_leads
WHERE lead_id = (SELECT lead_id FROM churn_interventions WHERE intervention_id = $1)
FOR UPDATE
"""
#: Churned at the report (``$2``), or when it first was if it still is.
CHURN_LEAD_SQL: Final = """
UPDATE churn_leads SET status = 'churned',
       churned_at = CASE WHEN status = 'churned' THEN churned_at ELSE $2 END
WHERE lead_id = $1
"""

# No flag: an outcome is measured whatever the tenant's rollout (module docstring).
router = APIRouter(
    prefix="/v1/churn",
    tags=["churn-outcomes"],
    dependencies=[Depends(require_scope(CRM_INGEST))],
    responses=auth_responses(CRM_INGEST),
)


@router.post(
    "/interventions/{intervention_id}/outcome",
    response_model=InterventionPublic,
    openapi_extra=request_body_openapi(OutcomeUpdate),
    responses={
        **BODY_ERROR_RESPONSES,
        404: {"description": "No such intervention for this tenant (`unknown_intervention`)."},
    },
)
async def record_outcome(
    intervention_id: CanonicalUuid,
    request: Request,
    principal: IngestPrincipalDep,
    db: DbDep,
    runtime: RuntimeDep,
) -> InterventionPublic:
    """Record what became of an intervention's lead."""
    body = await read_model(
        request, OutcomeUpdate, limit=MAX_OUTCOME_BODY_BYTES, setting="outcome body"
    )
    now = datetime.now(UTC)
    async with db.tenant(principal.tenant_id) as conn:
        if body.outcome == "churned":
            await conn.execute(LOCK_LEAD_SQL, intervention_id)
        row = await conn.fetchrow(RECORD_OUTCOME, intervention_id, body.outcome, now)
        if row is None:
            raise ApiError(
                404, "no such intervention for this tenant", reason="unknown_intervention"
            )
        if body.outcome == "churned":
            await conn.execute(CHURN_LEAD_SQL, row["lead_id"], now)
    record = dict(row)
    # The row was locked, so its status is the one when the outcome was written.
    runtime.metrics.count_outcome(
        row["intervention_stage"],
        body.outcome,
        changed=record.pop("changed") and row["status"] == DELIVERED,
        became_success=record.pop("became_success"),
    )
    return InterventionPublic(**record)
