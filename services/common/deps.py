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

from typing import Annotated

from fastapi import Depends
from prometheus_client import CollectorRegistry
from starlette.requests import HTTPConnection

from services.common.auth import Principal, PrincipalDep, require_principal
from services.common.claude import ClaudeDep, get_claude
from services.common.database import Database
from services.common.redis import Redis
from services.common.settings import CommonSettings
from services.common.storage import Storage

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
]


async def get_settings(conn: HTTPConnection) -> CommonSettings:
    """The settings the app was built with (a service's subclass instance)."""
    settings: CommonSettings = conn.app.state.settings
    return settings


async def get_db(conn: HTTPConnection) -> Database:
    """The app's Postgres pool (application role)."""
    db: Database = conn.app.state.db
    return db


async def get_redis(conn: HTTPConnection) -> Redis:
    """The app's pooled Redis client."""
    client: Redis = conn.app.state.redis
    return client


async def get_storage(conn: HTTPConnection) -> Storage:
    """The app's object storage (S3 client and bucket names); needs ``Need.STORAGE``."""
    storage: Storage = conn.app.state.storage
    return storage


async def get_registry(conn: HTTPConnection) -> CollectorRegistry:
    """The app's Prometheus registry."""
    registry: CollectorRegistry = conn.app.state.registry
    return registry


SettingsDep = Annotated[CommonSettings, Depends(get_settings)]
DbDep = Annotated[Database, Depends(get_db)]
RedisDep = Annotated[Redis, Depends(get_redis)]
RegistryDep = Annotated[CollectorRegistry, Depends(get_registry)]
StorageDep = Annotated[Storage, Depends(get_storage)]
