"""FastAPI dependencies of coaching-engine (on top of services.common.deps)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from services.coaching.analysis import CoachingEngine
from services.common.claude import ClaudeDep

__all__ = ["ClaudeDep", "EngineDep", "get_engine"]


async def get_engine(conn: HTTPConnection) -> CoachingEngine:
    """The replica's coaching engine (built by the lifespan)."""
    engine: CoachingEngine = conn.app.state.coaching
    return engine


EngineDep = Annotated[CoachingEngine, Depends(get_engine)]
