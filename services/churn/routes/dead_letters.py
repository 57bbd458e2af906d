"""Dead letters, for operators (the ``operator`` scope).

- ``GET /v1/churn/dead-letters?limit=``: sends that exhausted their retries,
  with the last error, newest first.
- ``POST /v1/churn/dead-letters/{outbox_id}/retry``: put one back in the
  queue with a fresh retry budget (same idempotency key). 404
  ``unknown_dead_letter`` for an id that is not one of the caller's tenant's
  dead letters (another tenant's included: row-level security hides it).
  409 ``lead_re_engaged`` when the lead has re-engaged since its
  intervention was decided: the send is cancelled instead (a reply or a
  booked appointment cancels every pending send of the lead; a replay must
  not bring one back). A retry sends: 403 ``feature_disabled`` for a tenant
  outside the ``churn_prevention`` rollout (the list is a read, answered
  whatever the rollout: a tenant the feature was turned off for in an
  incident is the one whose dead letters operators look at).
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query

from services.churn.config import CHURN_FEATURE
from services.churn.delivery import LEAD_RE_ENGAGED, LOCK_LEAD_SQL, RE_ENGAGED_SQL
from services.churn.deps import DbDep
from services.churn.queue import SingleDelivery, defer_unless_queued, pending_backlog
from services.churn.schemas import DeadLetterPublic
from services.common.auth import OperatorPrincipalDep, auth_responses, require_scope
from services.common.errors import ApiError
from services.common.flags import require_feature
from services.common.identifiers import CanonicalUuid
from services.common.scopes import OPERATOR

# NULL: no dead letter with this id (for this tenant); locks the row.
RE_ENGAGED_OF_DEAD_LETTER_SQL = f"""
SELECT {RE_ENGAGED_SQL}
FROM churn_outbox o
JOIN churn_interventions i ON i.intervention_id = o.intervention_id
JOIN churn_leads l ON l.tenant_id = o.tenant_id AND l.lead_id = o.lead_id
WHERE o.outbox_id = $1 AND o.status = 'dead_letter'
FOR UPDATE OF o
"""  # noqa: S608 - constant parts only
# The send, and its intervention once none of its sends is left to retry or deliver.
CANCEL_SQL = """
WITH cancelled AS (
    UPDATE churn_outbox SET status = 'cancelled', reason = $2 WHERE outbox_id = $1
    RETURNING intervention_id)
UPDATE churn_interventions i SET status = 'cancelled', reason = $2
FROM cancelled c
WHERE i.intervention_id = c.intervention_id AND i.status = 'dead_letter'
  AND NOT EXISTS (SELECT 1 FROM churn_outbox o
                  WHERE o.intervention_id = c.intervention_id AND o.outbox_id <> $1
                    AND o.status IN ('pending', 'sending', 'dead_letter'))
"""

# The scope first, for every route (router dependencies run before a route's).
router = APIRouter(
    prefix="/v1/churn",
    tags=["churn-dead-letters"],
    dependencies=[Depends(require_scope(OPERATOR))],
    responses=auth_responses(OPERATOR),
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


@router.post(
    "/dead-letters/{outbox_id}/retry",
    status_code=202,
    dependencies=[require_feature(CHURN_FEATURE)],
)
async def retry_dead_letter(
    outbox_id: CanonicalUuid, principal: OperatorPrincipalDep, db: DbDep
) -> dict[str, str]:
    """Queue a dead-lettered send again, with a fresh retry budget."""
    async with db.tenant(principal.tenant_id) as conn:
        # The lead first (the order of every writer; a re-engaging signal holds it).
        await conn.execute(LOCK_LEAD_SQL, outbox_id)
        re_engaged = await conn.fetchval(RE_ENGAGED_OF_DEAD_LETTER_SQL, outbox_id)
        if re_engaged is None:
            raise ApiError(
                404, "no dead letter with this id for this tenant", reason="unknown_dead_letter"
            )
        if re_engaged:
            await conn.execute(CANCEL_SQL, outbox_id, LEAD_RE_ENGAGED)
        else:
            await _requeue(conn, principal.tenant_id, outbox_id)
    if re_engaged:
        # After the commit: the cancellation is kept.
        raise ApiError(
            409,
            "the lead re-engaged after this intervention was decided; "
            "the send is cancelled, not retried",
            reason=LEAD_RE_ENGAGED,
        )
    return {"status": "queued", "outbox_id": str(outbox_id)}


async def _requeue(conn: Any, tenant_id: str, outbox_id: UUID) -> None:
    """The dead letter (locked) back to ``pending`` with a fresh retry budget, and its job."""
    row = await conn.fetchrow(
        "UPDATE churn_outbox SET status = 'pending', attempts = 0, not_before = now(), "
        "reason = NULL WHERE outbox_id = $1 AND status = 'dead_letter' "
        "RETURNING outbox_id, intervention_id, not_before",
        outbox_id,
    )
    assert row is not None, "the dead letter is locked by RE_ENGAGED_OF_DEAD_LETTER_SQL"
    await conn.execute(
        "UPDATE churn_interventions SET status = 'pending', reason = NULL "
        "WHERE intervention_id = $1 AND status = 'dead_letter'",
        row["intervention_id"],
    )
    # The end of its tenant's queue (see detection.py on fairness). A job may
    # still be waiting for the row (a look-again after a send that outlived
    # its job): it sends the row, pending again, when it runs.
    priority = -(await pending_backlog(conn))
    await defer_unless_queued(
        conn,
        tenant_id=tenant_id,
        job=SingleDelivery(
            outbox_id=row["outbox_id"], priority=priority, not_before=row["not_before"]
        ),
    )
