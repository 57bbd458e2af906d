"""Reconnect and resume: exactly the missed events, in order, then live ones."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from services.common.scoring import LeadFeatures
from tests.services.realtime.conftest import Replica, event_body, open_feed, post_event

pytestmark = pytest.mark.integration


async def _post_many(
    http: httpx.AsyncClient,
    replica: Replica,
    token: str,
    leads: list[LeadFeatures],
    prefix: str,
) -> list[dict[str, Any]]:
    return [
        await post_event(http, replica, token, event_body(lead, lead_id=f"{prefix}-{i}"))
        for i, lead in enumerate(leads)
    ]


async def test_resume_by_stream_id_replays_exactly_the_missed_events(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
) -> None:
    token = make_token("tenant-a")
    async with open_feed(replica, token) as feed:
        seen = await _post_many(http, replica, token, sample_leads[:2], "seen")
        last = (await feed.events(2))[-1]
    missed = await _post_many(http, replica, token, sample_leads[2:5], "missed")
    async with open_feed(replica, token, last_event_id=last["stream_id"]) as feed:
        live = await post_event(http, replica, token, event_body(sample_leads[5], lead_id="live"))
        after_ready = await feed.next_event()
    assert last["event_id"] == seen[-1]["event_id"]
    assert [f["event_id"] for f in feed.replayed] == [a["event_id"] for a in missed]
    assert feed.ready["replayed"] == len(missed)
    assert after_ready["event_id"] == live["event_id"]


async def test_resume_by_event_id_replays_the_missed_events(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
) -> None:
    token = make_token("tenant-a")
    first = await post_event(http, replica, token, event_body(sample_leads[0]))
    missed = await _post_many(http, replica, token, sample_leads[1:3], "missed")
    async with open_feed(replica, token, last_event_id=first["event_id"]) as feed:
        pass
    assert [f["event_id"] for f in feed.replayed] == [a["event_id"] for a in missed]


async def test_resume_while_events_keep_coming_has_no_gap_or_duplicate(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
) -> None:
    token = make_token("tenant-a")
    async with open_feed(replica, token) as feed:
        first = await post_event(http, replica, token, event_body(sample_leads[0]))
        await feed.next_event()
    posted: list[dict[str, Any]] = []
    some_posted = asyncio.Event()

    async def producer() -> None:
        for i, lead in enumerate(sample_leads[1:41]):
            posted.append(await post_event(http, replica, token, event_body(lead, lead_id=f"p{i}")))
            if len(posted) == 10:
                some_posted.set()

    producing = asyncio.create_task(producer())
    # Reconnect in the middle of the burst: part replayed, part live.
    await some_posted.wait()
    async with open_feed(replica, token, last_event_id=first["stream_id"]) as feed:
        await producing
        live = await feed.events(len(posted) - len(feed.replayed))
    received = [f["event_id"] for f in feed.replayed + live]
    assert received == [a["event_id"] for a in posted]


async def test_malformed_last_event_id_is_refused_with_reason(
    replica: Replica, make_token: Callable[..., str]
) -> None:
    conn = await connect(
        f"{replica.ws}?last_event_id=yesterday",
        additional_headers={"Authorization": f"Bearer {make_token('tenant-a')}"},
    )
    async with conn:
        await conn.wait_closed()
    assert conn.close_code == 1008
    assert conn.close_reason is not None
    assert conn.close_reason.startswith("malformed last_event_id")


async def _post_and_record(
    http: httpx.AsyncClient, replica: Replica, token: str, leads: list[LeadFeatures]
) -> list[dict[str, Any]]:
    acks = await _post_many(http, replica, token, leads, "old")
    # Stream ids reach Postgres in the writer's next batch; do not wait for it.
    await replica.app.state.realtime.writer.flush()
    return acks


async def test_resume_beyond_stream_retention_replays_from_postgres(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
) -> None:
    token = make_token("tenant-a")
    first, *missed = await _post_and_record(http, replica, token, sample_leads[:7])
    # Exact trim, so the test does not depend on MAXLEN ~ node boundaries.
    await replica.app.state.redis.xtrim("tenant:tenant-a:events", maxlen=2, approximate=False)
    async with open_feed(replica, token, last_event_id=first["stream_id"]) as feed:
        pass
    assert [f["event_id"] for f in feed.replayed] == [a["event_id"] for a in missed]
    assert [f["stream_id"] for f in feed.replayed] == [a["stream_id"] for a in missed]


async def test_resume_after_redis_lost_its_data_replays_from_postgres(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
) -> None:
    token = make_token("tenant-a")
    first, *missed = await _post_and_record(http, replica, token, sample_leads[:4])
    await replica.app.state.redis.delete("tenant:tenant-a:events")
    async with open_feed(replica, token, last_event_id=first["stream_id"]) as feed:
        pass
    assert [f["event_id"] for f in feed.replayed] == [a["event_id"] for a in missed]


async def test_replay_over_the_limit_is_announced(
    replicas: Callable[..., Any],
    realtime_settings: Any,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
) -> None:
    replica = await replicas(realtime_settings.model_copy(update={"realtime_db_replay_limit": 2}))
    token = make_token("tenant-a")
    first, *missed = await _post_and_record(http, replica, token, sample_leads[:7])
    await replica.app.state.redis.xtrim("tenant:tenant-a:events", maxlen=2, approximate=False)
    async with open_feed(replica, token, last_event_id=first["stream_id"]) as feed:
        pass
    # What is replayed together goes in one lead_events frame.
    types = [f["type"] for f in feed.before_ready]
    assert types == ["lead_events", "replay_truncated", "lead_events"]
    notice = feed.before_ready[1]
    assert notice["requested"] == first["stream_id"]
    assert notice["resumed_from"] == missed[-2]["stream_id"]
    assert [f["event_id"] for f in feed.replayed] == [
        a["event_id"] for a in missed[:2] + missed[-2:]
    ]
