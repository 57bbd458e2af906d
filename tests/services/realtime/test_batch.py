"""The batch webhook: all events stored together or none, every failure a 4xx with a reason."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from services.common.database import Database
from services.common.scoring import LeadFeatures
from services.realtime.config import RealtimeSettings
from services.realtime.ingest import MAX_GROUP
from tests.services.realtime.conftest import Replica, event_body, open_feed
from tests.services.realtime.test_auth import forged_token

pytestmark = pytest.mark.integration

BATCH = "/v1/leads/events/batch"


def batch_body(leads: list[LeadFeatures], marker: str, **kwargs: Any) -> dict[str, Any]:
    """A batch whose events all carry ``marker`` as lead id prefix."""
    return {
        "events": [
            event_body(lead, lead_id=f"{marker}-{index}", **kwargs)
            for index, lead in enumerate(leads)
        ]
    }


async def post_batch(
    http: httpx.AsyncClient, replica: Replica, token: str, **kwargs: Any
) -> httpx.Response:
    return await http.post(
        f"{replica.http}{BATCH}", headers={"Authorization": f"Bearer {token}"}, **kwargs
    )


async def stored(db: Database, tenant_id: str, marker: str) -> list[dict[str, Any]]:
    """Rows of ``tenant_id`` whose lead id starts with ``marker``, with their transaction."""
    async with db.tenant(tenant_id) as conn:
        rows = await conn.fetch(
            "SELECT event_id::text, lead_id, xmin::text AS txid FROM realtime_intelligence_events "
            "WHERE lead_id LIKE $1 ORDER BY lead_id",
            f"{marker}-%",
        )
    return [dict(row) for row in rows]


async def test_a_batch_is_acknowledged_in_order_stored_and_delivered(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
    db: Database,
) -> None:
    marker = uuid.uuid4().hex
    body = batch_body(sample_leads[:3], marker, agent_id="agent-7")
    async with open_feed(replica, make_token("tenant-a", subject="agent-7")) as feed:
        response = await post_batch(http, replica, make_token("tenant-a"), json=body)
        frames = await feed.events(3)
    assert response.status_code == 202, response.text
    acks = response.json()["events"]
    assert len({ack["event_id"] for ack in acks}) == 3
    assert len({ack["accepted_at"] for ack in acks}) == 1
    assert {ack["delivery"] for ack in acks} == {"published"}
    assert [f["event_id"] for f in frames] == [ack["event_id"] for ack in acks]
    assert [f["lead_id"] for f in frames] == [f"{marker}-{n}" for n in range(3)]
    rows = await stored(db, "tenant-a", marker)
    assert [row["event_id"] for row in rows] == [ack["event_id"] for ack in acks]
    assert len({row["txid"] for row in rows}) == 1
    assert await stored(db, "tenant-b", marker) == []


async def test_one_invalid_event_refuses_the_whole_batch_naming_its_index(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
    db: Database,
) -> None:
    marker = uuid.uuid4().hex
    body = batch_body(sample_leads[:3], marker)
    body["events"][1]["lead"]["email_opens"] = -3
    response = await post_batch(http, replica, make_token("tenant-a"), json=body)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.events.1.lead.email_opens"
    assert await stored(db, "tenant-a", marker) == []


async def test_a_tenant_inside_an_event_is_refused_not_trusted(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
    db: Database,
) -> None:
    marker = uuid.uuid4().hex
    body = batch_body(sample_leads[:2], marker)
    body["events"][0]["tenant_id"] = "tenant-b"
    response = await post_batch(http, replica, make_token("tenant-a"), json=body)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.events.0.tenant_id"
    assert await stored(db, "tenant-b", marker) == []
    assert await stored(db, "tenant-a", marker) == []


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b'{"events": []}', "at least 1"), (b'{"events": [', "json"), (b"", "empty")],
)
async def test_empty_or_malformed_batch_is_422(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    content: bytes,
    problem: str,
) -> None:
    response = await post_batch(http, replica, make_token("tenant-a"), content=content)
    assert response.status_code == 422
    assert problem in response.text.lower()


async def test_more_events_than_allowed_is_422_saying_how_to_fix_it(
    replicas: Callable[..., Any],
    realtime_settings: RealtimeSettings,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
    db: Database,
) -> None:
    replica = await replicas(realtime_settings.model_copy(update={"realtime_max_batch_events": 2}))
    marker = uuid.uuid4().hex
    response = await post_batch(
        http, replica, make_token("tenant-a"), json=batch_body(sample_leads[:3], marker)
    )
    assert response.status_code == 422
    detail = response.json()["errors"][0]
    assert detail["field"] == "body.events"
    assert "REALTIME_MAX_BATCH_EVENTS" in detail["problem"]
    assert "split" in detail["problem"]
    assert await stored(db, "tenant-a", marker) == []


async def test_oversized_batch_is_413(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
) -> None:
    limit = replica.app.state.settings.realtime_max_batch_bytes
    body = batch_body(sample_leads[:1], "big", data={"blob": "x" * limit})
    response = await post_batch(http, replica, make_token("tenant-a"), json=body)
    assert response.status_code == 413
    assert f"{limit} bytes (REALTIME_MAX_BATCH_BYTES)" in response.json()["detail"]


@pytest.mark.parametrize(
    ("credential", "reason"),
    [("missing", "missing_token"), ("expired", "expired_token"), ("forged", "bad_signature")],
)
async def test_batch_requires_a_valid_token(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
    db: Database,
    credential: str,
    reason: str,
) -> None:
    tokens = {
        "expired": make_token("tenant-a", now=time.time() - 7200),
        "forged": forged_token("tenant-a"),
    }
    headers = {"Authorization": f"Bearer {tokens[credential]}"} if credential in tokens else {}
    marker = uuid.uuid4().hex
    response = await http.post(
        f"{replica.http}{BATCH}", json=batch_body(sample_leads[:1], marker), headers=headers
    )
    assert (response.status_code, response.json()["reason"]) == (401, reason)
    assert await stored(db, "tenant-a", marker) == []


async def test_concurrent_batches_are_each_stored_in_one_transaction(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
    db: Database,
) -> None:
    # Together more than one group holds, so the ingest must cut between
    # batches, never inside one.
    size = 100
    count = MAX_GROUP // size + 3
    markers = [uuid.uuid4().hex for _ in range(count)]
    token = make_token("tenant-a")
    leads = (sample_leads * (size // len(sample_leads) + 1))[:size]
    responses = await asyncio.gather(
        *(post_batch(http, replica, token, json=batch_body(leads, marker)) for marker in markers)
    )
    assert [r.status_code for r in responses] == [202] * count
    transactions = set()
    for marker in markers:
        rows = await stored(db, "tenant-a", marker)
        assert len(rows) == size
        assert len({row["txid"] for row in rows}) == 1, marker
        transactions.add(rows[0]["txid"])
    assert len(transactions) >= 2


async def test_a_batch_is_not_acknowledged_when_it_cannot_be_stored(
    replica_without_postgres: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
) -> None:
    replica = replica_without_postgres
    response = await post_batch(
        http, replica, make_token("tenant-a"), json=batch_body(sample_leads[:2], "down")
    )
    assert response.status_code == 503
    assert response.json()["reason"] == "dependency_unavailable"


async def test_an_event_over_the_single_event_limit_is_422_in_a_batch_too(
    replica: Replica,
    sample_leads: list[LeadFeatures],
    make_token: Callable[..., str],
    http: httpx.AsyncClient,
    db: Database,
) -> None:
    # Within REALTIME_MAX_BATCH_BYTES, yet one event 4 times what the single
    # route takes: it would sit in the stream and go to every socket as is.
    limit = replica.app.state.settings.realtime_max_event_bytes
    token = make_token("tenant-a")
    marker = uuid.uuid4().hex
    body = batch_body(sample_leads[:3], marker)
    body["events"][1]["data"] = {"blob": "x" * (4 * limit)}
    response = await post_batch(http, replica, token, json=body)
    assert response.status_code == 422, response.text
    detail = response.json()["errors"][0]
    assert detail["field"] == "body.events.1"
    assert "REALTIME_MAX_EVENT_BYTES" in detail["problem"]
    assert await stored(db, "tenant-a", marker) == []
    # What the single-event route accepts, a batch accepts: padded to its limit.
    fits = batch_body(sample_leads[:2], marker)
    fits["events"][0]["data"] = {"blob": "x" * (limit - 700)}
    single = await http.post(
        f"{replica.http}/v1/leads/events",
        json=fits["events"][0],
        headers={"Authorization": f"Bearer {token}"},
    )
    assert single.status_code == 202, single.text
    accepted = await post_batch(http, replica, token, json=fits)
    assert accepted.status_code == 202, accepted.text
