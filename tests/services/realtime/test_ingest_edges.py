"""Input that used to pass validation and crash storage, and one bad request among many."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio

from services.common.database import Database
from services.common.scoring import LeadFeatures
from tests.services.realtime.conftest import Replica, event_body

pytestmark = pytest.mark.integration


def _bad_bodies(lead: LeadFeatures) -> dict[str, bytes]:
    good = event_body(lead)
    raw = orjson.dumps(good)

    def with_data(data_json: bytes) -> bytes:
        return raw.replace(b'"data":{}', b'"data":' + data_json)

    return {
        "nul in lead_id": raw.replace(b'"lead-1"', b'"lead\\u0000-1"'),
        "nul in agent_id": raw.replace(b'"lead_id"', b'"agent_id":"a\\u0000","lead_id"'),
        "nul in a data value": with_data(b'{"note":"a\\u0000b"}'),
        "nul in a data key": with_data(b'{"no\\u0000te":1}'),
        "nul deep in data": with_data(b'{"a":[{"b":["\\u0000"]}]}'),
        "integer beyond 64 bits": with_data(b'{"n":18446744073709551616}'),
        "negative integer beyond 64 bits": with_data(b'{"n":-9223372036854775809}'),
        "1e400": with_data(b'{"x":1e400}'),
        "-1e400 in a list": with_data(b'{"x":[1,-1e400]}'),
        "too deep": with_data(b'{"a":' * 40 + b"1" + b"}" * 40),
    }


@pytest.mark.parametrize(
    "case",
    [
        "nul in lead_id",
        "nul in agent_id",
        "nul in a data value",
        "nul in a data key",
        "nul deep in data",
        "integer beyond 64 bits",
        "negative integer beyond 64 bits",
        "1e400",
        "-1e400 in a list",
        "too deep",
    ],
)
async def test_unstorable_input_is_422_with_a_reason_and_stores_nothing(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
    owner_db: Database,
    case: str,
) -> None:
    body = _bad_bodies(sample_leads[0])[case]
    token = make_token("tenant-a")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    for path, content in (
        ("/v1/leads/events", body),
        ("/v1/leads/events/batch", b'{"events":[' + body + b"]}"),
    ):
        response = await http.post(f"{replica.http}{path}", content=content, headers=headers)
        assert response.status_code == 422, (case, path, response.text)
        answer = response.json()
        assert answer["reason"] == "validation_error"
        assert answer["detail"].startswith("body.")
    async with owner_db.unscoped() as conn:
        assert await conn.fetchval("SELECT count(*) FROM realtime_intelligence_events") == 0


async def test_five_bad_requests_do_not_fail_ninety_good_ones(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
    owner_db: Database,
) -> None:
    token = make_token("tenant-a")
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    bad = list(_bad_bodies(sample_leads[0]).values())[:5]
    good = [orjson.dumps(event_body(sample_leads[i % 50], lead_id=f"g-{i}")) for i in range(90)]
    bodies = good[:45] + bad + good[45:]
    url = f"{replica.http}/v1/leads/events"
    responses = await asyncio.gather(*(http.post(url, content=b, headers=headers) for b in bodies))
    statuses = [r.status_code for r in responses]
    assert statuses == [202] * 45 + [422] * 5 + [202] * 45
    async with owner_db.unscoped() as conn:
        assert await conn.fetchval("SELECT count(*) FROM realtime_intelligence_events") == 90


POISON_TRIGGER = """
CREATE FUNCTION test_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.lead_id LIKE 'poison%' THEN
    RAISE EXCEPTION 'value refused by the database' USING ERRCODE = '22023';
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER test_poison BEFORE INSERT ON realtime_intelligence_events
FOR EACH ROW EXECUTE FUNCTION test_poison();
"""


@pytest_asyncio.fixture
async def poisoned_table(owner_db: Database) -> AsyncIterator[None]:
    """A trigger that refuses some rows as Postgres refuses data it cannot store.

    Stands for what validation cannot foresee (a database rule, an encoding
    edge): the ingest must isolate the request, whatever the cause.
    """
    async with owner_db.unscoped() as conn:
        await conn.execute(POISON_TRIGGER)
    try:
        yield
    finally:
        async with owner_db.unscoped() as conn:
            await conn.execute(
                "DROP TRIGGER test_poison ON realtime_intelligence_events; "
                "DROP FUNCTION test_poison()"
            )


async def test_a_request_the_database_refuses_fails_alone_in_its_group(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
    owner_db: Database,
    poisoned_table: None,
) -> None:
    headers = {"Authorization": f"Bearer {make_token('tenant-a')}"}
    url = f"{replica.http}/v1/leads/events"
    bodies: list[dict[str, Any]] = [
        event_body(sample_leads[i % 50], lead_id=("poison" if i % 20 == 7 else "ok") + f"-{i}")
        for i in range(100)
    ]
    # A batch holding one poisoned event is refused whole, and alone.
    batch = {"events": [event_body(sample_leads[0], lead_id=f"b-{i}") for i in range(3)]}
    batch["events"].append(event_body(sample_leads[1], lead_id="poison-in-batch"))
    requests = [http.post(url, json=body, headers=headers) for body in bodies]
    requests.append(http.post(f"{url}/batch", json=batch, headers=headers))
    responses = await asyncio.gather(*requests)
    for body, response in zip([*bodies, batch], responses, strict=True):
        poisoned = "events" in body or body["lead_id"].startswith("poison")
        if poisoned:
            assert response.status_code == 422, response.text
            assert response.json()["reason"] == "unstorable_input"
            assert "value refused by the database" in response.json()["detail"]
        else:
            assert response.status_code == 202, response.text
    async with owner_db.unscoped() as conn:
        stored = await conn.fetchval(
            "SELECT count(*) FROM realtime_intelligence_events WHERE lead_id LIKE 'ok-%'"
        )
        others = await conn.fetchval(
            "SELECT count(*) FROM realtime_intelligence_events WHERE lead_id NOT LIKE 'ok-%'"
        )
    assert (stored, others) == (95, 0)
