"""``create_app``: the one way a feature service builds its FastAPI application.

It wires, in this order: the lifespan (Postgres pool and Redis client opened
on start and closed on stop, stored on ``app.state`` and handed out by
``services.common.deps``), the service's own lifespan nested inside it (so
the service's background tasks can use both), JSON error handlers, HTTP
metrics and ``/metrics``, CORS from CORS_ORIGINS, the health routes, and the
service's routers.

``app.state`` holds: ``settings``, ``db``, ``redis``, ``flags`` (the feature
flag cache, see ``services.common.flags``), ``flag_client``, ``registry``,
``token_verifier``, ``service``, ``version``, ``started_monotonic``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CollectorRegistry

from services.common.auth import TokenVerifier
from services.common.database import Database, DatabaseUnavailable
from services.common.errors import install_error_handlers
from services.common.faults import FaultInjectionMiddleware
from services.common.flags import serve_flags
from services.common.health import FeatureHealth, health_router, package_version
from services.common.metrics import (
    HttpMetrics,
    HttpMetricsMiddleware,
    build_info,
    metrics_route,
    new_registry,
)
from services.common.redis import (
    RedisUnavailable,
    close_redis,
    create_redis_from_settings,
    ping_redis,
)
from services.common.settings import CommonSettings

log = logging.getLogger(__name__)

ServiceLifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]
"""A service's own start/stop work, run after Postgres and Redis are set up."""


async def _report_dependencies(app: FastAPI) -> None:
    # Start-up does not fail when a dependency is down: the pod stays alive,
    # /health/detailed answers 503 and traffic stays away until it recovers.
    try:
        await app.state.db.ping()
    except DatabaseUnavailable as exc:
        log.warning("starting without postgres: %s", exc.reason)
    try:
        await ping_redis(app.state.redis)
    except RedisUnavailable as exc:
        log.warning("starting without redis: %s", exc.reason)


def _lifespan(
    settings: CommonSettings, service_lifespan: ServiceLifespan | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.db = await Database.connect(settings)
        app.state.redis = create_redis_from_settings(settings)
        try:
            await _report_dependencies(app)
            async with serve_flags(app):
                if service_lifespan is None:
                    yield
                else:
                    async with service_lifespan(app):
                        yield
        finally:
            await close_redis(app.state.redis)
            await app.state.db.close()

    return lifespan


def create_app(
    *,
    settings: CommonSettings,
    title: str,
    service: str,
    routers: Sequence[APIRouter] = (),
    feature_health: FeatureHealth | None = None,
    lifespan: ServiceLifespan | None = None,
    registry: CollectorRegistry | None = None,
    version: str | None = None,
) -> FastAPI:
    """Build a service's app.

    ``service`` is the short name (``realtime``, ``ml``, ...) used in metrics
    and health bodies; ``registry`` defaults to a fresh one (tests pass
    theirs); ``lifespan`` is the service's own async context manager factory.
    """
    production = settings.environment == "production"
    app = FastAPI(
        title=title,
        version=version or package_version(),
        lifespan=_lifespan(settings, lifespan),
        # The schema is for development and contract tests, not the internet.
        docs_url=None if production else "/docs",
        redoc_url=None,
        openapi_url=None if production else "/openapi.json",
        # The services report through Prometheus (/metrics) and their logs.
        # FastAPI's own OpenTelemetry bridge would otherwise look up three
        # global providers on every request (it showed in profiles of the
        # webhook) for nothing, since no OpenTelemetry pipeline is deployed.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    registry = registry if registry is not None else new_registry()
    app.state.settings = settings
    app.state.registry = registry
    app.state.token_verifier = TokenVerifier.from_settings(settings)
    app.state.service = service
    app.state.version = app.version
    app.state.started_monotonic = time.monotonic()

    install_error_handlers(app)
    build_info(registry, service=service, version=app.version)
    if settings.fault_injection_file is not None:
        # Inside the metrics middleware, so injected latency and errors are measured.
        app.add_middleware(FaultInjectionMiddleware, path=settings.fault_injection_file)
    app.add_middleware(HttpMetricsMiddleware, metrics=HttpMetrics(registry))
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_exact_origins,
            allow_origin_regex=settings.cors_origin_regex,
            # Bearer tokens travel in a header, never in cookies.
            allow_credentials=False,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    app.router.routes.append(metrics_route(registry))
    app.include_router(health_router(feature_health))
    for router in routers:
        app.include_router(router)
    return app
