"""FastAPI dependencies handing out what ``create_app``'s lifespan opened.

Resources live on ``app.state`` (never in module globals), so each app, and
each test, has its own. The parameter type is ``HTTPConnection`` so the same
dependencies work in HTTP and WebSocket routes.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from prometheus_client import CollectorRegistry
from starlette.requests import HTTPConnection

from services.common.auth import Principal, PrincipalDep, require_principal
from services.common.database import Database
from services.common.redis import Redis
from services.common.settings import CommonSettings

__all__ = [
    "DbDep",
    "Principal",
    "PrincipalDep",
    "RedisDep",
    "RegistryDep",
    "SettingsDep",
    "get_db",
    "get_redis",
    "get_registry",
    "get_settings",
    "require_principal",
]


def get_settings(conn: HTTPConnection) -> CommonSettings:
    """The settings the app was built with (a service's subclass instance)."""
    settings: CommonSettings = conn.app.state.settings
    return settings


def get_db(conn: HTTPConnection) -> Database:
    """The app's Postgres pool (application role)."""
    db: Database = conn.app.state.db
    return db


def get_redis(conn: HTTPConnection) -> Redis:
    """The app's pooled Redis client."""
    client: Redis = conn.app.state.redis
    return client


def get_registry(conn: HTTPConnection) -> CollectorRegistry:
    """The app's Prometheus registry."""
    registry: CollectorRegistry = conn.app.state.registry
    return registry


SettingsDep = Annotated[CommonSettings, Depends(get_settings)]
DbDep = Annotated[Database, Depends(get_db)]
RedisDep = Annotated[Redis, Depends(get_redis)]
RegistryDep = Annotated[CollectorRegistry, Depends(get_registry)]
