"""Bearer-token authentication on HTTP routes and WebSocket handshakes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from fastapi import APIRouter, FastAPI, WebSocket

from services.common.app import create_app
from services.common.auth import (
    AuthError,
    TokenVerifier,
    authenticate_websocket,
    deny_websocket,
)
from services.common.metrics import new_registry
from services.common.settings import CommonSettings

AppClient = Callable[[FastAPI], Any]
EVENTS = "/v1/test-events"
EVENT = {"lead_id": "lead-1", "event_type": "lead_scored", "intelligence_data": {"score": 0.7}}


@pytest.fixture
def sign(settings: CommonSettings) -> Callable[..., str]:
    """``sign(claims, secret=active, kid=active)``: a token with arbitrary claims."""

    def make(claims: dict[str, Any], *, secret: str | None = None, kid: str | None = None) -> str:
        key = secret or settings.jwt_secret_key.get_secret_value()
        return jwt.encode(
            claims, key, algorithm="HS256", headers={"kid": kid or settings.jwt_key_id}
        )

    return make


@pytest.fixture
def previous_key(settings: CommonSettings) -> tuple[str, str]:
    """(kid, secret) of the verification-only key the test environment lists."""
    kid, secret = next(iter(settings.jwt_previous_keys.items()))
    return kid, secret.get_secret_value()


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"tid": "tenant-a", "sub": "agent-1", "iat": now, "exp": now + 600}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def get_events(
    build_app: Callable[..., FastAPI], app_client: AppClient, headers: dict[str, str]
) -> httpx.Response:
    async with app_client(build_app()) as client:
        response: httpx.Response = await client.get(EVENTS, headers=headers)
        return response


async def test_missing_token_is_401_with_reason(build_app: Any, app_client: AppClient) -> None:
    response = await get_events(build_app, app_client, {})
    assert (response.status_code, response.json()["reason"]) == (401, "missing_token")


async def test_401_carries_a_bearer_challenge(build_app: Any, app_client: AppClient) -> None:
    response = await get_events(build_app, app_client, {})
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')


async def test_non_bearer_scheme_is_malformed(build_app: Any, app_client: AppClient) -> None:
    response = await get_events(build_app, app_client, {"Authorization": "Basic YTpi"})
    assert response.json()["reason"] == "malformed_token"


async def test_garbage_token_is_malformed(build_app: Any, app_client: AppClient) -> None:
    response = await get_events(build_app, app_client, bearer("not.a.jwt"))
    assert response.json()["reason"] == "malformed_token"


async def test_expired_token_is_rejected(
    sign: Callable[..., str], build_app: Any, app_client: AppClient
) -> None:
    token = sign(claims(exp=int(time.time()) - 3600))
    response = await get_events(build_app, app_client, bearer(token))
    assert (response.status_code, response.json()["reason"]) == (401, "expired_token")
    # The holder learns what to do next, not only what went wrong.
    assert response.json()["detail"] == "token has expired; ask for a new one"


async def test_token_without_exp_is_rejected(
    sign: Callable[..., str], build_app: Any, app_client: AppClient
) -> None:
    response = await get_events(build_app, app_client, bearer(sign(claims(exp=None))))
    assert response.json()["reason"] == "missing_claim"


async def test_forged_signature_is_rejected(
    sign: Callable[..., str], build_app: Any, app_client: AppClient
) -> None:
    forged = sign(claims(), secret="an-attacker-guessed-this-key-0123456789")
    response = await get_events(build_app, app_client, bearer(forged))
    assert response.json()["reason"] == "bad_signature"


async def test_unknown_kid_is_rejected(
    sign: Callable[..., str], build_app: Any, app_client: AppClient
) -> None:
    response = await get_events(build_app, app_client, bearer(sign(claims(), kid="k-unknown")))
    assert response.json()["reason"] == "unknown_kid"


async def test_alg_none_is_rejected(build_app: Any, app_client: AppClient) -> None:
    unsigned = jwt.encode(claims(), None, algorithm="none", headers={"kid": "test-2026-01"})
    response = await get_events(build_app, app_client, bearer(unsigned))
    assert response.json()["reason"] == "unsupported_algorithm"


async def test_token_without_tenant_is_rejected(
    sign: Callable[..., str], build_app: Any, app_client: AppClient
) -> None:
    response = await get_events(build_app, app_client, bearer(sign(claims(tid=None))))
    assert response.json()["reason"] == "missing_tenant"


async def test_token_with_injected_tenant_is_rejected(
    sign: Callable[..., str], build_app: Any, app_client: AppClient
) -> None:
    response = await get_events(build_app, app_client, bearer(sign(claims(tid="a:*"))))
    assert response.json()["reason"] == "invalid_tenant"


async def test_rotated_out_key_still_verifies_while_listed(
    previous_key: tuple[str, str], sign: Callable[..., str], build_app: Any, app_client: AppClient
) -> None:
    token = sign(claims(), secret=previous_key[1], kid=previous_key[0])
    response = await get_events(build_app, app_client, bearer(token))
    assert response.status_code == 200


async def test_rotated_out_key_fails_once_dropped(
    previous_key: tuple[str, str], sign: Callable[..., str], build_app: Any, app_client: AppClient
) -> None:
    token = sign(claims(), secret=previous_key[1], kid=previous_key[0])
    async with app_client(build_app(jwt_previous_keys={})) as client:
        response = await client.get(EVENTS, headers=bearer(token))
    assert response.json()["reason"] == "unknown_kid"


async def test_another_tenants_token_cannot_see_tenant_a_rows(
    build_app: Any, app_client: AppClient, make_token: Callable[..., str]
) -> None:
    async with app_client(build_app()) as client:
        created = await client.post(EVENTS, json=EVENT, headers=bearer(make_token("tenant-a")))
        assert created.status_code == 201
        seen_by_b = await client.get(EVENTS, headers=bearer(make_token("tenant-b")))
    assert seen_by_b.json() == []


async def test_owner_tenant_token_sees_its_rows(
    build_app: Any, app_client: AppClient, make_token: Callable[..., str]
) -> None:
    async with app_client(build_app()) as client:
        await client.post(EVENTS, json=EVENT, headers=bearer(make_token("tenant-a")))
        seen_by_a = await client.get(EVENTS, headers=bearer(make_token("tenant-a")))
    assert [row["tenant_id"] for row in seen_by_a.json()] == ["tenant-a"]


ws_router = APIRouter()


@ws_router.websocket("/v1/test-feed")
async def feed(websocket: WebSocket) -> None:
    try:
        principal = await authenticate_websocket(websocket)
    except AuthError as error:
        await deny_websocket(websocket, error)
        return
    await websocket.accept()
    await websocket.send_json({"tenant": principal.tenant_id, "agent": principal.subject})
    await websocket.close()


@pytest.fixture
def ws_app(settings: CommonSettings) -> FastAPI:
    # No lifespan: authentication needs only the verifier create_app installs.
    return create_app(settings=settings, title="ws", routers=[ws_router], registry=new_registry())


async def handshake(
    app: FastAPI, *, query: str = "", headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Drive one WebSocket handshake through the ASGI app; return what it sent.

    Speaks ASGI directly (as uvicorn does, including the denial-response
    extension) because Starlette's TestClient now warns about httpx.
    """
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "http_version": "1.1",
        "path": "/v1/test-feed",
        "raw_path": b"/v1/test-feed",
        "root_path": "",
        "query_string": query.encode(),
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 50000),
        "subprotocols": [],
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "extensions": {"websocket.http.response": {}},
    }
    inbound = [{"type": "websocket.connect"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return inbound.pop(0) if inbound else {"type": "websocket.disconnect", "code": 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def denial(sent: list[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    start = next(m for m in sent if m["type"] == "websocket.http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "websocket.http.response.body")
    return start["status"], json.loads(body)


async def test_websocket_accepts_token_in_query(sign: Callable[..., str], ws_app: FastAPI) -> None:
    sent = await handshake(ws_app, query=f"access_token={sign(claims())}")
    assert [m["type"] for m in sent][:2] == ["websocket.accept", "websocket.send"]


async def test_websocket_accepts_token_in_header(sign: Callable[..., str], ws_app: FastAPI) -> None:
    sent = await handshake(ws_app, headers=bearer(sign(claims())))
    frame = next(m for m in sent if m["type"] == "websocket.send")
    assert json.loads(frame["text"]) == {"tenant": "tenant-a", "agent": "agent-1"}


async def test_websocket_without_token_is_denied_with_401(ws_app: FastAPI) -> None:
    status, body = denial(await handshake(ws_app))
    assert (status, body["reason"]) == (401, "missing_token")


async def test_websocket_with_expired_token_is_denied(
    sign: Callable[..., str], ws_app: FastAPI
) -> None:
    token = sign(claims(exp=int(time.time()) - 3600))
    status, body = denial(await handshake(ws_app, query=f"access_token={token}"))
    assert (status, body["reason"]) == (401, "expired_token")


def test_a_token_issued_before_subjects_were_checked_still_verifies(
    sign: Callable[..., str], settings: CommonSettings
) -> None:
    """Minting refuses a subject that is not an AgentId; a token we signed before
    that keeps working until it expires, as any other of ours."""
    token = sign(claims(sub="bob smith", scope="feed:read", jti="j1"))
    principal = TokenVerifier.from_settings(settings).verify(token)
    assert principal.subject == "bob smith"
