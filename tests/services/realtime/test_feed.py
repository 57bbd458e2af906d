"""The feed: live delivery, targeting, heartbeats, per-tenant caps."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from services.common.flags import FlagState, bucket, write_flag
from services.common.redis import Redis
from services.common.scoring import LeadFeatures
from services.realtime.routes.feed import FEED_FEATURE
from tests.services.realtime.conftest import Replica, event_body, open_feed, post_event

pytestmark = pytest.mark.integration


async def test_event_reaches_tenant_socket_with_its_fields(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
) -> None:
    token = make_token("tenant-a")
    async with open_feed(replica, token) as feed:
        ack = await post_event(http, replica, token, event_body(sample_leads[0], data={"k": 1}))
        frame = await feed.next_event()
    assert frame["event_id"] == ack["event_id"]
    assert frame["stream_id"] == ack["stream_id"]
    assert frame["accepted_at"] == ack["accepted_at"]
    assert frame["score"] == ack["score"]
    assert 0.0 <= frame["score"] <= 1.0
    assert (frame["lead_id"], frame["event_type"], frame["data"]) == (
        "lead-1",
        "lead.updated",
        {"k": 1},
    )
    assert ack["delivery"] == "published"


async def test_token_in_query_parameter_is_accepted(
    replica: Replica, make_token: Callable[..., str]
) -> None:
    async with open_feed(replica, make_token("tenant-a"), via_query=True) as feed:
        assert feed.ready["tenant_id"] == "tenant-a"


async def test_targeted_event_reaches_only_its_agent(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
) -> None:
    poster = make_token("tenant-a", subject="crm")
    async with (
        open_feed(replica, make_token("tenant-a", subject="agent-7")) as target,
        open_feed(replica, make_token("tenant-a", subject="agent-8")) as other,
    ):
        await post_event(http, replica, poster, event_body(sample_leads[0], agent_id="agent-7"))
        # A tenant-wide event after it: the other agent's first event must be this one.
        await post_event(http, replica, poster, event_body(sample_leads[1], lead_id="lead-2"))
        first_target = await target.next_event()
        first_other = await other.next_event()
    assert first_target["agent_id"] == "agent-7"
    assert first_other["lead_id"] == "lead-2"


async def test_heartbeats_arrive(replica: Replica, make_token: Callable[..., str]) -> None:
    async with open_feed(replica, make_token("tenant-a")) as feed:
        frame = await feed.frame()
    assert frame["type"] == "heartbeat"
    assert isinstance(frame["ts"], float)


async def test_connection_beyond_tenant_cap_is_refused_with_reason(
    replica: Replica, make_token: Callable[..., str]
) -> None:
    limit = replica.app.state.settings.ws_max_connections_per_tenant
    # Many agents fill the tenant (one agent alone stops at its own cap).
    per_subject = replica.app.state.settings.ws_max_connections_per_subject

    def headers(i: int) -> dict[str, str]:
        return {"Authorization": f"Bearer {make_token('tenant-a', f'agent-{i // per_subject}')}"}

    open_conns: list[Any] = []
    try:
        for i in range(limit):
            conn = await connect(replica.ws, additional_headers=headers(i))
            open_conns.append(conn)
            assert await conn.recv()  # the ready frame: admitted
        extra = await connect(replica.ws, additional_headers=headers(limit + per_subject))
        with pytest.raises(ConnectionClosed) as closed:
            await extra.recv()
    finally:
        for conn in open_conns:
            await conn.close()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1013
    assert closed.value.rcvd.reason == f"tenant connection limit {limit} reached"


async def test_cap_of_one_tenant_does_not_limit_another(
    replicas: Callable[..., Any], realtime_settings: Any, make_token: Callable[..., str]
) -> None:
    replica = await replicas(
        realtime_settings.model_copy(update={"ws_max_connections_per_tenant": 1})
    )
    async with (
        open_feed(replica, make_token("tenant-a")),
        open_feed(replica, make_token("tenant-b")) as other,
    ):
        assert other.ready["tenant_id"] == "tenant-b"


async def test_socket_whose_queue_overflows_still_gets_every_event_in_order(
    replicas: Callable[..., Any],
    realtime_settings: Any,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
) -> None:
    replica = await replicas(realtime_settings.model_copy(update={"ws_send_queue_size": 1}))
    token = make_token("tenant-a")
    async with open_feed(replica, token) as feed:
        acks = await asyncio.gather(
            *(
                post_event(http, replica, token, event_body(lead, lead_id=f"burst-{i}"))
                for i, lead in enumerate(sample_leads[:20])
            )
        )
        received = await feed.events(len(acks))
        # Anything sent twice would arrive before this marker event.
        marker = await post_event(http, replica, token, event_body(sample_leads[20]))
        after = await feed.next_event()
    in_stream_order = sorted(acks, key=lambda a: tuple(map(int, a["stream_id"].split("-"))))
    assert [f["event_id"] for f in received] == [a["event_id"] for a in in_stream_order]
    assert after["event_id"] == marker["event_id"]


async def test_only_tenants_inside_the_rollout_get_the_feed(
    replica: Replica, redis_client: Redis, make_token: Callable[..., str]
) -> None:
    inside = next(f"t-{i}" for i in range(1000) if bucket(FEED_FEATURE, f"t-{i}") < 1000)
    outside = next(f"t-{i}" for i in range(1000) if bucket(FEED_FEATURE, f"t-{i}") >= 1000)
    await write_flag(redis_client, FEED_FEATURE, FlagState(enabled=True, rollout_percentage=10))
    flags = replica.app.state.flags
    async with asyncio.timeout(5):
        while flags.state(FEED_FEATURE).rollout_percentage != 10:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    async with open_feed(replica, make_token(inside)) as feed:
        assert feed.ready["tenant_id"] == inside
    for tenant in (outside, inside):
        if tenant == inside:  # the kill switch (a rollback) refuses everyone
            await write_flag(
                redis_client, FEED_FEATURE, FlagState(enabled=False, rollout_percentage=10)
            )
            async with asyncio.timeout(5):
                while flags.is_enabled(FEED_FEATURE, inside):  # noqa: ASYNC110
                    await asyncio.sleep(0.01)
        headers = {"Authorization": f"Bearer {make_token(tenant)}"}
        with pytest.raises(InvalidStatus) as refused:
            async with connect(replica.ws, additional_headers=headers):
                pass
        assert refused.value.response.status_code == 403
        assert b"feature_disabled" in refused.value.response.body
    failures = replica.registry.get_sample_value(
        "websocket_connection_failures_total", {"reason": "feature_disabled"}
    )
    assert failures == 2
    # The decisions went through OpenFeature: the provider's hook counted them.
    evaluations = replica.registry.get_sample_value(
        "feature_flag_evaluations_total", {"feature": FEED_FEATURE, "reason": "SPLIT"}
    )
    assert evaluations == 2
