"""The webhook: malformed input is a 4xx with a reason; accepted events are stored."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from services.common.database import Database
from services.common.scoring import LeadFeatures
from tests.services.openapi_fuzz import fuzz_operations
from tests.services.realtime.conftest import Replica, event_body, post_event

pytestmark = pytest.mark.integration


async def _post(
    http: httpx.AsyncClient, replica: Replica, token: str, **kwargs: Any
) -> httpx.Response:
    return await http.post(
        f"{replica.http}/v1/leads/events", headers={"Authorization": f"Bearer {token}"}, **kwargs
    )


async def test_malformed_json_is_422_with_reason(
    replica: Replica, http: httpx.AsyncClient, make_token: Callable[..., str]
) -> None:
    response = await _post(http, replica, make_token("tenant-a"), content=b'{"lead_id": ')
    assert response.status_code == 422
    assert response.json()["reason"] == "validation_error"
    assert "json" in response.json()["detail"].lower()


async def test_empty_body_is_422_with_reason(
    replica: Replica, http: httpx.AsyncClient, make_token: Callable[..., str]
) -> None:
    response = await _post(http, replica, make_token("tenant-a"), content=b"")
    assert response.status_code == 422
    assert "empty" in response.json()["detail"]


async def test_invalid_lead_field_is_422_naming_the_field(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
) -> None:
    body = event_body(sample_leads[0])
    body["lead"]["email_opens"] = -3
    response = await _post(http, replica, make_token("tenant-a"), json=body)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.lead.email_opens"


async def test_missing_field_is_422_naming_the_field(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
) -> None:
    body = event_body(sample_leads[0])
    del body["event_type"]
    response = await _post(http, replica, make_token("tenant-a"), json=body)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.event_type"


async def test_tenant_in_body_is_refused_not_trusted(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
) -> None:
    body = {**event_body(sample_leads[0]), "tenant_id": "tenant-b"}
    response = await _post(http, replica, make_token("tenant-a"), json=body)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "body.tenant_id"


async def test_oversized_body_is_413(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
) -> None:
    limit = replica.app.state.settings.realtime_max_event_bytes
    body = event_body(sample_leads[0], data={"blob": "x" * limit})
    response = await _post(http, replica, make_token("tenant-a"), json=body)
    assert response.status_code == 413
    assert str(limit) in response.json()["detail"]


async def test_accepted_event_is_stored_for_its_tenant_only(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
    db: Database,
) -> None:
    ack = await post_event(
        http, replica, make_token("tenant-a"), event_body(sample_leads[0], agent_id="agent-3")
    )
    query = (
        "SELECT lead_id, event_type, agent_id, intelligence_data FROM realtime_intelligence_events "
        "WHERE event_id = $1::uuid"
    )
    async with db.tenant("tenant-a") as conn:
        row = await conn.fetchrow(query, ack["event_id"])
    async with db.tenant("tenant-b") as conn:
        hidden = await conn.fetchrow(query, ack["event_id"])
    assert row is not None
    assert (row["lead_id"], row["event_type"], row["agent_id"]) == (
        "lead-1",
        "lead.updated",
        "agent-3",
    )
    assert row["intelligence_data"]["score"] == ack["score"]
    assert row["intelligence_data"]["lead"] == sample_leads[0].model_dump()
    assert hidden is None


async def test_published_event_gets_its_stream_id_recorded(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
    db: Database,
) -> None:
    ack = await post_event(http, replica, make_token("tenant-a"), event_body(sample_leads[0]))
    # The mark is written in a batch shortly after the acknowledgement.
    await replica.app.state.realtime.writer.flush()
    async with db.tenant("tenant-a") as conn:
        row = await conn.fetchrow(
            "SELECT stream_id, published_at FROM realtime_intelligence_events "
            "WHERE event_id = $1::uuid",
            ack["event_id"],
        )
    assert row["stream_id"] == ack["stream_id"]
    assert row["published_at"] is not None


async def test_event_is_not_acknowledged_when_it_cannot_be_stored(
    replica_without_postgres: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
) -> None:
    replica = replica_without_postgres
    response = await _post(http, replica, make_token("tenant-a"), json=event_body(sample_leads[0]))
    assert response.status_code == 503
    assert response.json()["reason"] == "dependency_unavailable"


async def test_no_request_the_document_describes_gets_a_server_error(
    replica: Replica, make_token: Callable[..., str]
) -> None:
    """Valid and invalid requests generated from websocket-manager's document, over
    real HTTP: each answered below 500, every refusal in the ``{detail, reason}`` shape."""
    async with httpx.AsyncClient(base_url=replica.http, timeout=30) as client:
        openapi = (await client.get("/openapi.json")).json()
        report = await fuzz_operations(client, openapi, token=make_token("tenant-a"))
    assert report.findings == []
    for operation in ("POST /v1/leads/events", "POST /v1/leads/events/batch"):
        assert report.answered(operation, 2) > 0, report.statuses  # handlers reached


@pytest.mark.parametrize(
    ("field", "value"),
    [
        # No token subject can be "bob\n" (minting refuses it): the event was
        # acknowledged 202 and delivered to no socket.
        ("agent_id", "bob\n"),
        ("agent_id", "bob smith"),
        ("lead_id", "lead 1"),
        ("lead_id", "lead-1\n"),
        ("lead_id", "x" * 256),
    ],
)
async def test_an_id_outside_its_format_is_422_and_stores_nothing(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
    owner_db: Database,
    field: str,
    value: str,
) -> None:
    """Lead and agent ids are read in the formats churn and coaching read them in
    (LeadId, AgentId): the webhook took free text."""
    body = {**event_body(sample_leads[0]), field: value}
    token = make_token("tenant-a")
    for path, sent in (("events", body), ("events/batch", {"events": [body]})):
        response = await http.post(
            f"{replica.http}/v1/leads/{path}",
            json=sent,
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 422, (path, response.text)
        answer = response.json()
        assert answer["reason"] == "validation_error"
        assert field in answer["detail"]
        assert "characters from A-Z a-z 0-9 _ . : @ -" in answer["detail"]
    async with owner_db.unscoped() as conn:
        assert await conn.fetchval("SELECT count(*) FROM realtime_intelligence_events") == 0


async def test_an_address_is_an_agent_id_as_in_churn_and_coaching(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
) -> None:
    body = event_body(sample_leads[0], lead_id="crm:lead@42", agent_id="jo@example.com")
    await post_event(http, replica, make_token("tenant-a"), body)
