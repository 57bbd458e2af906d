"""``create_app``: the one way a feature service builds its FastAPI application.

A service's ``main.py`` is a short call::

    create_app(settings=settings, title="...", routers=[scoring.router],
               needs=frozenset({Need.STORAGE}), feature_health=ML_FEATURE_HEALTH,
               lifespan=ml_lifespan)

It wires, in this order: the lifespan (``services.common.lifespan``: what the
service ``needs`` of Postgres, Redis, object storage and Claude, opened on
start and closed on stop, stored on ``app.state`` and handed out by
``services.common.deps``), the service's own lifespan nested inside it (its
domain objects, which can use all of those), JSON error handlers, HEAD answered
as GET without the body (``services.common.head``), the edge
guard (no body is read before the token verifies, none beyond the size cap:
``services.common.body``), HTTP metrics and ``/metrics``, CORS from
CORS_ORIGINS, the health routes, and the service's routers.

``app.state`` holds: ``settings``, ``needs``, ``registry``, ``token_verifier``,
``service``, ``version``, ``started_monotonic``, and per need ``db``,
``redis``, ``storage``, ``claude`` (with Redis also ``flags`` and
``flag_client``: see ``services.common.flags``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CollectorRegistry

from services.common.auth import TokenVerifier
from services.common.body import BearerVerifier, EdgeGuard
from services.common.errors import install_error_handlers
from services.common.faults import FaultInjectionMiddleware
from services.common.head import HeadAsGet
from services.common.health import FeatureHealth, health_router
from services.common.lifespan import DEFAULT_NEEDS, Need, ServiceLifespan, build_lifespan
from services.common.metrics import (
    HttpMetrics,
    HttpMetricsMiddleware,
    build_info,
    metrics_route,
    new_registry,
)
from services.common.revocation_store import register_revocation_metrics
from services.common.settings import CommonSettings
from services.common.version import package_version

__all__ = ["DEFAULT_NEEDS", "Need", "ServiceLifespan", "create_app"]


def create_app(
    *,
    settings: CommonSettings,
    title: str,
    routers: Sequence[APIRouter] = (),
    feature_health: FeatureHealth | None = None,
    lifespan: ServiceLifespan | None = None,
    registry: CollectorRegistry | None = None,
    version: str | None = None,
    needs: frozenset[Need] = DEFAULT_NEEDS,
    max_body_bytes: int | None = None,
    max_body_setting: str | None = None,
    edge_verifier: BearerVerifier | None = None,
) -> FastAPI:
    """Build a service's app.

    The settings class names the service (``service_name``: ``realtime``,
    ``ml``, ...) for the metrics and health bodies; ``registry`` defaults to a fresh one (tests pass
    theirs); ``lifespan`` is the service's own async context manager factory,
    entered once everything in ``needs`` is open (default: Postgres and
    Redis). ``max_body_bytes`` caps every request body (default
    MAX_REQUEST_BODY_BYTES), ``max_body_setting`` names the variable behind it
    in the 413 answer; a route may read its own body with a tighter limit
    (``services.common.body.read_body``). ``edge_verifier`` replaces the JWT
    check of the edge guard for a service whose callers hold another credential
    (rollback-handler: Alertmanager's static bearer token).
    """
    needs = frozenset(needs)
    service = settings.service_name
    if feature_health is not None and (
        missing := feature_health.requires - {str(need) for need in needs}
    ):
        raise ValueError(
            f"{service}: feature health requires {sorted(missing)} but the service does not "
            f"declare them in needs={sorted(needs)}"
        )
    production = settings.environment == "production"
    app = FastAPI(
        title=title,
        version=version or package_version(),
        lifespan=build_lifespan(settings, needs, lifespan),
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
    app.state.needs = needs
    app.state.registry = registry
    app.state.token_verifier = TokenVerifier.from_settings(settings)
    register_revocation_metrics(registry, app.state.token_verifier.revocations)
    app.state.service = service
    app.state.version = app.version
    app.state.started_monotonic = time.monotonic()

    install_error_handlers(app)
    build_info(registry, service=service, version=app.version)
    # Innermost: the guard and the metrics see the HEAD, the router a GET.
    app.add_middleware(HeadAsGet)
    # Inside the metrics middleware, so its 401s and 413s are counted too.
    if max_body_bytes is None:
        max_body_bytes, max_body_setting = settings.max_request_body_bytes, "MAX_REQUEST_BODY_BYTES"
    app.add_middleware(
        EdgeGuard,
        verifier=edge_verifier or app.state.token_verifier,
        max_body_bytes=max_body_bytes,
        setting=max_body_setting,
    )
    if settings.fault_injection_file is not None:
        # Inside the metrics middleware, so injected latency and errors are measured.
        app.add_middleware(FaultInjectionMiddleware, path=settings.fault_injection_file)
    app.add_middleware(
        HttpMetricsMiddleware, metrics=HttpMetrics(registry), routes=app.router.routes
    )
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
