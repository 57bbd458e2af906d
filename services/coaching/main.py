"""coaching-engine (port 8003): AI coaching of agents from conversation transcripts.

``create_app()`` builds the app from the environment; ``enterprisehub serve
coaching`` runs it. Without ANTHROPIC_API_KEY it starts, its analysis route
answers 503 saying how to enable it and /health/coaching says so.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry

from services.coaching.analysis import CoachingEngine, TranscriptTooLong
from services.coaching.config import CoachingSettings
from services.coaching.health import COACHING_FEATURE_HEALTH
from services.coaching.routes import sessions
from services.common.app import Need, ServiceLifespan
from services.common.app import create_app as create_common_app
from services.common.latency import LatencyWindow


def _lifespan(settings: CoachingSettings) -> ServiceLifespan:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.coaching = CoachingEngine(
            db=app.state.db,
            max_concurrent=settings.coaching_max_concurrent_analyses,
            max_concurrent_per_tenant=settings.coaching_max_concurrent_analyses_per_tenant,
            session_timeout=settings.coaching_session_timeout,
            max_input_tokens=settings.coaching_max_input_tokens,
            max_output_tokens=settings.coaching_max_output_tokens,
            latency=LatencyWindow(max_samples=settings.coaching_latency_window),
        )
        yield

    return lifespan


async def _too_long(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TranscriptTooLong)
    return JSONResponse({"detail": str(exc), "reason": exc.reason}, status_code=422)


def create_app(
    settings: CoachingSettings | None = None, *, registry: CollectorRegistry | None = None
) -> FastAPI:
    """Build coaching-engine; settings default to the environment."""
    settings = settings if settings is not None else CoachingSettings.from_env()
    app = create_common_app(
        settings=settings,
        title="EnterpriseHub coaching-engine",
        routers=[sessions.router],
        feature_health=COACHING_FEATURE_HEALTH,
        # Redis runs the ai_coaching flag cache; an outage keeps the last known
        # flags, which is why the health check requires Postgres only.
        needs=frozenset({Need.POSTGRES, Need.REDIS, Need.CLAUDE}),
        lifespan=_lifespan(settings),
        registry=registry,
    )
    app.add_exception_handler(TranscriptTooLong, _too_long)
    return app
