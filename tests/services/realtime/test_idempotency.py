"""``Idempotency-Key`` on the CRM webhooks: a retried request stores nothing twice."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from services.common.database import Database
from services.common.scoring import LeadFeatures
from tests.services.realtime.conftest import Replica, event_body

pytestmark = pytest.mark.integration


async def _count(owner_db: Database, table: str = "realtime_intelligence_events") -> int:
    async with owner_db.unscoped() as conn:
        count: int = await conn.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608 - fixed names
        return count


def _post(
    http: httpx.AsyncClient, replica: Replica, token: str, body: bytes, key: str, path: str = ""
) -> Any:
    return http.post(
        f"{replica.http}/v1/leads/events{path}",
        content=body,
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Idempotency-Key": key,
        },
    )


@pytest.mark.parametrize("path", ["", "/batch"])
async def test_a_retry_gets_the_first_answer_and_stores_nothing_twice(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
    owner_db: Database,
    path: str,
) -> None:
    token = make_token("tenant-a")
    event = event_body(sample_leads[0])
    body = orjson.dumps({"events": [event, event_body(sample_leads[1])]} if path else event)
    first = await _post(http, replica, token, body, "retry-1", path)
    second = await _post(http, replica, token, body, "retry-1", path)
    assert first.status_code == second.status_code == 202
    assert second.json() == first.json()
    assert await _count(owner_db) == (2 if path else 1)
    assert await _count(owner_db, "realtime_idempotency_keys") == 1


async def test_concurrent_requests_with_one_key_store_once(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
    owner_db: Database,
) -> None:
    token = make_token("tenant-a")
    body = orjson.dumps(event_body(sample_leads[0]))
    answers = await asyncio.gather(*(_post(http, replica, token, body, "race") for _ in range(8)))
    assert {a.status_code for a in answers} == {202}
    assert len({a.json()["event_id"] for a in answers}) == 1
    assert await _count(owner_db) == 1


async def test_the_same_key_with_another_body_is_422(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
    owner_db: Database,
) -> None:
    token = make_token("tenant-a")
    first = await _post(http, replica, token, orjson.dumps(event_body(sample_leads[0])), "k")
    other = await _post(http, replica, token, orjson.dumps(event_body(sample_leads[1])), "k")
    assert first.status_code == 202
    assert other.status_code == 422
    assert other.json()["reason"] == "idempotency_key_reused"
    assert await _count(owner_db) == 1


async def test_keys_are_scoped_per_tenant(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
    owner_db: Database,
) -> None:
    body = orjson.dumps(event_body(sample_leads[0]))
    a = await _post(http, replica, make_token("tenant-a"), body, "shared")
    b = await _post(http, replica, make_token("tenant-b"), body, "shared")
    assert a.status_code == b.status_code == 202
    assert a.json()["event_id"] != b.json()["event_id"]
    assert await _count(owner_db) == 2


async def test_an_expired_key_is_a_new_request(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
    owner_db: Database,
) -> None:
    token = make_token("tenant-a")
    body = orjson.dumps(event_body(sample_leads[0]))
    first = await _post(http, replica, token, body, "old")
    async with owner_db.unscoped() as conn:
        await conn.execute(
            "UPDATE realtime_idempotency_keys SET expires_at = now() - interval '1 second'"
        )
    again = await _post(http, replica, token, body, "old")
    assert again.status_code == 202
    assert again.json()["event_id"] != first.json()["event_id"]
    assert await _count(owner_db) == 2
    assert await _count(owner_db, "realtime_idempotency_keys") == 1


@pytest.mark.parametrize("key", ["", "spaced key", "x" * 256, "caf\u00e9"])
async def test_a_malformed_key_is_422(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
    key: str,
) -> None:
    response = await http.post(
        f"{replica.http}/v1/leads/events",
        content=orjson.dumps(event_body(sample_leads[0])),
        headers=[
            ("Authorization", f"Bearer {make_token('tenant-a')}"),
            ("Idempotency-Key", key.encode("latin-1")),
        ],  # type: ignore[arg-type]
    )
    assert response.status_code == 422
    assert response.json()["detail"].startswith("header.Idempotency-Key")


@pytest.mark.parametrize("path", ["", "/batch"])
async def test_two_keys_on_one_request_are_400_and_nothing_is_stored(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
    owner_db: Database,
    path: str,
) -> None:
    """The route read the first copy and said nothing of the second: a retry carrying
    only the second key stored the events again."""
    event = event_body(sample_leads[0])
    body = orjson.dumps({"events": [event]} if path else event)
    token = make_token("tenant-a")
    both = await http.post(
        f"{replica.http}/v1/leads/events{path}",
        content=body,
        headers=[
            ("Authorization", f"Bearer {token}"),
            ("Idempotency-Key", "first"),
            ("Idempotency-Key", "second"),
        ],
    )
    assert both.status_code == 400
    assert both.json() == {
        "detail": "send the idempotency-key header once",
        "reason": "repeated_header",
    }
    assert await _count(owner_db) == 0
    assert await _count(owner_db, "realtime_idempotency_keys") == 0
