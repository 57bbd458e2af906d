"""Dead letters, for operators (the ``operator`` scope).

- ``GET /v1/churn/dead-letters?limit=``: sends that exhausted their retries,
  with the last error, newest first.
- ``POST /v1/churn/dead-letters/{outbox_id}/retry``: put one back in the
  queue with a fresh retry budget (same idempotency key). 404
  ``unknown_dead_letter`` for an id that is not one of the caller's tenant's
  dead letters (another tenant's included: row-level security hides it).
"""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query

from services.churn.config import CHURN_FEATURE
from services.churn.deps import DbDep
from services.churn.queue import defer_deliveries, pending_backlog
from services.churn.schemas import DeadLetterPublic
from services.common.auth import OperatorPrincipalDep
from services.common.errors import ApiError
from services.common.flags import require_scope_and_feature
from services.common.scopes import OPERATOR

router = APIRouter(
    prefix="/v1/churn",
    tags=["churn-dead-letters"],
    dependencies=require_scope_and_feature(OPERATOR, CHURN_FEATURE),
)


@router.get("/dead-letters", response_model=list[DeadLetterPublic])
async def list_dead_letters(
    principal: OperatorPrincipalDep, db: DbDep, limit: Annotated[int, Query(ge=1, le=500)] = 100
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
async def retry_dead_letter(
    outbox_id: UUID, principal: OperatorPrincipalDep, db: DbDep
) -> dict[str, str]:
    """Queue a dead-lettered send again, with a fresh retry budget."""
    async with db.tenant(principal.tenant_id) as conn:
        row = await conn.fetchrow(
            "UPDATE churn_outbox SET status = 'pending', attempts = 0, not_before = now(), "
            "reason = NULL WHERE outbox_id = $1 AND status = 'dead_letter' "
            "RETURNING outbox_id, intervention_id, not_before",
            outbox_id,
        )
        if row is None:
            raise ApiError(
                404, "no dead letter with this id for this tenant", reason="unknown_dead_letter"
            )
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
