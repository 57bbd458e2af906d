"""websocket-manager (port 8001): the real-time lead intelligence feed.

``enterprisehub serve realtime`` runs ``create_app()`` under uvicorn.
Routes: ``POST /v1/leads/events`` (CRM webhook), ``WS /v1/feed``, plus the
common ``/health``, ``/health/websocket``, ``/health/detailed`` and ``/metrics``.
"""

from __future__ import annotations

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.common.app import Need
from services.common.app import create_app as create_service_app
from services.common.metrics import new_registry
from services.realtime.config import RealtimeSettings
from services.realtime.health import WEBSOCKET_FEATURE_HEALTH
from services.realtime.metrics import RealtimeMetrics
from services.realtime.routes import events, feed
from services.realtime.runtime import realtime_lifespan
from services.realtime.scoring import Scorer

# The lead model may live in the models bucket, hence storage.
NEEDS = frozenset({Need.POSTGRES, Need.REDIS, Need.STORAGE})


def create_app(
    settings: RealtimeSettings | None = None,
    *,
    scorer: Scorer | None = None,
    registry: CollectorRegistry | None = None,
) -> FastAPI:
    """Build the app; settings default to the environment, the scorer to ML_MODEL_URI."""
    settings = settings if settings is not None else RealtimeSettings.from_env()
    registry = registry if registry is not None else new_registry()
    return create_service_app(
        settings=settings,
        title="EnterpriseHub websocket-manager",
        routers=[events.router, feed.router],
        needs=NEEDS,
        feature_health=WEBSOCKET_FEATURE_HEALTH,
        lifespan=realtime_lifespan(settings, scorer=scorer, metrics=RealtimeMetrics(registry)),
        registry=registry,
        # Each webhook route reads its body with its own, tighter limit.
        max_body_bytes=max(settings.realtime_max_event_bytes, settings.realtime_max_batch_bytes),
        max_body_setting="REALTIME_MAX_BATCH_BYTES",
    )
