"""FastAPI dependencies of churn-orchestrator (on top of services.common.deps)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from services.churn.runtime import ChurnRuntime
from services.common.deps import DbDep

__all__ = ["DbDep", "RuntimeDep", "get_runtime"]


async def get_runtime(conn: HTTPConnection) -> ChurnRuntime:
    """The runtime the lifespan started (model, job queue, worker, scheduler)."""
    runtime: ChurnRuntime = conn.app.state.churn
    return runtime


RuntimeDep = Annotated[ChurnRuntime, Depends(get_runtime)]
