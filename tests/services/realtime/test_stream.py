"""`EventStream` against a real Redis: what the ingest's publication writes."""

from __future__ import annotations

import pytest

from services.common.redis import Redis
from services.realtime.frames import FeedEntry, stream_fields
from services.realtime.stream import EventStream, PublishItem, stream_key

pytestmark = pytest.mark.integration


def _item(n: int, agent_id: str | None = "agent-1") -> PublishItem:
    return PublishItem(
        event_id=f"00000000-0000-0000-0000-{n:012d}",
        agent_id=agent_id,
        accepted_at=1_700_000_000.0 + n / 1000,
        body=b'{"seq": %d}' % n,
    )


async def test_publish_many_appends_in_order_with_the_fields_of_a_single_publish(
    redis_client: Redis,
) -> None:
    events = EventStream(redis_client, maxlen=1000)
    items = [_item(n, agent_id=None if n == 2 else f"agent-{n}") for n in range(5)]
    ids = await events.publish_many("tenant-a", items)
    single = await events.publish_many("tenant-a", [_item(5)])

    entries = await redis_client.xrange(stream_key("tenant-a"))
    assert [sid.decode() for sid, _ in entries] == [*ids, *single]
    for (_, fields), item in zip(entries, [*items, _item(5)], strict=True):
        expected = stream_fields(
            event_id=item.event_id,
            agent_id=item.agent_id,
            accepted_at=item.accepted_at,
            body=item.body,
        )
        assert {k.decode(): v for k, v in fields.items()} == {
            k: v if isinstance(v, bytes) else v.encode() for k, v in expected.items()
        }
    # What a replica's reader makes of them: agent, time and body survive.
    parsed = [FeedEntry.from_stream(sid, fields) for sid, fields in entries]
    assert [entry.event_id for entry in parsed] == [item.event_id for item in [*items, _item(5)]]
    assert parsed[2].agent_id is None
    assert parsed[3].agent_id == "agent-3"
    assert parsed[4].accepted_at == items[4].accepted_at
    # Another tenant's stream is untouched.
    assert await redis_client.xlen(stream_key("tenant-b")) == 0


async def test_publish_many_keeps_the_stream_bounded(redis_client: Redis) -> None:
    events = EventStream(redis_client, maxlen=100)
    for start in range(0, 2000, 50):
        await events.publish_many("tenant-a", [_item(n) for n in range(start, start + 50)])
    # MAXLEN ~ trims whole nodes: at least maxlen entries stay, far fewer than published.
    assert 100 <= await redis_client.xlen(stream_key("tenant-a")) < 1000


async def test_publish_many_survives_a_redis_that_forgot_its_scripts(redis_client: Redis) -> None:
    # A restarted or failed-over Redis has an empty script cache.
    events = EventStream(redis_client, maxlen=1000)
    await events.publish_many("tenant-a", [_item(0), _item(1)])
    await redis_client.script_flush()
    ids = await events.publish_many("tenant-a", [_item(2), _item(3)])
    assert len(ids) == 2
    assert await redis_client.xlen(stream_key("tenant-a")) == 4
