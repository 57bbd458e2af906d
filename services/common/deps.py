"""FastAPI dependencies handing out what ``create_app``'s lifespan opened.

``DbDep``, ``RedisDep``, ``StorageDep`` and ``ClaudeDep`` exist when the
service declared the matching ``Need``; ``ClaudeDep`` answers 503
(``claude_not_configured``) when ANTHROPIC_API_KEY is unset.

Resources live on ``app.state`` (never in module globals), so each app, and
each test, has its own. The parameter type is ``HTTPConnection`` so the same
dependencies work in HTTP and WebSocket routes. They are ``async def``
because FastAPI runs a plain ``def`` dependency in its thread pool: a thread
hop per request for one attribute read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar

from fastapi import Depends
from prometheus_client import CollectorRegistry
from starlette.requests import HTTPConnection

from services.common.auth import Principal, PrincipalDep, require_principal
from services.common.claude import ClaudeDep, get_claude
from services.common.database import Database
from services.common.redis import Redis
from services.common.settings import CommonSettings
from services.common.storage import Storage

T = TypeVar("T")

__all__ = [
    "ClaudeDep",
    "DbDep",
    "Principal",
    "PrincipalDep",
    "RedisDep",
    "RegistryDep",
    "SettingsDep",
    "StorageDep",
    "get_claude",
    "get_db",
    "get_redis",
    "get_registry",
    "get_settings",
    "get_storage",
    "require_principal",
    "state_getter",
]


def state_getter(name: str, kind: type[T], doc: str) -> Callable[[HTTPConnection], Awaitable[T]]:
    """An async dependency returning ``app.state.<name>`` (a service's own objects too)."""

    async def get(conn: HTTPConnection) -> T:
        value: T = getattr(conn.app.state, name)
        return value

    get.__name__ = get.__qualname__ = f"get_{name}"
    get.__doc__ = doc
    return get


get_settings = state_getter(
    "settings", CommonSettings, "The settings the app was built with (a service's subclass)."
)
get_db = state_getter("db", Database, "The app's Postgres pool (application role).")
get_redis = state_getter("redis", Redis, "The app's pooled Redis client.")
get_storage = state_getter(
    "storage", Storage, "The app's object storage (S3 client, bucket names); Need.STORAGE."
)
get_registry = state_getter("registry", CollectorRegistry, "The app's Prometheus registry.")

SettingsDep = Annotated[CommonSettings, Depends(get_settings)]
DbDep = Annotated[Database, Depends(get_db)]
RedisDep = Annotated[Redis, Depends(get_redis)]
RegistryDep = Annotated[CollectorRegistry, Depends(get_registry)]
StorageDep = Annotated[Storage, Depends(get_storage)]
