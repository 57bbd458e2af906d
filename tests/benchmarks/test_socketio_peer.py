"""The W1 peer (python-socketio + AsyncRedisManager) keeps our ingest's contract.

The comparison is only fair if the peer authenticates the same tokens,
refuses the same bad input and routes events the same way: tenant-wide
events to every socket of the tenant, targeted ones to the agent's sockets
only, and nothing across tenants.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest

from benchmarks.load.wire import EVENT, HandshakeError, SocketIOWire
from localrun.children import ChildProcesses, wait_http_ok
from localrun.demo import lead_event
from localrun.servers import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration


@pytest.fixture
def peer_url(redis_url: str, settings_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """One peer process on a free port, stopped after the test."""
    port = free_port()
    with ChildProcesses(log_dir=tmp_path) as children:
        peer = children.start(
            "peer",
            [
                sys.executable,
                "-m",
                "benchmarks.peers.socketio_server",
                "--port",
                str(port),
                "--redis-url",
                redis_url,
            ],
            env={**os.environ, **settings_env},
            cwd=REPO_ROOT,
        )
        base = f"http://127.0.0.1:{port}"
        wait_http_ok(peer, f"{base}/health", timeout_s=30)
        yield base


async def _client(
    session: aiohttp.ClientSession, base: str, token: str
) -> aiohttp.ClientWebSocketResponse:
    wire = SocketIOWire()
    ws = await session.ws_connect(wire.url(base.replace("http", "ws"), token))
    await wire.handshake(ws, token)
    return ws


async def _next_event(
    ws: aiohttp.ClientWebSocketResponse, within_s: float
) -> dict[str, object] | None:
    """The next lead_event frame, or None if none arrives in time."""
    wire = SocketIOWire()
    try:
        async with asyncio.timeout(within_s):
            while True:
                data = await ws.receive_str()
                kind, _ = wire.parse(data)
                if kind == EVENT:
                    frame: dict[str, object] = orjson.loads(data[2:])[1]
                    return frame
    except TimeoutError:
        return None


async def test_peer_authenticates_validates_and_routes_like_our_ingest(
    peer_url: str, make_token: Callable[..., str]
) -> None:
    ingest = f"{peer_url}/v1/leads/events"
    webhook = {"Authorization": f"Bearer {make_token('t1', subject='crm')}"}
    async with aiohttp.ClientSession() as session:
        bad = await session.ws_connect(SocketIOWire().url(peer_url.replace("http", "ws"), "x"))
        with pytest.raises(HandshakeError, match="malformed_token"):
            await SocketIOWire().handshake(bad, "not-a-jwt")
        await bad.close()

        a1 = await _client(session, peer_url, make_token("t1", subject="agent-1"))
        a2 = await _client(session, peer_url, make_token("t1", subject="agent-2"))
        other = await _client(session, peer_url, make_token("t2", subject="agent-1"))

        async with session.post(ingest, json=lead_event(seq=1)) as response:
            assert response.status == 401
        async with session.post(ingest, json={"no": "lead_id"}, headers=webhook) as response:
            assert response.status == 422

        async with session.post(ingest, json=lead_event(seq=2), headers=webhook) as response:
            assert response.status == 202
            accepted = await response.json()
        for ws in (a1, a2):
            frame = await _next_event(ws, 5)
            assert frame is not None
            assert frame["event_id"] == accepted["event_id"]
            assert frame["accepted_at"] == accepted["accepted_at"]
        assert await _next_event(other, 0.5) is None

        body = lead_event(seq=3, agent_id="agent-2")
        async with session.post(ingest, json=body, headers=webhook) as response:
            assert response.status == 202
        targeted = await _next_event(a2, 5)
        assert targeted is not None
        assert targeted["agent_id"] == "agent-2"
        assert await _next_event(a1, 0.5) is None
        assert await _next_event(other, 0.2) is None
        for ws in (a1, a2, other):
            await ws.close()


async def test_peer_batch_route_emits_every_event_or_refuses_the_batch(
    peer_url: str, make_token: Callable[..., str]
) -> None:
    batch_url = f"{peer_url}/v1/leads/events/batch"
    webhook = {"Authorization": f"Bearer {make_token('t1', subject='crm')}"}
    async with aiohttp.ClientSession() as session:
        a1 = await _client(session, peer_url, make_token("t1", subject="agent-1"))
        a2 = await _client(session, peer_url, make_token("t1", subject="agent-2"))
        broken = {"events": [lead_event(seq=1, agent_id="agent-1"), {"no": "lead_id"}]}
        async with session.post(batch_url, json=broken, headers=webhook) as response:
            assert response.status == 422
            assert "events[1]" in (await response.json())["detail"]
        assert await _next_event(a1, 0.5) is None

        body = {
            "events": [lead_event(seq=2, agent_id="agent-1"), lead_event(seq=3, agent_id="agent-2")]
        }
        async with session.post(batch_url, json=body, headers=webhook) as response:
            assert response.status == 202
            accepted = (await response.json())["events"]
        first, second = await _next_event(a1, 5), await _next_event(a2, 5)
        assert first is not None
        assert second is not None
        assert [first["event_id"], second["event_id"]] == [a["event_id"] for a in accepted]
        for ws in (a1, a2):
            await ws.close()
