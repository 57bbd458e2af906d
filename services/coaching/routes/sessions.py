"""``/v1/coaching/sessions``: analyse a transcript, read stored sessions.

The tenant comes from the bearer token; the body is read (and bounded by its
schema's limits) only after authentication, the scope and the rollout.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request

from services.coaching.deps import ClaudeDep, EngineDep
from services.coaching.schemas import (
    CoachingSessionCreate,
    CoachingSessionList,
    CoachingSessionPublic,
)
from services.common.auth import CoachingPrincipalDep, auth_responses
from services.common.body import BODY_ERROR_RESPONSES, read_model, request_body_openapi
from services.common.deps import SettingsDep
from services.common.flags import require_scope_and_feature
from services.common.identifiers import AgentId, CanonicalUuid
from services.common.scopes import COACHING_ANALYZE

# A token without coaching:analyze gets 403 insufficient_scope (an agent's
# feed token reads no colleague's coaching and spends no Claude money), then a
# tenant outside the ai_coaching rollout 403 feature_disabled, before any body
# is read or Claude is called.
router = APIRouter(
    prefix="/v1/coaching",
    tags=["coaching"],
    dependencies=require_scope_and_feature(COACHING_ANALYZE, "ai_coaching"),
    responses=auth_responses(COACHING_ANALYZE, feature="ai_coaching"),
)


@router.post(
    "/sessions",
    openapi_extra=request_body_openapi(CoachingSessionCreate),
    responses=BODY_ERROR_RESPONSES,
)
async def create_session(
    request: Request,
    principal: CoachingPrincipalDep,
    claude: ClaudeDep,
    engine: EngineDep,
    settings: SettingsDep,
) -> CoachingSessionPublic:
    """Analyse a conversation: local metrics plus Claude's coaching citing message ids."""
    # Read here rather than as a body parameter: FastAPI reads and validates
    # those before any dependency, so a token without the scope, or a tenant
    # outside the rollout, had its body parsed and got its 422.
    body = await read_model(
        request,
        CoachingSessionCreate,
        limit=settings.max_request_body_bytes,
        setting="MAX_REQUEST_BODY_BYTES",
    )
    row, cached = await engine.analyse(claude=claude, tenant_id=principal.tenant_id, body=body)
    return CoachingSessionPublic.from_row(row, cached=cached)


@router.get("/sessions")
async def list_sessions(
    principal: CoachingPrincipalDep,
    engine: EngineDep,
    agent_id: Annotated[AgentId, Query()],
) -> CoachingSessionList:
    """An agent's sessions, newest first (at most 50)."""
    rows = await engine.list(principal.tenant_id, agent_id)
    return CoachingSessionList(sessions=[CoachingSessionPublic.from_row(r) for r in rows])


@router.get("/sessions/{session_id}")
async def get_session(
    session_id: CanonicalUuid, principal: CoachingPrincipalDep, engine: EngineDep
) -> CoachingSessionPublic:
    """One stored session of the caller's tenant."""
    row = await engine.get(principal.tenant_id, session_id)
    if row is None:
        raise HTTPException(404, "no such coaching session")
    return CoachingSessionPublic.from_row(row)
