"""Delivery latency in the histogram and the table, metrics, /health/websocket."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from services.common.database import Database
from services.common.scoring import LeadFeatures
from tests.services.realtime.conftest import (
    Replica,
    event_body,
    open_feed,
    post_event,
    wait_until,
)

pytestmark = pytest.mark.integration


async def test_delivery_latency_is_observed_in_the_histogram(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
) -> None:
    token = make_token("tenant-a")
    async with open_feed(replica, token) as feed:
        await post_event(http, replica, token, event_body(sample_leads[0]))
        await feed.next_event()
    labels = {"delivery": "live"}
    count = replica.registry.get_sample_value("websocket_message_latency_seconds_count", labels)
    total = replica.registry.get_sample_value("websocket_message_latency_seconds_sum", labels)
    assert count == 1.0
    assert total is not None
    assert total > 0.0


async def test_histogram_is_exposed_at_metrics(replica: Replica, http: httpx.AsyncClient) -> None:
    response = await http.get(f"{replica.http}/metrics")
    assert response.status_code == 200
    assert "websocket_message_latency_seconds_bucket" in response.text
    assert 'le="0.0005"' in response.text


async def test_first_delivery_latency_is_stored_with_the_event(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
    db: Database,
) -> None:
    token = make_token("tenant-a")
    async with open_feed(replica, token) as feed, open_feed(replica, token) as second:
        ack = await post_event(http, replica, token, event_body(sample_leads[0]))
        await feed.next_event()
        await second.next_event()

    async def latency_recorded() -> bool:
        async with db.tenant("tenant-a") as conn:
            value = await conn.fetchval(
                "SELECT websocket_latency_seconds FROM realtime_intelligence_events "
                "WHERE event_id = $1::uuid",
                ack["event_id"],
            )
        return value is not None and value > 0.0

    await wait_until(latency_recorded)


async def test_health_websocket_reports_live_values(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
) -> None:
    token = make_token("tenant-a")
    async with open_feed(replica, token) as feed:
        await post_event(http, replica, token, event_body(sample_leads[0]))
        await feed.next_event()
        response = await http.get(f"{replica.http}/health/websocket")
    body = response.json()
    assert response.status_code == 200
    assert body["active_connections"] == 1
    assert body["latency_samples"] == 1
    assert body["p95_latency_ms"] is not None
    assert body["p95_latency_ms"] > 0
    assert body["avg_latency_ms"] is not None
    assert body["target_latency_ms"] == 50
    assert body["stream_reader"] == "up"
    assert body["status"] in {"healthy", "degraded"}


async def test_ingest_and_frames_are_counted(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
) -> None:
    token = make_token("tenant-a")
    async with open_feed(replica, token) as feed:
        await post_event(http, replica, token, event_body(sample_leads[0]))
        await feed.next_event()
    get = replica.registry.get_sample_value
    assert get("realtime_events_ingested_total", {"publish": "published"}) == 1.0
    assert get("websocket_frames_sent_total", {"type": "lead_event"}) == 1.0
    assert get("websocket_events_sent_total") == 1.0
    assert get("websocket_frames_sent_total", {"type": "control"}) == 1.0


async def test_refused_webhooks_are_counted_by_reason(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
) -> None:
    headers = {"Authorization": f"Bearer {make_token('tenant-a')}"}
    base = f"{replica.http}/v1/leads/events"
    limit = replica.app.state.settings.realtime_max_event_bytes
    await http.post(base, content=b'{"lead_id": ', headers=headers)
    await http.post(base, content=b"x" * (limit + 1), headers=headers)
    too_many = {"events": [event_body(sample_leads[0])] * 101}
    await http.post(f"{base}/batch", json=too_many, headers=headers)
    await http.post(f"{base}/batch", json={"events": []}, headers=headers)
    get = replica.registry.get_sample_value
    assert get("realtime_events_rejected_total", {"reason": "invalid"}) == 2.0
    assert get("realtime_events_rejected_total", {"reason": "too_large"}) == 1.0
    assert get("realtime_events_rejected_total", {"reason": "too_many_events"}) == 1.0


async def test_refused_connections_are_counted_by_reason(
    replica: Replica, make_token: Callable[..., str]
) -> None:
    with pytest.raises(InvalidStatus):
        async with connect(replica.ws):
            pass
    value = replica.registry.get_sample_value(
        "websocket_connections_rejected_total", {"reason": "auth"}
    )
    assert value == 1.0
