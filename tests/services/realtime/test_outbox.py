"""Redis outages at ingest: stored, acknowledged as deferred, delivered later."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr
from websockets.asyncio.client import connect

from localrun.servers import RedisServer, start_redis
from services.common.database import Database
from services.common.scoring import LeadFeatures
from services.realtime import store
from services.realtime.config import RealtimeSettings
from tests.services.realtime.conftest import (
    Replica,
    event_body,
    open_feed,
    post_event,
    roll_out_feed,
    wait_until,
)
from tests.services.realtime.test_batch import batch_body, post_batch

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture
async def replica_on_private_redis(
    replicas: Callable[..., Awaitable[Replica]],
    realtime_settings: RealtimeSettings,
    private_redis: RedisServer,
) -> Replica:
    """A replica whose Redis is ``private_redis``."""
    settings = realtime_settings.model_copy(update={"redis_url": SecretStr(private_redis.url)})
    return await replicas(settings)


async def _stored_row(db: Database, tenant_id: str, event_id: str) -> dict[str, object]:
    async with db.tenant(tenant_id) as conn:
        row = await conn.fetchrow(
            "SELECT stream_id, published_at FROM realtime_intelligence_events "
            "WHERE event_id = $1::uuid",
            event_id,
        )
    assert row is not None
    return dict(row)


async def test_event_ingested_while_redis_is_down_is_stored_and_deferred(
    replica_on_private_redis: Replica,
    private_redis: RedisServer,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
    db: Database,
) -> None:
    private_redis.stop()
    ack = await post_event(
        http, replica_on_private_redis, make_token("tenant-a"), event_body(sample_leads[0])
    )
    row = await _stored_row(db, "tenant-a", ack["event_id"])
    assert ack["delivery"] == "deferred"
    assert ack["stream_id"] is None
    assert row["published_at"] is None


async def test_deferred_event_is_delivered_when_redis_returns(
    replica_on_private_redis: Replica,
    private_redis: RedisServer,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
    tmp_path: Path,
) -> None:
    replica = replica_on_private_redis
    token = make_token("tenant-a")
    async with open_feed(replica, token) as feed:
        private_redis.stop()
        ack = await post_event(http, replica, token, event_body(sample_leads[0]))
        start_redis(tmp_path, port=private_redis.port)
        frame = await feed.next_event()
    assert ack["delivery"] == "deferred"
    assert frame["event_id"] == ack["event_id"]
    assert frame["accepted_at"] == ack["accepted_at"]


async def test_batches_are_deferred_while_redis_is_down_and_published_after_its_restart(
    replica_on_private_redis: Replica,
    private_redis: RedisServer,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
    tmp_path: Path,
) -> None:
    # A group is appended by one script; a restarted Redis has forgotten it.
    replica = replica_on_private_redis
    agent = "agent-3"
    async with open_feed(replica, make_token("tenant-a", subject=agent)) as feed:
        private_redis.stop()
        during = await post_batch(
            http,
            replica,
            make_token("tenant-a"),
            json=batch_body(sample_leads[:5], "during", agent_id=agent),
        )
        start_redis(tmp_path, port=private_redis.port)
        # Relayed in the batch's order (the events share their accepted_at).
        relayed = await feed.events(5)
        await asyncio.sleep(1.0)  # past the ingest's back-off after the failure
        after = await post_batch(
            http,
            replica,
            make_token("tenant-a"),
            json=batch_body(sample_leads[5:8], "after", agent_id=agent),
        )
        live = await feed.events(3)
    assert during.status_code == after.status_code == 202
    assert {ack["delivery"] for ack in during.json()["events"]} == {"deferred"}
    assert [f["event_id"] for f in relayed] == [a["event_id"] for a in during.json()["events"]]
    acks = after.json()["events"]
    assert {ack["delivery"] for ack in acks} == {"published"}
    assert [f["event_id"] for f in live] == [ack["event_id"] for ack in acks]
    assert [f["lead_id"] for f in live] == [f"after-{n}" for n in range(3)]


async def test_relay_marks_an_event_already_in_the_stream_without_republishing(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
    db: Database,
) -> None:
    token = make_token("tenant-a")
    async with open_feed(replica, token) as feed:
        ack = await post_event(http, replica, token, event_body(sample_leads[0]))
        await feed.next_event()
        await replica.app.state.realtime.writer.flush()
        # As if the replica had died between XADD and writing the mark.
        async with db.tenant("tenant-a") as conn:
            await conn.execute(
                "UPDATE realtime_intelligence_events SET published_at = NULL, stream_id = NULL "
                "WHERE event_id = $1::uuid",
                ack["event_id"],
            )

        async def marked_again() -> bool:
            row = await _stored_row(db, "tenant-a", ack["event_id"])
            return row["published_at"] is not None

        await wait_until(marked_again)
    row = await _stored_row(db, "tenant-a", ack["event_id"])
    assert row["stream_id"] == ack["stream_id"]
    assert await replica.app.state.redis.xlen("tenant:tenant-a:events") == 1


async def test_feed_refuses_clients_while_redis_is_down(
    replica_on_private_redis: Replica,
    private_redis: RedisServer,
    make_token: Callable[..., str],
) -> None:
    private_redis.stop()
    conn = await connect(
        replica_on_private_redis.ws,
        additional_headers={"Authorization": f"Bearer {make_token('tenant-a')}"},
    )
    async with conn:
        await conn.wait_closed()
    assert conn.close_code == 1013
    assert conn.close_reason == "feed unavailable (redis); retry in 1 s"


async def test_delivery_keeps_acceptance_order_across_a_redis_outage(
    replicas: Callable[..., Awaitable[Replica]],
    realtime_settings: RealtimeSettings,
    private_redis: RedisServer,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
    tmp_path: Path,
) -> None:
    # A relay slower than the ingest's back-off: events accepted once Redis is
    # back used to be appended at once, ahead of those held back before them.
    settings = realtime_settings.model_copy(
        update={
            "redis_url": SecretStr(private_redis.url),
            "realtime_relay_interval": 2.0,
            "realtime_relay_scan_interval": 2.0,
            "realtime_relay_grace": 1.5,
        }
    )
    replica = await replicas(settings)
    token = make_token("tenant-a")
    private_redis.stop()
    during = [
        await post_event(http, replica, token, event_body(lead, lead_id=f"during-{n}"))
        for n, lead in enumerate(sample_leads[:3])
    ]
    await asyncio.sleep(1.1)  # past the ingest's back-off after the failure
    start_redis(tmp_path, port=private_redis.port)
    # The restarted Redis is empty: the feed's flag is set again, as `flags init` would.
    await roll_out_feed(replica.app.state.redis)
    after = [
        await post_event(http, replica, token, event_body(lead, lead_id=f"after-{n}"))
        for n, lead in enumerate(sample_leads[3:6])
    ]
    accepted = [ack["event_id"] for ack in during + after]
    assert {ack["delivery"] for ack in during} == {"deferred"}

    async def all_in_stream() -> bool:
        return bool(await replica.app.state.redis.xlen("tenant:tenant-a:events") >= 6)

    await wait_until(all_in_stream)
    entries = await replica.app.state.redis.xrange("tenant:tenant-a:events")
    assert [fields[b"e"].decode() for _, fields in entries] == accepted
    async with open_feed(replica, token, last_event_id="0-0") as feed:
        assert [event["event_id"] for event in feed.replayed] == accepted
    # The hold ends with the backlog: the next event goes straight to the stream.
    assert not replica.app.state.realtime.relay.is_held("tenant-a")
    later = await post_event(http, replica, token, event_body(sample_leads[7], lead_id="later"))
    assert later["delivery"] == "published"


async def test_an_event_stored_late_is_published_once(
    replicas: Callable[..., Awaitable[Replica]],
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The insert commits longer than the relay's grace after the event was accepted
    (a slow Postgres, a wait for a pool connection): another replica's relay took
    the row while the ingest was publishing it, and every socket got it twice."""
    ingesting, other = await replicas(), await replicas()
    insert_events = store.insert_events

    async def slow_insert(*args: Any, **kwargs: Any) -> None:
        await asyncio.sleep(1.0)  # longer than the tests' grace (0.6 s)
        await insert_events(*args, **kwargs)

    monkeypatch.setattr(store, "insert_events", slow_insert)
    events = ingesting.app.state.realtime.ingest.events
    publish_many = events.publish_many

    async def publish_after_a_round_trip(*args: Any, **kwargs: Any) -> list[str]:
        await asyncio.sleep(0.25)  # within REALTIME_PUBLISH_TIMEOUT
        return await publish_many(*args, **kwargs)

    monkeypatch.setattr(events, "publish_many", publish_after_a_round_trip)
    token = make_token("tenant-late-insert")
    # A socket of the tenant on the other replica: its relay scans the tenant.
    async with open_feed(other, token) as feed:
        ack = await post_event(http, ingesting, token, event_body(sample_leads[0]))
        first = await feed.next_event()
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(feed.next_event(), 2.0)
    assert first["event_id"] == ack["event_id"]
    assert first["stream_id"] == ack["stream_id"]
