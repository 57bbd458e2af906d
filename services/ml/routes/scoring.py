"""``POST /v1/leads/score`` and ``POST /v1/leads/score/batch``.

The tenant comes from the bearer token (never from the body); it keys the
score cache so one tenant never receives another's cached entry. The body is
read after the token's ``leads:score`` scope is checked, and bounded per route
(`MAX_SCORE_BODY_BYTES`, `MAX_SCORE_BATCH_BODY_BYTES`).
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from services.common.auth import ScoringPrincipalDep, auth_responses
from services.common.body import BODY_ERROR_RESPONSES, read_model, request_body_openapi
from services.common.scopes import LEADS_SCORE
from services.ml.deps import InferenceDep
from services.ml.schemas import (
    LeadScoreBatchCreate,
    LeadScoreBatchPublic,
    LeadScoreCreate,
    LeadScoreItemPublic,
    LeadScorePublic,
)

#: A lead is about 400 bytes of JSON (740 pretty-printed with a 255-character id).
MAX_SCORE_BODY_BYTES = 16_384
#: MAX_BATCH_LEADS leads, pretty-printed with the longest ids, are about 750 KB.
#: ml-services' MAX_REQUEST_BODY_BYTES is 20 MiB, for photo uploads: taken as a
#: body parameter, such a body of small JSON values was parsed whole before the
#: scope was checked (any valid token), holding about 0.5 GB and the event loop
#: for seconds.
MAX_SCORE_BATCH_BODY_BYTES = 2 * 1024 * 1024

router = APIRouter(prefix="/v1/leads", tags=["lead-scoring"], responses=auth_responses(LEADS_SCORE))


@router.post(
    "/score", openapi_extra=request_body_openapi(LeadScoreCreate), responses=BODY_ERROR_RESPONSES
)
async def score_lead(
    request: Request, principal: ScoringPrincipalDep, inference: InferenceDep
) -> LeadScorePublic:
    """Score one lead: the probability that it converts."""
    body = await read_model(
        request, LeadScoreCreate, limit=MAX_SCORE_BODY_BYTES, setting="one lead's body"
    )
    score = await inference.score_one(body.features, tenant_id=principal.tenant_id)
    return LeadScorePublic(
        lead_id=body.lead_id, score=score, model_version=inference.scorer.version
    )


@router.post(
    "/score/batch",
    openapi_extra=request_body_openapi(LeadScoreBatchCreate),
    responses=BODY_ERROR_RESPONSES,
)
async def score_leads(
    request: Request, principal: ScoringPrincipalDep, inference: InferenceDep
) -> LeadScoreBatchPublic:
    """Score up to MAX_BATCH_LEADS leads in one call; results keep the request order."""
    body = await read_model(
        request,
        LeadScoreBatchCreate,
        limit=MAX_SCORE_BATCH_BODY_BYTES,
        setting="a batch's body",
    )
    scores = await inference.score_many(
        [lead.features for lead in body.leads], tenant_id=principal.tenant_id
    )
    return LeadScoreBatchPublic(
        model_version=inference.scorer.version,
        scores=[
            LeadScoreItemPublic(lead_id=lead.lead_id, score=score)
            for lead, score in zip(body.leads, scores, strict=True)
        ],
    )
