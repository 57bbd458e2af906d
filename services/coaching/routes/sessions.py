"""``/v1/coaching/sessions``: analyse a transcript, read stored sessions.

The tenant comes from the bearer token; the body is read (and bounded by its
schema's limits) only after authentication.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from services.coaching.deps import ClaudeDep, EngineDep
from services.coaching.schemas import (
    ID_PATTERN,
    CoachingSessionCreate,
    CoachingSessionList,
    CoachingSessionPublic,
)
from services.common.auth import CoachingPrincipalDep
from services.common.flags import require_scope_and_feature
from services.common.scopes import COACHING_ANALYZE

# A token without coaching:analyze gets 403 insufficient_scope (an agent's
# feed token reads no colleague's coaching and spends no Claude money), then a
# tenant outside the ai_coaching rollout 403 feature_disabled, before any body
# is read or Claude is called.
router = APIRouter(
    prefix="/v1/coaching",
    tags=["coaching"],
    dependencies=require_scope_and_feature(COACHING_ANALYZE, "ai_coaching"),
)


@router.post("/sessions")
async def create_session(
    principal: CoachingPrincipalDep,
    claude: ClaudeDep,
    engine: EngineDep,
    body: CoachingSessionCreate,
) -> CoachingSessionPublic:
    """Analyse a conversation: local metrics plus Claude's coaching citing message ids."""
    row, cached = await engine.analyse(claude=claude, tenant_id=principal.tenant_id, body=body)
    return CoachingSessionPublic.from_row(row, cached=cached)


@router.get("/sessions")
async def list_sessions(
    principal: CoachingPrincipalDep,
    engine: EngineDep,
    agent_id: Annotated[str, Query(pattern=ID_PATTERN, max_length=128)],
) -> CoachingSessionList:
    """An agent's sessions, newest first (at most 50)."""
    rows = await engine.list(principal.tenant_id, agent_id)
    return CoachingSessionList(sessions=[CoachingSessionPublic.from_row(r) for r in rows])


@router.get("/sessions/{session_id}")
async def get_session(
    session_id: uuid.UUID, principal: CoachingPrincipalDep, engine: EngineDep
) -> CoachingSessionPublic:
    """One stored session of the caller's tenant."""
    row = await engine.get(principal.tenant_id, session_id)
    if row is None:
        raise HTTPException(404, "no such coaching session")
    return CoachingSessionPublic.from_row(row)
