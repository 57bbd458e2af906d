"""Bad input gets a 4xx with a reason; an unreachable datastore gets a 503."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from localrun.servers import free_port

AppClient = Callable[[FastAPI], Any]
EVENTS = "/v1/test-events"


def auth(make_token: Callable[..., str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token('tenant-a')}"}


async def test_invalid_json_is_422_with_reason(
    build_app: Any, app_client: AppClient, make_token: Callable[..., str]
) -> None:
    headers = {**auth(make_token), "Content-Type": "application/json"}
    async with app_client(build_app()) as client:
        response = await client.post(EVENTS, content=b"{not json", headers=headers)
    assert (response.status_code, response.json()["reason"]) == (422, "validation_error")


async def test_missing_field_names_the_field(
    build_app: Any, app_client: AppClient, make_token: Callable[..., str]
) -> None:
    body = {"event_type": "lead_scored", "intelligence_data": {}}
    async with app_client(build_app()) as client:
        response = await client.post(EVENTS, json=body, headers=auth(make_token))
    assert response.json()["errors"] == [{"field": "body.lead_id", "problem": "Field required"}]


async def test_wrong_type_is_422_not_500(
    build_app: Any, app_client: AppClient, make_token: Callable[..., str]
) -> None:
    body = {"lead_id": "l1", "event_type": "x", "intelligence_data": "not-an-object"}
    async with app_client(build_app()) as client:
        response = await client.post(EVENTS, json=body, headers=auth(make_token))
    assert response.status_code == 422


async def test_unknown_route_is_json_404(build_app: Any, app_client: AppClient) -> None:
    async with app_client(build_app()) as client:
        response = await client.get("/v1/nothing-here")
    assert response.json() == {"detail": "Not Found", "reason": "not_found"}


async def test_wrong_method_is_405_with_reason(build_app: Any, app_client: AppClient) -> None:
    async with app_client(build_app()) as client:
        response = await client.delete(EVENTS)
    assert response.json()["reason"] == "method_not_allowed"


async def test_route_is_503_when_redis_is_down(
    build_app: Any, app_client: AppClient, make_token: Callable[..., str]
) -> None:
    app = build_app(redis_url=SecretStr(f"redis://127.0.0.1:{free_port()}/0"))
    async with app_client(app) as client:
        response = await client.post(f"{EVENTS}/lead-1/seen", headers=auth(make_token))
    assert response.status_code == 503
    assert response.json()["reason"] == "dependency_unavailable"
    assert response.headers["retry-after"] == "5"


async def test_route_is_503_when_postgres_is_down(
    build_app: Any, app_client: AppClient, make_token: Callable[..., str], app_database_url: str
) -> None:
    host_port = app_database_url.split("@", 1)[1].split("/", 1)[0]
    down = SecretStr(app_database_url.replace(host_port, f"127.0.0.1:{free_port()}"))
    async with app_client(build_app(database_url=down)) as client:
        response = await client.get(EVENTS, headers=auth(make_token))
    assert (response.status_code, response.json()["reason"]) == (503, "dependency_unavailable")


async def test_cors_preflight_allows_a_configured_subdomain(
    build_app: Any, app_client: AppClient
) -> None:
    headers = {
        "Origin": "https://coaching.enterprisehub.test",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization",
    }
    async with app_client(build_app()) as client:
        response = await client.options(EVENTS, headers=headers)
    assert response.headers["access-control-allow-origin"] == "https://coaching.enterprisehub.test"


async def test_cors_preflight_refuses_other_origins(build_app: Any, app_client: AppClient) -> None:
    headers = {"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    async with app_client(build_app()) as client:
        response = await client.options(EVENTS, headers=headers)
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize(
    "path",
    [
        "/health%0A",  # Starlette's ``^/health$`` matches "/health\n": it answered 200
        "/metrics%0A",
        "/v1/test-events%0A",
        "/health%0D%0A",
        # Not a route either way: the router's own 404.
        "/v1/test-events%0Aextra",
        "/health%09",
    ],
)
async def test_a_path_ending_in_a_newline_names_no_route(
    path: str, build_app: Any, app_client: AppClient, make_token: Callable[..., str]
) -> None:
    async with app_client(build_app()) as client:
        response = await client.get(path, headers=auth(make_token))
        text = (await client.get("/metrics")).text
    assert (response.status_code, response.json()) == (
        404,
        {"detail": "Not Found", "reason": "not_found"},
    )
    assert 'http_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text
