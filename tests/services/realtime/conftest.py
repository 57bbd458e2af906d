"""Fixtures for the websocket-manager: real apps under uvicorn, real sockets.

Every app runs under uvicorn on a loopback port inside the test's event loop,
against the session's Postgres and Redis (or a private Redis for tests that
stop it), with a real lead-scoring model trained once per session. Clients
are `websockets` connections and `httpx` requests over TCP, as in production.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio
import uvicorn
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection, connect

from localrun.servers import RedisServer, free_port, start_redis
from services.common.flags import FlagState, write_flag
from services.common.metrics import new_registry
from services.common.redis import Redis, close_redis, create_redis
from services.common.scoring import LeadFeatures, LeadScorer
from services.common.serving import uvicorn_protocols
from services.ml import datagen
from services.ml.training import train_to_file
from services.realtime.config import RealtimeSettings
from services.realtime.main import create_app
from services.realtime.routes.feed import FEED_FEATURE

# Short intervals so the relay, the batched writes and heartbeats happen
# within a test; the behaviour is the same as with the production defaults.
FAST_ENV = {
    "WS_HEARTBEAT_INTERVAL": "0.5",
    "WS_RECONNECT_DELAY": "1",
    "REALTIME_PUBLISH_TIMEOUT": "0.3",
    "REALTIME_FLUSH_INTERVAL": "0.05",
    "REALTIME_RELAY_INTERVAL": "0.1",
    "REALTIME_RELAY_SCAN_INTERVAL": "0.1",
    "REALTIME_RELAY_GRACE": "0.6",
    "REDIS_SOCKET_TIMEOUT": "1",
}
RECEIVE_TIMEOUT = 10.0


@pytest.fixture(scope="session")
def lead_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real lead-conversion artifact trained on generated leads."""
    path = tmp_path_factory.mktemp("realtime-model") / "lead_scoring.joblib"
    train_to_file(out=path, rows=5_000, seed=11)
    return path


@pytest.fixture(scope="session")
def sample_leads() -> list[LeadFeatures]:
    """Generated leads to put in events."""
    return datagen.generate_leads(50, seed=5)


@pytest.fixture
def realtime_env(
    settings_env: dict[str, str], lead_model: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The test environment plus the realtime service's variables."""
    env = {**settings_env, **FAST_ENV, "ML_MODEL_URI": str(lead_model)}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def realtime_settings(realtime_env: dict[str, str]) -> RealtimeSettings:
    """`RealtimeSettings` over the test environment."""
    return RealtimeSettings.from_env()


@dataclass
class Replica:
    """One running websocket-manager process stand-in (app + uvicorn server)."""

    app: FastAPI
    registry: CollectorRegistry
    port: int
    server: uvicorn.Server
    task: asyncio.Task[None] = field(repr=False)

    @property
    def http(self) -> str:
        """Base URL for HTTP."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        """URL of the feed."""
        return f"ws://127.0.0.1:{self.port}/v1/feed"

    async def stop(self) -> None:
        """Shut the server down as on SIGTERM (sockets closed, lifespan ended)."""
        if not self.task.done():
            self.server.should_exit = True
            await self.task


async def start_replica(settings: RealtimeSettings) -> Replica:
    """Start an app under uvicorn on a free loopback port and wait until it serves."""
    registry = new_registry()
    scorer = LeadScorer.load(
        settings.ml_model_uri, cache_size=settings.ml_model_cache_size, batch_size=8
    )
    app = create_app(settings, scorer=scorer, registry=registry)
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="on",
        log_level="warning",
        # The protocols `enterprisehub serve` runs (bounded handshakes and messages).
        **uvicorn_protocols(),
    )
    server = uvicorn.Server(config)
    # The test loop owns signals; uvicorn must not replace its handlers.
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn exited before starting")
        await asyncio.sleep(0.01)
    return Replica(app=app, registry=registry, port=port, server=server, task=task)


async def roll_out_feed(redis: Redis) -> None:
    """The feed's flag on for every tenant of ``redis`` (as `make run`'s seed has it)."""
    await write_flag(redis, FEED_FEATURE, FlagState(enabled=True, rollout_percentage=100))


@pytest_asyncio.fixture
async def feed_rolled_out(redis_client: Redis) -> None:
    """The feed on for every tenant (tests of its rollout set their own percentage)."""
    await roll_out_feed(redis_client)


@pytest_asyncio.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A Redis of this test's own (so stopping it disturbs no other test), the feed on."""
    server = start_redis(tmp_path)
    client = create_redis(server.url, max_connections=1, socket_timeout=2)
    try:
        await roll_out_feed(client)
    finally:
        await close_redis(client)
    yield server
    server.stop()


@pytest_asyncio.fixture
async def replicas(
    realtime_settings: RealtimeSettings, feed_rolled_out: None
) -> AsyncIterator[Callable[..., Awaitable[Replica]]]:
    """``await replicas()`` starts one more replica (all stopped after the test)."""
    started: list[Replica] = []

    async def start(settings: RealtimeSettings | None = None) -> Replica:
        replica = await start_replica(settings or realtime_settings)
        started.append(replica)
        return replica

    yield start
    for replica in started:
        await replica.stop()


@pytest_asyncio.fixture
async def replica(replicas: Callable[..., Awaitable[Replica]]) -> Replica:
    """One running replica."""
    return await replicas()


@pytest_asyncio.fixture
async def replica_without_postgres(
    replicas: Callable[..., Awaitable[Replica]], realtime_settings: RealtimeSettings
) -> Replica:
    """A replica whose DATABASE_URL points at a closed port (Redis is up)."""
    unreachable = SecretStr(f"postgresql://nobody:secret@127.0.0.1:{free_port()}/nothing")
    return await replicas(realtime_settings.model_copy(update={"database_url": unreachable}))


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the replicas' loopback ports."""
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


def event_body(
    lead: LeadFeatures,
    *,
    lead_id: str = "lead-1",
    event_type: str = "lead.updated",
    agent_id: str | None = None,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A valid webhook body."""
    body: dict[str, Any] = {
        "lead_id": lead_id,
        "event_type": event_type,
        "lead": lead.model_dump(),
        "data": data or {},
    }
    if agent_id is not None:
        body["agent_id"] = agent_id
    return body


async def post_event(
    http: httpx.AsyncClient, replica: Replica, token: str, body: dict[str, Any]
) -> dict[str, Any]:
    """POST an event and return the 202 body (fails the test otherwise)."""
    response = await http.post(
        f"{replica.http}/v1/leads/events", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 202, response.text
    answer: dict[str, Any] = response.json()
    return answer


async def wait_until(condition: Callable[[], Awaitable[bool]]) -> None:
    """Poll ``condition`` until it holds (fails the test after RECEIVE_TIMEOUT).

    For state outside the test's process view (Postgres rows, Redis keys),
    where there is no event to wait on.
    """
    async with asyncio.timeout(RECEIVE_TIMEOUT):
        while not await condition():  # noqa: ASYNC110 - the state lives in Postgres/Redis
            await asyncio.sleep(0.02)


def lead_events(frame: dict[str, Any]) -> list[dict[str, Any]]:
    """The lead events a frame carries: one ``lead_event``, a ``lead_events`` batch, or none."""
    if frame["type"] == "lead_event":
        return [frame]
    if frame["type"] == "lead_events":
        events: list[dict[str, Any]] = frame["events"]
        assert len(events) >= 2, "a batch frame carries at least two events"
        assert all(event["type"] == "lead_event" for event in events)
        return events
    return []


class Feed:
    """A connected feed client that has received its ``ready`` frame."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn
        self.ready: dict[str, Any] = {}
        self.before_ready: list[dict[str, Any]] = []
        # Events of a ``lead_events`` frame not yet returned by next_event().
        self.pending: list[dict[str, Any]] = []

    async def frame(self) -> dict[str, Any]:
        """The next frame of any type."""
        raw = await asyncio.wait_for(self.conn.recv(), RECEIVE_TIMEOUT)
        frame: dict[str, Any] = orjson.loads(raw)
        return frame

    async def wait_ready(self) -> None:
        """Read up to the ``ready`` frame, keeping what came before it."""
        async with asyncio.timeout(RECEIVE_TIMEOUT):
            while True:
                frame = await self.frame()
                if frame["type"] == "ready":
                    self.ready = frame
                    return
                self.before_ready.append(frame)

    @property
    def replayed(self) -> list[dict[str, Any]]:
        """Lead events sent before ``ready`` (the replay)."""
        return [event for frame in self.before_ready for event in lead_events(frame)]

    async def next_event(self) -> dict[str, Any]:
        """The next lead event (heartbeats are skipped, ``lead_events`` unpacked).

        Fails after RECEIVE_TIMEOUT even while heartbeats keep arriving.
        """
        async with asyncio.timeout(RECEIVE_TIMEOUT):
            while not self.pending:
                self.pending.extend(lead_events(await self.frame()))
        return self.pending.pop(0)

    async def until_closed(self) -> None:
        """Read (and drop) frames until the server closes the socket (or fail the test)."""
        async with asyncio.timeout(RECEIVE_TIMEOUT):
            while True:
                await self.frame()

    async def events(self, count: int) -> list[dict[str, Any]]:
        """The next ``count`` lead events, in order."""
        return [await self.next_event() for _ in range(count)]


@contextlib.asynccontextmanager
async def open_feed(
    replica: Replica, token: str, *, last_event_id: str | None = None, via_query: bool = False
) -> AsyncIterator[Feed]:
    """Connect to a replica's feed and wait for ``ready``."""
    params = []
    headers = {}
    if via_query:
        params.append(f"access_token={token}")
    else:
        headers["Authorization"] = f"Bearer {token}"
    if last_event_id is not None:
        params.append(f"last_event_id={last_event_id}")
    url = replica.ws + ("?" + "&".join(params) if params else "")
    async with connect(url, additional_headers=headers, open_timeout=RECEIVE_TIMEOUT) as conn:
        feed = Feed(conn)
        await feed.wait_ready()
        yield feed
