"""A resume replayed from Postgres is read a bounded page at a time, each sent before the next."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from services.common.database import Database
from services.common.scopes import FEED_READ
from services.realtime import store
from services.realtime.config import RealtimeSettings
from services.realtime.connections import REPLAY_PAGE_CHARS
from services.realtime.event_ids import new_event_id
from services.realtime.stream import stream_key
from tests.services.realtime.conftest import Replica, open_feed

pytestmark = pytest.mark.integration

TENANT = "tenant-a"
# About the ingest's largest event (REALTIME_MAX_EVENT_BYTES, 64 KiB): 150 of
# them are 9 MB, which one statement used to read and hold for the socket.
LARGE = 60_000
SMALL = 500
UNIFORM = [LARGE] * 150
# Pages are sized from the last one's characters per event: after small events
# a page of hundreds is asked for, and Postgres must cut it when large ones follow.
SMALL_THEN_LARGE = [SMALL] * 40 + [LARGE] * 110
# The first event of a page always comes, whatever its size, and a frame
# carries a little more than the stored document it is built from.
ONE_EVENT = 65_536


class PageLog:
    """The real `store.published_between`, with what each call returned and when."""

    def __init__(self, replica: Replica) -> None:
        self.replica = replica
        self.read = store.published_between
        # (events returned, their frames' characters, events sent before the call)
        self.pages: list[tuple[int, int, float]] = []

    async def __call__(self, conn: Any, **kwargs: Any) -> list[tuple[str, store.StoredEvent]]:
        sent = self.replica.registry.get_sample_value("websocket_events_sent_total") or 0.0
        rows = await self.read(conn, **kwargs)
        chars = sum(len(event.body()) for _, event in rows)
        self.pages.append((len(rows), chars, sent))
        return rows


async def _store_published(db: Database, sizes: list[int]) -> list[str]:
    """Store events of ``sizes`` characters of data, published; return their stream ids."""
    now = time.time()
    events = [
        store.NewEvent(
            event_id=new_event_id(),
            lead_id=f"lead-{number}",
            event_type="lead.updated",
            agent_id=None,
            document={
                "score": 0.5,
                "model_version": "test",
                "lead": {},
                "data": {"notes": "x" * size},
            },
            accepted_at=now,
        )
        for number, size in enumerate(sizes)
    ]
    for start in range(0, len(events), 25):
        await store.insert_events(db, tenant_id=TENANT, rows=events[start : start + 25])
    stream_ids = [f"{int(now * 1000) - len(events) + number}-0" for number in range(len(events))]
    async with db.tenant(TENANT) as conn:
        await store.mark_published(
            conn, {event.event_id: sid for event, sid in zip(events, stream_ids, strict=True)}
        )
    return stream_ids


@pytest.mark.parametrize(
    ("sizes", "limit"),
    [(UNIFORM, 10_000), (UNIFORM, len(UNIFORM)), (UNIFORM, 50), (SMALL_THEN_LARGE, 10_000)],
    ids=["default-limit", "limit-equal", "limit-below", "small-then-large"],
)
async def test_a_replay_from_postgres_holds_one_bounded_page_at_a_time(
    replicas: Callable[..., Awaitable[Replica]],
    realtime_settings: RealtimeSettings,
    db: Database,
    make_token: Callable[..., str],
    monkeypatch: pytest.MonkeyPatch,
    sizes: list[int],
    limit: int,
) -> None:
    """With the stream lost, ``last_event_id=0-0`` read every missed event
    (up to REALTIME_DB_REPLAY_LIMIT, 10,000) in one statement and built all
    their frames before sending the first: +26 MB per socket at 60 KB events.
    Pages keep the order and the limit: exactly ``limit`` events, then
    ``replay_truncated`` when more were missed."""
    replica = await replicas(
        realtime_settings.model_copy(update={"realtime_db_replay_limit": limit})
    )
    stream_ids = await _store_published(db, sizes)
    # Redis lost the stream: everything comes from Postgres.
    await replica.app.state.redis.delete(stream_key(TENANT))
    log = PageLog(replica)
    monkeypatch.setattr(store, "published_between", log)

    token = make_token(TENANT, scopes=(FEED_READ,))
    async with open_feed(replica, token, last_event_id="0-0") as feed:
        pass

    replayed = min(limit, len(sizes))
    assert [event["stream_id"] for event in feed.replayed] == stream_ids[:replayed]
    assert feed.ready["replayed"] == replayed
    notices = [frame for frame in feed.before_ready if frame["type"] == "replay_truncated"]
    assert len(notices) == (1 if limit < len(sizes) else 0)
    assert len(log.pages) >= 2
    returned = 0
    for events, chars, sent_before in log.pages:
        assert chars <= REPLAY_PAGE_CHARS + ONE_EVENT
        # Each page was sent before the next one was read.
        assert sent_before == returned
        returned += events
    # One row beyond the limit at most, to know that more were missed.
    assert returned <= replayed + 1
