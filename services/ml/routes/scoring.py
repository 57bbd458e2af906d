"""``POST /v1/leads/score`` and ``POST /v1/leads/score/batch``.

The tenant comes from the bearer token (never from the body); it keys the
score cache so one tenant never receives another's cached entry.
"""

from __future__ import annotations

from fastapi import APIRouter

from services.common.auth import ScoringPrincipalDep
from services.ml.deps import InferenceDep
from services.ml.schemas import (
    LeadScoreBatchCreate,
    LeadScoreBatchPublic,
    LeadScoreCreate,
    LeadScoreItemPublic,
    LeadScorePublic,
)

router = APIRouter(prefix="/v1/leads", tags=["lead-scoring"])


@router.post("/score")
async def score_lead(
    body: LeadScoreCreate, principal: ScoringPrincipalDep, inference: InferenceDep
) -> LeadScorePublic:
    """Score one lead: the probability that it converts."""
    score = await inference.score_one(body.features, tenant_id=principal.tenant_id)
    return LeadScorePublic(
        lead_id=body.lead_id, score=score, model_version=inference.scorer.version
    )


@router.post("/score/batch")
async def score_leads(
    body: LeadScoreBatchCreate, principal: ScoringPrincipalDep, inference: InferenceDep
) -> LeadScoreBatchPublic:
    """Score up to MAX_BATCH_LEADS leads in one call; results keep the request order."""
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
