"""Hostile and unlucky handshakes of the feed: refused with a code, never leaking a slot."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from localrun.servers import RedisServer
from services.common.scopes import CRM_INGEST, FEED_READ, LEADS_SCORE
from services.common.scoring import LeadFeatures
from services.common.serving import WS_MAX_MESSAGE_BYTES
from services.realtime.config import RealtimeSettings
from tests.services.realtime.conftest import (
    RECEIVE_TIMEOUT,
    Replica,
    event_body,
    open_feed,
    post_event,
)

pytestmark = pytest.mark.integration

LIMIT = 3


async def _close_of(replica: Replica, token: str, query: str = "") -> tuple[int, str]:
    """Connect with ``query`` and return the close code and reason the server sends."""
    url = replica.ws + (f"?{query}" if query else "")
    async with connect(
        url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=10
    ) as conn:
        with contextlib.suppress(ConnectionClosed):
            while True:
                await conn.recv(decode=True)
    assert conn.close_code is not None
    return conn.close_code, conn.close_reason or ""


@pytest_asyncio.fixture
async def capped(
    replicas: Callable[..., Awaitable[Replica]], realtime_settings: RealtimeSettings
) -> Replica:
    """A replica allowing LIMIT sockets per tenant."""
    return await replicas(
        realtime_settings.model_copy(update={"ws_max_connections_per_tenant": LIMIT})
    )


@pytest.mark.parametrize(
    "last_event_id",
    [
        "1-1%0A",  # "1-1\n": passed a ^...$ regex, then crashed the parser (500)
        "1-1%0A%0A",
        "%D9%A1-1",  # an Arabic-Indic digit: str.isdigit() says yes
        "0192d3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d%0A",
        "%7B0192d3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d%7D",
    ],
)
async def test_malformed_last_event_id_is_1008_and_gives_the_slot_back(
    capped: Replica, make_token: Callable[..., str], last_event_id: str
) -> None:
    token = make_token("tenant-a")
    # More bad handshakes than the tenant has slots: each must give its back.
    for _ in range(LIMIT + 2):
        code, reason = await _close_of(capped, token, f"last_event_id={last_event_id}")
        assert code == 1008, reason
        assert "last_event_id" in reason
    hub = capped.app.state.realtime.hub
    assert hub.registry.count("tenant-a") == 0
    assert await capped.app.state.redis.zcard(hub.cap.key("tenant-a")) == 0
    async with open_feed(capped, token) as feed:
        assert feed.ready["tenant_id"] == "tenant-a"


@pytest.mark.parametrize(
    "last_event_id", ["99999999999999999999-0", "18446744073709551615-1", "1-99999999999999999999"]
)
async def test_out_of_range_resume_id_is_a_client_error_not_redis_down(
    capped: Replica, make_token: Callable[..., str], last_event_id: str
) -> None:
    # Redis answers "Invalid stream ID" (a ResponseError) to such ids; that
    # used to be reported as an outage (1013), so clients retried forever.
    code, reason = await _close_of(capped, make_token("tenant-a"), f"last_event_id={last_event_id}")
    assert (code, "out of range" in reason) == (1008, True)


async def test_resume_id_ahead_of_the_stream_is_refused(
    capped: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
) -> None:
    # Such an id was never sent; resuming from it skipped live events silently.
    token = make_token("tenant-a")
    ack = await post_event(http, capped, token, event_body(sample_leads[0]))
    ms, seq = (int(part) for part in ack["stream_id"].split("-"))
    for ahead in (f"{ms}-{seq + 1}", f"{ms + 86_400_000}-0"):
        code, reason = await _close_of(capped, token, f"last_event_id={ahead}")
        assert (code, "ahead of the stream" in reason) == (1008, True)
    async with open_feed(capped, token, last_event_id=ack["stream_id"]) as feed:
        assert feed.ready["replayed"] == 0
    # A stream that lost its entries (Redis lost its data) still resumes.
    async with open_feed(capped, make_token("tenant-b"), last_event_id=f"{ms}-0") as feed:
        assert feed.ready["tenant_id"] == "tenant-b"


async def test_slot_is_returned_when_the_feed_fails_after_admission(
    capped: Replica, make_token: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = capped.app.state.realtime.hub

    async def broken(tenant_id: str) -> str:
        raise RuntimeError("a failure nobody foresaw")

    monkeypatch.setattr(hub.fanout, "subscribe", broken)
    token = make_token("tenant-a")
    for _ in range(LIMIT + 1):
        with pytest.raises((InvalidStatus, ConnectionClosed)):
            async with connect(
                capped.ws, additional_headers={"Authorization": f"Bearer {token}"}
            ) as conn:
                await conn.recv()
    assert hub.registry.count("tenant-a") == 0
    assert await capped.app.state.redis.zcard(hub.cap.key("tenant-a")) == 0
    failures = capped.registry.get_sample_value(
        "websocket_connection_failures_total", {"reason": "internal_error"}
    )
    assert failures == LIMIT + 1
    monkeypatch.undo()
    async with open_feed(capped, token) as feed:
        assert feed.ready["tenant_id"] == "tenant-a"


@pytest.mark.parametrize("scopes", [(CRM_INGEST,), (LEADS_SCORE,), ()])
async def test_feed_needs_the_feed_read_scope(
    replica: Replica, settings: Any, scopes: tuple[str, ...]
) -> None:
    import jwt

    from services.common.auth import issue_token

    if scopes:
        token = issue_token(settings, tenant_id="tenant-a", subject="crm", scopes=scopes)
    else:
        # A token minted before scopes existed: valid, but allowed nothing.
        claims = jwt.decode(
            issue_token(settings, tenant_id="tenant-a", subject="x", scopes=(FEED_READ,)),
            options={"verify_signature": False},
        )
        del claims["scope"]
        token = jwt.encode(
            claims,
            settings.jwt_secret_key.get_secret_value(),
            algorithm="HS256",
            headers={"kid": settings.jwt_key_id},
        )
    with pytest.raises(InvalidStatus) as refused:
        async with connect(replica.ws, additional_headers={"Authorization": f"Bearer {token}"}):
            pass
    assert refused.value.response.status_code == 403
    assert b"insufficient_scope" in refused.value.response.body


async def test_a_feed_read_token_is_enough(
    replica: Replica, make_token: Callable[..., str]
) -> None:
    async with open_feed(replica, make_token("tenant-a", scopes=(FEED_READ,))) as feed:
        assert feed.ready["tenant_id"] == "tenant-a"


async def test_client_message_over_the_cap_is_closed_1009(
    replica: Replica, make_token: Callable[..., str]
) -> None:
    async with open_feed(replica, make_token("tenant-a")) as feed:
        await feed.conn.send("x" * (WS_MAX_MESSAGE_BYTES + 1))
        with pytest.raises(ConnectionClosed):
            await feed.until_closed()
    assert feed.conn.close_code == 1009


async def test_small_client_messages_are_ignored(
    replica: Replica, make_token: Callable[..., str]
) -> None:
    async with open_feed(replica, make_token("tenant-a")) as feed:
        await feed.conn.send("ping from the client")
        assert (await feed.frame())["type"] == "heartbeat"


async def test_socket_of_a_tenant_already_read_is_1013_while_redis_is_down(
    replicas: Callable[..., Awaitable[Replica]],
    realtime_settings: RealtimeSettings,
    private_redis: RedisServer,
    make_token: Callable[..., str],
) -> None:
    settings = realtime_settings.model_copy(update={"redis_url": SecretStr(private_redis.url)})
    replica = await replicas(settings)
    token = make_token("tenant-a")
    # The first socket makes this replica read the tenant's stream; a second
    # one then needed no Redis round trip and was told `ready`.
    async with open_feed(replica, token):
        private_redis.stop()
        async with connect(
            replica.ws,
            additional_headers={"Authorization": f"Bearer {token}"},
            open_timeout=RECEIVE_TIMEOUT,
        ) as second:
            frames = []
            with contextlib.suppress(ConnectionClosed):
                while True:
                    frames.append(await second.recv())
    assert frames == []
    assert second.close_code == 1013
    assert second.close_reason == "feed unavailable (redis); retry in 1 s"
    get = replica.registry.get_sample_value
    assert get("websocket_connection_attempts_total") == 2.0
    assert (get("websocket_connection_failures_total", {"reason": "redis_unavailable"}) or 0) >= 1


@pytest.mark.parametrize("suffix", ["%0A", "%0D%0A", "%00"])
async def test_a_feed_path_ending_in_a_newline_is_not_the_feed(
    suffix: str, replica: Replica, make_token: Callable[..., str]
) -> None:
    """``/v1/...%0A`` matched the feed's ``^...$`` route and opened a feed socket."""
    token = make_token("tenant-a")
    with pytest.raises(InvalidStatus) as refused:
        async with connect(
            replica.ws + suffix, additional_headers={"Authorization": f"Bearer {token}"}
        ):
            pass
    assert refused.value.response.status_code == 403


@pytest.mark.parametrize(
    "query", ["access_token=junk&access_token={token}", "last_event_id=x&last_event_id=0-0"]
)
async def test_a_handshake_repeating_a_query_parameter_is_400(
    query: str, replica: Replica, make_token: Callable[..., str]
) -> None:
    """The feed read the last copy (``access_token=junk&access_token=<valid>`` opened a
    socket) while the access log and any proxy may read the first."""
    token = make_token("tenant-a", scopes=(FEED_READ,))
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"{replica.ws}?{query.format(token=token)}"):
            pass
    assert refused.value.response.status_code == 400
    assert b"repeated_query_parameter" in refused.value.response.body
