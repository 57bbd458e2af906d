"""websocket-manager (port 8001): the real-time lead intelligence feed.

``enterprisehub serve realtime`` runs ``create_app()`` under uvicorn.
Routes: ``POST /v1/leads/events`` (CRM webhook), ``WS /v1/feed``, plus the
common ``/health``, ``/health/websocket``, ``/health/detailed`` and ``/metrics``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.common.app import create_app as create_service_app
from services.common.health import FeatureHealth
from services.common.metrics import new_registry
from services.realtime.config import RealtimeSettings
from services.realtime.metrics import RealtimeMetrics
from services.realtime.routes import events, feed
from services.realtime.runtime import RealtimeRuntime, realtime_lifespan
from services.realtime.scoring import Scorer


async def websocket_health(app: FastAPI) -> Mapping[str, Any]:
    """The feature check behind ``/health/websocket`` (live, measured values)."""
    runtime: RealtimeRuntime = app.state.realtime
    return runtime.health()


def create_app(
    settings: RealtimeSettings | None = None,
    *,
    scorer: Scorer | None = None,
    registry: CollectorRegistry | None = None,
) -> FastAPI:
    """Build the app; settings default to the environment, the scorer to ML_MODEL_URI."""
    settings = settings if settings is not None else RealtimeSettings.from_env()
    registry = registry if registry is not None else new_registry()
    metrics = RealtimeMetrics(registry)
    return create_service_app(
        settings=settings,
        title="EnterpriseHub websocket-manager",
        service="realtime",
        routers=[events.router, feed.router],
        feature_health=FeatureHealth("/health/websocket", websocket_health),
        lifespan=realtime_lifespan(settings, scorer=scorer, metrics=metrics),
        registry=registry,
    )
