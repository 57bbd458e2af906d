"""A socket catching up from the stream reads pages bounded in bytes (real Redis)."""

from __future__ import annotations

import time

import pytest

from services.common.metrics import new_registry
from services.common.redis import Redis
from services.realtime.connections import REPLAY_PAGE_CHARS, FeedConnection
from services.realtime.frames import FeedEntry, encode_event_body
from services.realtime.metrics import LatencyWindow, RealtimeMetrics
from services.realtime.stream import EventStream, PublishItem, stream_key
from tests.services.realtime.test_coalescing import Socket

pytestmark = pytest.mark.integration

TENANT = "tenant-pages"


class PageLog:
    """The real EventStream, with each page it returns recorded (entries, characters)."""

    def __init__(self, stream: EventStream) -> None:
        self.stream = stream
        self.pages: list[tuple[int, int]] = []

    async def range_after(self, tenant_id: str, after: str, *, count: int) -> list[FeedEntry]:
        entries = await self.stream.range_after(tenant_id, after, count=count)
        self.pages.append((len(entries), sum(len(e.frame) for e in entries)))
        return entries


async def _publish(stream: EventStream, events: int, data_chars: int) -> None:
    items = [
        PublishItem(
            event_id=f"e{i}",
            agent_id=None,
            accepted_at=time.time(),
            body=encode_event_body(
                event_id=f"e{i}",
                lead_id=f"lead-{i}",
                event_type="lead.updated",
                agent_id=None,
                score=0.5,
                model_version="v1",
                data={"notes": "x" * data_chars},
                accepted_at=time.time(),
            ),
        )
        for i in range(events)
    ]
    for start in range(0, events, 100):
        await stream.publish_many(TENANT, items[start : start + 100])


async def _replay(redis_client: Redis, events: int, data_chars: int) -> tuple[PageLog, Socket]:
    await redis_client.delete(stream_key(TENANT))
    stream = EventStream(redis_client, maxlen=100_000)
    await _publish(stream, events, data_chars)
    pages, socket = PageLog(stream), Socket()
    conn = FeedConnection(
        conn_id="c1",
        tenant_id=TENANT,
        agent_id="agent-1",
        send=socket.send,
        events=pages,  # type: ignore[arg-type]  # duck-typed: the real stream underneath
        metrics=RealtimeMetrics(new_registry()),
        window=LatencyWindow(),
        record=lambda tenant, event, latency: None,
        max_queue=10_000,
    )
    conn.set_cursor("0-0")
    assert await conn.replay() == events
    return pages, socket


async def test_large_events_are_read_in_pages_of_bounded_size(redis_client: Redis) -> None:
    # 600 events of 60 KB: one 500-entry page used to hold about 30 MB.
    pages, socket = await _replay(redis_client, 600, 60_000)
    assert socket.events() == [f"e{i}" for i in range(600)]
    largest = max(chars for _, chars in pages.pages)
    assert largest <= REPLAY_PAGE_CHARS + 61_000, pages.pages


async def test_small_events_still_come_hundreds_per_page(redis_client: Redis) -> None:
    pages, socket = await _replay(redis_client, 1200, 100)
    assert socket.events() == [f"e{i}" for i in range(1200)]
    assert max(entries for entries, _ in pages.pages) == 500
    assert len(pages.pages) <= 5, pages.pages
