"""Several replicas on one Redis: fan-out, restarts and the cross-replica cap."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from services.common.scoring import LeadFeatures
from services.realtime.config import RealtimeSettings
from tests.services.realtime.conftest import (
    Replica,
    event_body,
    open_feed,
    post_event,
    wait_until,
)

pytestmark = pytest.mark.integration

StartReplica = Callable[..., Awaitable[Replica]]


async def test_event_ingested_on_one_replica_reaches_sockets_on_another(
    replicas: StartReplica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
) -> None:
    ingest, feed_replica = await replicas(), await replicas()
    token = make_token("tenant-a")
    async with open_feed(feed_replica, token) as feed:
        ack = await post_event(http, ingest, token, event_body(sample_leads[0]))
        frame = await feed.next_event()
    assert frame["event_id"] == ack["event_id"]


async def test_events_during_a_replica_restart_reach_the_client_on_another(
    replicas: StartReplica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
) -> None:
    first, second = await replicas(), await replicas()
    token = make_token("tenant-a")
    async with open_feed(first, token) as feed:
        await post_event(http, second, token, event_body(sample_leads[0]))
        last = await feed.next_event()
        await first.stop()
        with pytest.raises(ConnectionClosed):
            await feed.until_closed()
    missed = [
        await post_event(http, second, token, event_body(lead, lead_id=f"during-{i}"))
        for i, lead in enumerate(sample_leads[1:4])
    ]
    async with open_feed(second, token, last_event_id=last["stream_id"]) as resumed:
        pass
    assert [f["event_id"] for f in resumed.replayed] == [a["event_id"] for a in missed]


async def test_tenant_cap_counts_sockets_on_every_replica(
    replicas: StartReplica,
    realtime_settings: RealtimeSettings,
    make_token: Callable[..., str],
) -> None:
    settings = realtime_settings.model_copy(update={"ws_max_connections_per_tenant": 2})
    first, second = await replicas(settings), await replicas(settings)
    token = make_token("tenant-a")
    async with open_feed(first, token), open_feed(first, token):
        conn: Any = await connect(
            second.ws, additional_headers={"Authorization": f"Bearer {token}"}
        )
        async with conn:
            await conn.wait_closed()
    assert conn.close_code == 1013
    assert conn.close_reason == "tenant connection limit 2 reached"


async def test_one_agent_cannot_take_every_slot_of_its_tenant(
    replicas: StartReplica,
    realtime_settings: RealtimeSettings,
    make_token: Callable[..., str],
) -> None:
    # One agent's token (a script, a leaked token, a reconnect loop) used to
    # fill the tenant's cap and lock every colleague out of the feed.
    settings = realtime_settings.model_copy(
        update={"ws_max_connections_per_tenant": 4, "ws_max_connections_per_subject": 2}
    )
    first, second = await replicas(settings), await replicas(settings)
    greedy, colleague = make_token("tenant-a", "agent-1"), make_token("tenant-a", "agent-2")
    async with open_feed(first, greedy), open_feed(second, greedy):
        conn: Any = await connect(
            second.ws, additional_headers={"Authorization": f"Bearer {greedy}"}
        )
        async with conn:
            await conn.wait_closed()
        async with open_feed(first, colleague) as admitted:
            assert admitted.ready["tenant_id"] == "tenant-a"
    assert conn.close_code == 1013
    assert conn.close_reason == "connection limit 2 per agent reached"
    failures = second.registry.get_sample_value(
        "websocket_connection_failures_total", {"reason": "subject_limit"}
    )
    assert failures == 1


async def test_closed_sockets_free_their_slots(
    replicas: StartReplica,
    realtime_settings: RealtimeSettings,
    make_token: Callable[..., str],
) -> None:
    settings = realtime_settings.model_copy(update={"ws_max_connections_per_tenant": 1})
    replica = await replicas(settings)
    token = make_token("tenant-a")
    async with open_feed(replica, token):
        pass
    redis = replica.app.state.redis

    async def slot_released() -> bool:
        return await redis.zcard("tenant:tenant-a:ws:connections") == 0

    # The server frees the slot after the close handshake the client waited for.
    await wait_until(slot_released)
    async with open_feed(replica, token) as again:
        assert again.ready["tenant_id"] == "tenant-a"
