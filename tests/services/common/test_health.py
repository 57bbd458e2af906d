"""Health endpoints report live measurements and turn 503 when a dependency is down."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from localrun.servers import free_port
from services.common.health import FeatureHealth

from .conftest import FeatureProbe

AppClient = Callable[[FastAPI], Any]


def closed_redis() -> SecretStr:
    return SecretStr(f"redis://127.0.0.1:{free_port()}/0")


def closed_postgres(url: str) -> SecretStr:
    host_port = url.split("@", 1)[1].split("/", 1)[0]
    return SecretStr(url.replace(host_port, f"127.0.0.1:{free_port()}"))


async def test_liveness_reports_version_and_uptime(build_app: Any, app_client: AppClient) -> None:
    async with app_client(build_app()) as client:
        body = (await client.get("/health")).json()
    assert body["status"] == "healthy"
    assert isinstance(body["uptime_seconds"], float)
    assert body["version"]


async def test_detailed_measures_postgres_and_redis(build_app: Any, app_client: AppClient) -> None:
    async with app_client(build_app()) as client:
        response = await client.get("/health/detailed")
    dependencies = response.json()["dependencies"]
    assert response.status_code == 200
    assert dependencies["postgres"]["status"] == "up"
    assert dependencies["postgres"]["latency_seconds"] > 0
    assert dependencies["redis"]["latency_seconds"] > 0


async def test_detailed_is_503_when_redis_is_down(build_app: Any, app_client: AppClient) -> None:
    async with app_client(build_app(redis_url=closed_redis())) as client:
        response = await client.get("/health/detailed")
    body = response.json()
    assert response.status_code == 503
    assert body["status"] == "unhealthy"
    assert body["dependencies"]["redis"]["status"] == "down"
    assert "redis unavailable" in body["dependencies"]["redis"]["reason"]


async def test_detailed_keeps_measuring_postgres_when_redis_is_down(
    build_app: Any, app_client: AppClient
) -> None:
    async with app_client(build_app(redis_url=closed_redis())) as client:
        body = (await client.get("/health/detailed")).json()
    assert body["dependencies"]["postgres"]["status"] == "up"


async def test_detailed_is_503_when_postgres_is_down(
    build_app: Any, app_client: AppClient, app_database_url: str
) -> None:
    app = build_app(database_url=closed_postgres(app_database_url))
    async with app_client(app) as client:
        response = await client.get("/health/detailed")
    assert response.status_code == 503
    assert response.json()["dependencies"]["postgres"]["status"] == "down"


async def test_feature_path_serves_live_values(build_app: Any, app_client: AppClient) -> None:
    async with app_client(build_app()) as client:
        first = (await client.get("/health/websocket")).json()
        second = (await client.get("/health/websocket")).json()
    assert second["checks_served"] == first["checks_served"] + 1


async def test_feature_path_includes_dependency_status(
    build_app: Any, app_client: AppClient
) -> None:
    async with app_client(build_app(redis_url=closed_redis())) as client:
        response = await client.get("/health/websocket")
    assert response.status_code == 503
    assert response.json()["dependencies"]["redis"]["status"] == "down"


async def test_degraded_feature_stays_ready(
    build_app: Any, app_client: AppClient, feature_probe: FeatureProbe
) -> None:
    feature_probe.status = "degraded"
    async with app_client(build_app()) as client:
        response = await client.get("/health/detailed")
    assert (response.status_code, response.json()["status"]) == (200, "degraded")


async def test_unhealthy_feature_is_503(
    build_app: Any, app_client: AppClient, feature_probe: FeatureProbe
) -> None:
    feature_probe.status = "unhealthy"
    async with app_client(build_app()) as client:
        response = await client.get("/health/websocket")
    assert response.status_code == 503


async def test_failing_feature_check_is_reported_not_raised(
    build_app: Any, app_client: AppClient, feature_probe: FeatureProbe
) -> None:
    feature_probe.error = RuntimeError("model not loaded")
    async with app_client(build_app()) as client:
        response = await client.get("/health/websocket")
    assert response.status_code == 503
    assert response.json()["reason"] == "check failed (RuntimeError)"


def test_feature_health_only_accepts_the_seed_paths() -> None:
    async def check(app: FastAPI) -> dict[str, Any]:
        return {}

    with pytest.raises(ValueError, match="/health/ml"):
        FeatureHealth("/healthz", check)
