"""A small app built with ``create_app`` to exercise the shared core end to end.

Its routes write and read ``realtime_intelligence_events`` through
``Database.tenant`` with queries that deliberately lack a tenant ``WHERE``:
only row-level security keeps tenants apart.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel, Field

from services.common.app import create_app
from services.common.deps import DbDep, PrincipalDep, RedisDep
from services.common.health import FeatureHealth
from services.common.metrics import new_registry
from services.common.redis import redis_errors, tenant_key
from services.common.settings import CommonSettings


class EventCreate(BaseModel):
    lead_id: str = Field(min_length=1, max_length=255)
    event_type: str = Field(min_length=1, max_length=100)
    intelligence_data: dict[str, Any]


router = APIRouter(prefix="/v1/test-events", tags=["test"])


@router.post("", status_code=201)
async def create_event(body: EventCreate, principal: PrincipalDep, db: DbDep) -> dict[str, str]:
    async with db.tenant(principal.tenant_id) as conn:
        event_id = await conn.fetchval(
            "INSERT INTO realtime_intelligence_events (lead_id, event_type, intelligence_data) "
            "VALUES ($1, $2, $3) RETURNING event_id::text",
            body.lead_id,
            body.event_type,
            body.intelligence_data,
        )
    return {"event_id": event_id}


@router.get("")
async def list_events(principal: PrincipalDep, db: DbDep) -> list[dict[str, Any]]:
    async with db.tenant(principal.tenant_id) as conn:
        rows = await conn.fetch(
            "SELECT tenant_id, lead_id, intelligence_data FROM realtime_intelligence_events"
        )
    return [dict(row) for row in rows]


@router.post("/{lead_id}/seen")
async def mark_seen(lead_id: str, principal: PrincipalDep, redis: RedisDep) -> dict[str, int]:
    with redis_errors():
        count = await redis.incr(tenant_key(principal.tenant_id, "seen", lead_id))
    return {"seen": count}


class FeatureProbe:
    """A feature check whose answer the test controls."""

    def __init__(self) -> None:
        self.status = "healthy"
        self.error: Exception | None = None
        self.calls = 0

    async def __call__(self, app: FastAPI) -> dict[str, Any]:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return {"status": self.status, "checks_served": self.calls}


@pytest.fixture
def feature_probe() -> FeatureProbe:
    return FeatureProbe()


@pytest.fixture
def build_app(settings: CommonSettings, feature_probe: FeatureProbe) -> Callable[..., FastAPI]:
    """``build_app(**settings_overrides)`` -> a fresh app with its own registry."""

    def build(**overrides: Any) -> FastAPI:
        app_settings = settings.model_copy(update=overrides) if overrides else settings
        return create_app(
            settings=app_settings,
            title="common-core test app",
            routers=[router],
            feature_health=FeatureHealth("/health/websocket", feature_probe),
            registry=new_registry(),
        )

    return build


# The Anthropic Messages API stand-in for the Claude client tests.
from tests.standins import _anthropic_server, anthropic_api  # noqa: E402, F401
