"""The service skeleton: declared needs drive the lifespan, the edge guard reads
no body before the token verifies, and the shared clients (Claude, storage).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from pydantic import SecretStr

from services.common.app import Need, create_app
from services.common.claude import ClaudeDep, create_claude
from services.common.deps import StorageDep
from services.common.health import FeatureHealth
from services.common.metrics import new_registry
from services.common.settings import CommonSettings, StorageSettings
from services.common.storage import BucketNotConfigured, create_storage
from tests.services.serving import serving

AppClient = Callable[[FastAPI], AbstractAsyncContextManager[httpx.AsyncClient]]

claude_router = APIRouter()


@claude_router.post("/v1/ask")
async def ask(claude: ClaudeDep) -> dict[str, str]:
    message = await claude.api.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=16,
        messages=[{"role": "user", "content": "hello"}],
    )
    block = message.content[0]
    return {"text": block.text if block.type == "text" else ""}


@claude_router.get("/v1/buckets")
async def buckets(storage: StorageDep) -> dict[str, str]:
    return {"models": storage.bucket("models")}


def _app(settings: CommonSettings, needs: frozenset[Need], **kwargs: Any) -> FastAPI:
    return create_app(
        settings=settings,
        title="skeleton test app",
        routers=[claude_router],
        needs=needs,
        registry=new_registry(),
        **kwargs,
    )


# --- the edge guard, on the shared test app whose routes take pydantic bodies ---


class CountingBody:
    """A request body that records how many of its chunks the server pulled."""

    def __init__(self, chunks: int, size: int = 8192, content: bytes = b" ") -> None:
        self.total = chunks
        self.size = size
        self.content = content
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.total):
            self.pulled += 1
            yield self.content * self.size


async def test_no_token_no_body_read(
    build_app: Callable[..., FastAPI], app_client: AppClient
) -> None:
    body = CountingBody(chunks=1000)  # 8 MB, chunked (no Content-Length)
    async with app_client(build_app()) as client:
        response = await client.post("/v1/test-events", content=body)
    assert response.status_code == 401
    assert response.json()["reason"] == "missing_token"
    assert body.pulled == 0


async def test_malformed_json_is_401_without_a_token_and_422_with_one(
    build_app: Callable[..., FastAPI], app_client: AppClient, make_token: Callable[..., str]
) -> None:
    async with app_client(build_app()) as client:
        anonymous = await client.post("/v1/test-events", content=b"{not json")
        signed = await client.post(
            "/v1/test-events",
            content=b"{not json",
            headers={"Authorization": f"Bearer {make_token('tenant-a')}"},
        )
    assert (anonymous.status_code, anonymous.json()["reason"]) == (401, "missing_token")
    assert (signed.status_code, signed.json()["reason"]) == (422, "validation_error")


async def test_chunked_body_past_the_cap_is_413_and_reading_stops(
    build_app: Callable[..., FastAPI], app_client: AppClient, make_token: Callable[..., str]
) -> None:
    body = CountingBody(chunks=1000)
    headers = {"Authorization": f"Bearer {make_token('tenant-a')}"}
    async with app_client(build_app(max_request_body_bytes=65_536)) as client:
        response = await client.post("/v1/test-events", content=body, headers=headers)
    assert response.status_code == 413
    assert response.json() == {
        "detail": "request body exceeds 65536 bytes (MAX_REQUEST_BODY_BYTES); "
        "send less data per request",
        "reason": "body_too_large",
    }
    assert body.pulled == 65_536 // 8192 + 1


async def test_declared_oversized_body_is_413_before_reading(
    build_app: Callable[..., FastAPI], app_client: AppClient, make_token: Callable[..., str]
) -> None:
    headers = {
        "Authorization": f"Bearer {make_token('tenant-a')}",
        "Content-Type": "application/json",
    }
    big = b'{"lead_id": "' + b"x" * 70_000 + b'"}'
    async with app_client(build_app(max_request_body_bytes=65_536)) as client:
        response = await client.post("/v1/test-events", content=big, headers=headers)
        accepted = await client.post(
            "/v1/test-events",
            json={"lead_id": "l1", "event_type": "t", "intelligence_data": {}},
            headers=headers,
        )
    assert (response.status_code, response.json()["reason"]) == (413, "body_too_large")
    assert accepted.status_code == 201


async def test_requests_without_a_body_need_no_token(
    build_app: Callable[..., FastAPI], app_client: AppClient
) -> None:
    async with app_client(build_app()) as client:
        assert (await client.get("/health")).status_code == 200
        assert (await client.get("/metrics")).status_code == 200


@pytest.mark.parametrize("valid_first", [True, False])
async def test_two_authorization_headers_are_400_unread(
    build_app: Callable[..., FastAPI],
    app_client: AppClient,
    make_token: Callable[..., str],
    valid_first: bool,
) -> None:
    """The guard verified the last Authorization header and the route's dependency
    read the first: the credential that let a body be read was not the one used."""
    valid, other = f"Bearer {make_token('tenant-a')}", "Bearer not-a-token"
    pair = (valid, other) if valid_first else (other, valid)
    body = CountingBody(chunks=4)
    async with app_client(build_app()) as client:
        response = await client.post(
            "/v1/test-events",
            content=body,
            headers=[("Authorization", pair[0]), ("Authorization", pair[1])],
        )
    assert response.status_code == 400
    assert response.json() == {
        "detail": "send the authorization header once",
        "reason": "repeated_header",
    }
    assert body.pulled == 0


async def test_a_repeated_query_parameter_is_400_naming_it(
    build_app: Callable[..., FastAPI], app_client: AppClient, make_token: Callable[..., str]
) -> None:
    """Routes read the last copy of a repeated parameter (FastAPI and Starlette), a
    proxy or a log may read the first: one request, two meanings."""
    headers = {"Authorization": f"Bearer {make_token('tenant-a')}"}
    async with app_client(build_app()) as client:
        repeated = await client.get("/v1/test-events?agent_id=a&agent_id=b", headers=headers)
        encoded = await client.get("/v1/test-events?agent_id=a&agent%5Fid=b", headers=headers)
        distinct = await client.get("/v1/test-events?agent_id=a&limit=1", headers=headers)
        anonymous = await client.get("/health?x=1&x=2")
    assert repeated.status_code == encoded.status_code == anonymous.status_code == 400
    assert repeated.json() == {
        "detail": "query parameter 'agent_id' is given more than once; send it once",
        "reason": "repeated_query_parameter",
    }
    assert distinct.status_code == 200


# --- needs drive the lifespan ---


async def test_a_service_gets_only_what_it_declares(
    settings: CommonSettings, app_client: AppClient
) -> None:
    app = _app(settings, frozenset())
    async with app_client(app) as client:
        detailed = (await client.get("/health/detailed")).json()
        state = vars(app.state)["_state"]
    assert {"db", "redis", "storage", "claude"}.isdisjoint(state)
    assert detailed["dependencies"] == {}
    assert detailed["status"] == "healthy"


async def test_default_needs_are_postgres_and_redis(
    settings: CommonSettings, app_client: AppClient
) -> None:
    app = create_app(settings=settings, title="t", registry=new_registry())
    async with app_client(app) as client:
        detailed = (await client.get("/health/detailed")).json()
    assert set(detailed["dependencies"]) == {"postgres", "redis"}
    assert all(dep["status"] == "up" for dep in detailed["dependencies"].values())


def test_feature_health_cannot_require_an_undeclared_store(settings: CommonSettings) -> None:
    async def check(app: FastAPI) -> dict[str, str]:
        return {}

    with pytest.raises(ValueError, match="does not declare"):
        _app(
            settings,
            frozenset({Need.REDIS}),
            feature_health=FeatureHealth("/health/ml", check, requires=frozenset({"postgres"})),
        )


async def test_resources_close_when_the_service_hook_fails(
    settings: CommonSettings,
) -> None:
    opened: dict[str, Any] = {}

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def failing(app: FastAPI) -> AsyncIterator[None]:
        opened["db"] = app.state.db
        raise RuntimeError("domain start-up failed")
        yield

    app = _app(settings, frozenset({Need.POSTGRES}), lifespan=failing)
    with pytest.raises(RuntimeError, match="domain start-up failed"):
        async with app.router.lifespan_context(app):
            pass
    assert opened["db"]._pool.is_closing()


# --- Claude ---


async def test_claude_route_without_a_key_is_503_saying_how_to_enable(
    settings: CommonSettings, app_client: AppClient, make_token: Callable[..., str]
) -> None:
    app = _app(settings.model_copy(update={"anthropic_api_key": None}), frozenset({Need.CLAUDE}))
    headers = {"Authorization": f"Bearer {make_token('tenant-a')}"}
    async with app_client(app) as client:
        response = await client.post("/v1/ask", headers=headers)
    assert response.status_code == 503
    body = response.json()
    assert body["reason"] == "claude_not_configured"
    assert "ANTHROPIC_API_KEY" in body["detail"]


class AnthropicStandIn:
    """A local server answering ``POST /v1/messages`` as the Anthropic API does."""

    def __init__(self) -> None:
        self.seen: list[dict[str, str]] = []
        self.app = FastAPI()

        @self.app.post("/v1/messages")
        async def messages(request: Request) -> dict[str, Any]:
            self.seen.append(dict(request.headers))
            return {
                "id": "msg_test",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5",
                "content": [{"type": "text", "text": "hi from the stand-in"}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": 3, "output_tokens": 5},
            }


async def test_claude_client_comes_from_settings_and_reaches_its_base_url(
    settings: CommonSettings, app_client: AppClient, make_token: Callable[..., str]
) -> None:
    stand_in = AnthropicStandIn()
    async with serving(stand_in.app) as port:
        configured = settings.model_copy(
            update={
                "anthropic_api_key": SecretStr("sk-ant-test-key"),
                "anthropic_base_url": f"http://127.0.0.1:{port}",
                "anthropic_timeout_seconds": 7.0,
                "anthropic_max_retries": 0,
            }
        )
        client = create_claude(configured)
        assert client is not None
        # The SDK never retries: the shared client's one retry policy does.
        assert client.api.max_retries == 0
        assert client.api.timeout.read == 7.0
        await client.close()
        app = _app(configured, frozenset({Need.CLAUDE}))
        headers = {"Authorization": f"Bearer {make_token('tenant-a')}"}
        async with app_client(app) as http:
            response = await http.post("/v1/ask", headers=headers)
    assert response.json() == {"text": "hi from the stand-in"}
    sent = stand_in.seen[0]
    assert "sk-ant-test-key" in (sent.get("x-api-key", "") + sent.get("authorization", ""))


# --- storage ---


def test_storage_client_and_buckets_come_from_settings(
    s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    settings = StorageSettings.from_env(
        s3_endpoint_url=s3_endpoint, aws_region="us-east-1", models_bucket="eh-models"
    )
    storage = create_storage(settings)
    try:
        storage.client.create_bucket(Bucket=storage.bucket("models"))
        storage.client.put_object(Bucket="eh-models", Key="k", Body=b"v")
        assert storage.client.get_object(Bucket="eh-models", Key="k")["Body"].read() == b"v"
        with pytest.raises(BucketNotConfigured, match="MEDIA_BUCKET"):
            storage.bucket("media")
    finally:
        storage.close()


def test_storage_settings_reject_bad_names() -> None:
    from services.common.settings import SettingsError

    with pytest.raises(SettingsError) as caught:
        StorageSettings.from_env(s3_endpoint_url="minio:9000", models_bucket="Bad_Bucket")
    problems = "\n".join(caught.value.problems)
    assert "S3_ENDPOINT_URL" in problems
    assert "MODELS_BUCKET" in problems
    assert StorageSettings.from_env(s3_endpoint_url="", media_bucket="").media_bucket is None


async def test_storage_dependency_serves_the_lifespans_client(
    settings: CommonSettings, app_client: AppClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    app = _app(
        settings.model_copy(update={"models_bucket": "eh-models"}), frozenset({Need.STORAGE})
    )
    async with app_client(app) as client:
        response = await client.get("/v1/buckets")
    assert response.json() == {"models": "eh-models"}
