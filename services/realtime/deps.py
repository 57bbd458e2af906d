"""Dependencies of the realtime routes (``Annotated`` aliases, as in every service)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from services.common.deps import DbDep, PrincipalDep, RedisDep, RegistryDep, state_getter
from services.realtime.hub import FeedHub
from services.realtime.metrics import RealtimeMetrics
from services.realtime.runtime import RealtimeRuntime

__all__ = [
    "DbDep",
    "HubDep",
    "PrincipalDep",
    "RealtimeMetricsDep",
    "RedisDep",
    "RegistryDep",
    "RuntimeDep",
    "get_runtime",
]


# The dependencies are ``async def`` on purpose: FastAPI runs plain ``def``
# dependencies in a thread pool, a thread hop per request on the hot path.

get_runtime = state_getter(
    "realtime", RealtimeRuntime, "The process's `RealtimeRuntime` (built in the lifespan)."
)


def _runtime(conn: HTTPConnection) -> RealtimeRuntime:
    runtime: RealtimeRuntime = conn.app.state.realtime
    return runtime


async def get_hub(conn: HTTPConnection) -> FeedHub:
    """The feed hub."""
    return _runtime(conn).hub


async def get_metrics(conn: HTTPConnection) -> RealtimeMetrics:
    """The service's metrics."""
    return _runtime(conn).metrics


RuntimeDep = Annotated[RealtimeRuntime, Depends(get_runtime)]
HubDep = Annotated[FeedHub, Depends(get_hub)]
RealtimeMetricsDep = Annotated[RealtimeMetrics, Depends(get_metrics)]
