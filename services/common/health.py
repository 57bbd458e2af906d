"""Health endpoints with live, measured values.

- ``GET /health``: liveness. Status, service, version and uptime in seconds;
  touches no dependency, so a Postgres outage never restarts the pods.
- ``GET /health/detailed``: readiness. Measures the Postgres and Redis round
  trips of the stores the service declared now, runs the service's feature
  check, and answers 503 when a store the feature requires
  (``FeatureHealth.requires``) is down or the feature reports ``unhealthy``
  (200 with ``degraded`` when the feature is slower than its target but
  working).
- The feature's own path (``/health/websocket``, ``/health/ml``,
  ``/health/coaching``, ``/health/churn``, the seed's per-service health
  check): the service's ``FeatureHealth`` values at the top level plus the
  same dependency measurements, with the same status rules, so it works as a
  readiness probe too.

Statuses are ``healthy``, ``degraded`` and ``unhealthy``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from services.common.database import Database, DatabaseUnavailable
from services.common.redis import Redis, RedisUnavailable, ping_redis

log = logging.getLogger(__name__)

Status = Literal["healthy", "degraded", "unhealthy"]
FeatureCheck = Callable[[FastAPI], Awaitable[Mapping[str, Any]]]
FEATURE_HEALTH_PATHS = (
    "/health/websocket",
    "/health/ml",
    "/health/coaching",
    "/health/churn",
    "/health/rollback",
)
PING_TIMEOUT_SECONDS = 2.0
#: The stores every service connects to; health measures each of them.
DEPENDENCIES: tuple[str, ...] = ("postgres", "redis")


@dataclass(frozen=True, slots=True)
class FeatureHealth:
    """A service's feature check served at ``path``.

    ``check(app)`` returns live values and a ``status`` key (``healthy``,
    ``degraded`` or ``unhealthy``); a missing status counts as ``healthy``.
    ``requires`` names the stores the feature cannot serve without: Postgres
    and Redis are measured and reported either way, but only a required one
    being down makes the service unhealthy (503, out of the Service). Lead
    scoring needs neither, so a Redis outage must not take ml-services' pods
    out of rotation.
    """

    path: str
    check: FeatureCheck
    requires: frozenset[str] = frozenset(DEPENDENCIES)

    def __post_init__(self) -> None:
        if self.path not in FEATURE_HEALTH_PATHS:
            raise ValueError(f"feature health path must be one of {FEATURE_HEALTH_PATHS}")
        if unknown := self.requires - set(DEPENDENCIES):
            raise ValueError(f"unknown dependencies {sorted(unknown)}; known: {DEPENDENCIES}")


def _uptime(app: FastAPI) -> float:
    return round(time.monotonic() - app.state.started_monotonic, 3)


async def _postgres(db: Database) -> dict[str, Any]:
    try:
        latency = await db.ping(max_wait=PING_TIMEOUT_SECONDS)
    except DatabaseUnavailable as exc:
        return {"status": "down", "reason": exc.reason}
    return {"status": "up", "latency_seconds": latency}


async def _redis(client: Redis) -> dict[str, Any]:
    try:
        latency = await asyncio.wait_for(ping_redis(client), PING_TIMEOUT_SECONDS)
    except RedisUnavailable as exc:
        return {"status": "down", "reason": exc.reason}
    except TimeoutError:
        return {"status": "down", "reason": "redis unavailable (ping timed out)"}
    return {"status": "up", "latency_seconds": latency}


async def run_feature_check(feature: FeatureHealth, app: FastAPI) -> dict[str, Any]:
    """Run the check; an exception becomes ``unhealthy`` with its type as reason."""
    try:
        report = dict(await feature.check(app))
    except Exception as exc:
        log.exception("feature health check %s failed", feature.path)
        return {"status": "unhealthy", "reason": f"check failed ({type(exc).__name__})"}
    report.setdefault("status", "healthy")
    return report


def _overall(
    dependencies: Mapping[str, Mapping[str, Any]],
    feature: Mapping[str, Any],
    required: frozenset[str],
) -> Status:
    if any(dependencies.get(name, {}).get("status") != "up" for name in required):
        return "unhealthy"
    status = feature.get("status", "healthy")
    if status in ("degraded", "unhealthy"):
        return "degraded" if status == "degraded" else "unhealthy"
    return "healthy"


async def evaluate(
    app: FastAPI, feature: FeatureHealth | None
) -> tuple[Status, dict[str, dict[str, Any]], dict[str, Any]]:
    """Measure the stores the app opened and run the feature check concurrently.

    Only the stores the service declared (``app.state.needs``) are measured:
    a service without Postgres reports no Postgres, rather than a failure.
    """
    needs = {str(need) for need in getattr(app.state, "needs", DEPENDENCIES)}
    probes: dict[str, Awaitable[dict[str, Any]]] = {}
    if "postgres" in needs:
        probes["postgres"] = _postgres(app.state.db)
    if "redis" in needs:
        probes["redis"] = _redis(app.state.redis)
    results = await asyncio.gather(
        run_feature_check(feature, app) if feature else _no_feature(), *probes.values()
    )
    report, measured = results[0], results[1:]
    dependencies = dict(zip(probes, measured, strict=True))
    required = feature.requires if feature else frozenset(dependencies)
    return _overall(dependencies, report, required), dependencies, report


async def _no_feature() -> dict[str, Any]:
    return {}


_UNHEALTHY: dict[int | str, dict[str, Any]] = {
    503: {"description": "Unhealthy: the body says which store or check failed."}
}


def health_router(feature: FeatureHealth | None) -> APIRouter:
    """The health routes for one app (``feature`` may be None for tools)."""
    router = APIRouter(tags=["health"])

    @router.get("/health")
    async def liveness(request: Request) -> dict[str, Any]:
        """Liveness: the process answers. Never reads a store, so a store's outage does
        not get a healthy pod restarted."""
        app = request.app
        return {
            "status": "healthy",
            "service": app.state.service,
            "version": app.state.version,
            "uptime_seconds": _uptime(app),
        }

    @router.get("/health/detailed", responses=_UNHEALTHY)
    async def readiness(request: Request) -> JSONResponse:
        """Readiness: live round trips to the stores the service declared, and its feature's
        check; 503 when a store the feature requires is down or the feature is unhealthy."""
        app = request.app
        status, dependencies, feature_report = await evaluate(app, feature)
        body = {
            "status": status,
            "service": app.state.service,
            "version": app.state.version,
            "uptime_seconds": _uptime(app),
            "checked_at": datetime.now(UTC).isoformat(),
            "dependencies": dependencies,
            "feature": feature_report,
        }
        return JSONResponse(body, status_code=503 if status == "unhealthy" else 200)

    if feature is not None:

        @router.get(feature.path, responses=_UNHEALTHY)
        async def feature_health(request: Request) -> JSONResponse:
            """The feature's own figures (the seed's health fields) and its status; 503 when
            unhealthy, as ``/health/detailed``."""
            status, dependencies, report = await evaluate(request.app, feature)
            body = {**report, "status": status, "dependencies": dependencies}
            return JSONResponse(body, status_code=503 if status == "unhealthy" else 200)

    return router
