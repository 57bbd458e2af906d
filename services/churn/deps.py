"""FastAPI dependencies of churn-orchestrator (on top of services.common.deps)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends
from starlette.requests import HTTPConnection

from services.churn.config import CHURN_FEATURE
from services.churn.runtime import ChurnRuntime
from services.common.auth import require_scope
from services.common.deps import DbDep
from services.common.flags import require_feature

__all__ = ["DbDep", "RuntimeDep", "get_runtime", "route_guard"]


async def get_runtime(conn: HTTPConnection) -> ChurnRuntime:
    """The runtime the lifespan started (model, job queue, worker, scheduler)."""
    runtime: ChurnRuntime = conn.app.state.churn
    return runtime


RuntimeDep = Annotated[ChurnRuntime, Depends(get_runtime)]


def route_guard(scope: str) -> list[Any]:
    """A churn router's ``dependencies``: a token with ``scope``, then the rollout.

    In this order, and before any handler reads a body: 401 for a missing or
    invalid token, 403 ``insufficient_scope`` for a token without ``scope``
    (a feed reader's token learns nothing about the churn rollout), then 403
    ``feature_disabled`` for a tenant outside ``churn_prevention``. Handlers
    take their principal from the scope's dependency (``IngestPrincipalDep``,
    ``OperatorPrincipalDep``): checking the token again is a lookup in the
    verifier's cache of verified tokens.
    """
    return [Depends(require_scope(scope)), require_feature(CHURN_FEATURE)]
