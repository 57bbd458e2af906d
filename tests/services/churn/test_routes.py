"""The HTTP edge: authentication first, validated signals, tenant isolation, health."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.churn.config import ChurnSettings
from services.churn.main import create_app
from services.churn.runtime import ChurnRuntime
from services.common.database import Database
from services.common.flags import FlagState, write_flag
from services.common.redis import Redis
from services.common.scopes import FEED_READ, OPERATOR, SCOPES
from tests.flags import tenants_around
from tests.services.openapi_fuzz import fuzz_operations

CROSSING_ROUNDS = 5
AppClient = Callable[[FastAPI], AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def churn_app(churn_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> FastAPI:
    monkeypatch.setenv("CHURN_WORKER_ENABLED", "false")
    monkeypatch.setenv("CHURN_SCHEDULER_ENABLED", "false")
    return create_app(ChurnSettings.from_env(), registry=CollectorRegistry())


def _signal(lead: str, kind: str = "message_sent", **extra: object) -> dict[str, object]:
    return {
        "signal_id": str(uuid.uuid4()),
        "lead_id": lead,
        "type": kind,
        "occurred_at": datetime.now(UTC).isoformat(),
        **extra,
    }


async def test_signals_flow_and_refusals(
    churn_app: FastAPI,
    app_client: AppClient,
    make_token: Callable[..., str],
    owner_db: Database,
) -> None:
    auth = {"Authorization": f"Bearer {make_token('t1')}"}
    other = {"Authorization": f"Bearer {make_token('t2')}"}
    async with app_client(churn_app) as client:
        # Authentication before the body: garbage without a token is a 401.
        response = await client.post("/v1/churn/signals", content=b"{not json")
        assert response.status_code == 401
        response = await client.put(
            "/v1/churn/leads",
            json={"leads": [{"lead_id": "lead-1", "timezone": "America/Denver"}]},
            headers=auth,
        )
        assert response.json() == {"upserted": 1}
        bad_zone = await client.put(
            "/v1/churn/leads",
            json={"leads": [{"lead_id": "x", "timezone": "Mars/Base"}]},
            headers=auth,
        )
        assert bad_zone.status_code == 422
        # Its problem is told, not the whole input: a 600 KB zone came back twice.
        huge_zone = await client.put(
            "/v1/churn/leads",
            json={"leads": [{"lead_id": "x", "timezone": "A" * 600_000}]},
            headers=auth,
        )
        assert huge_zone.status_code == 422
        assert len(huge_zone.content) < 2_000
        first = _signal("lead-1")
        response = await client.post("/v1/churn/signals", json={"signals": [first]}, headers=auth)
        assert response.status_code == 202
        assert response.json() == {"stored": 1, "duplicates": 0, "cancelled_sends": 0}
        retried = await client.post("/v1/churn/signals", json={"signals": [first]}, headers=auth)
        assert retried.json()["duplicates"] == 1
        future = _signal("lead-1", occurred_at=(datetime.now(UTC) + timedelta(hours=1)).isoformat())
        response = await client.post("/v1/churn/signals", json={"signals": [future]}, headers=auth)
        assert (response.status_code, response.json()["reason"]) == (422, "timestamp_in_future")
        response = await client.post(
            "/v1/churn/signals", json={"signals": [_signal("nobody")]}, headers=auth
        )
        assert (response.status_code, response.json()["reason"]) == (422, "unknown_lead")
        # Another tenant cannot reach this tenant's lead: for it, the lead does not exist.
        response = await client.post(
            "/v1/churn/signals", json={"signals": [_signal("lead-1")]}, headers=other
        )
        assert (response.status_code, response.json()["reason"]) == (422, "unknown_lead")
        for hostile in (
            _signal("lead-1", data={"note": "a\x00b"}),
            _signal("lead-1", data={"n": 2**70}),
            _signal("lead-1\n"),
            _signal("lead-1", kind="stage_changed", data={"stage": "moon"}),
        ):
            response = await client.post(
                "/v1/churn/signals", json={"signals": [hostile]}, headers=auth
            )
            assert response.status_code == 422
            assert "reason" in response.json()
        too_big = await client.post("/v1/churn/signals", content=b"x" * 2_000_000, headers=auth)
        assert too_big.status_code == 413
        health = await client.get("/health/churn")
        assert health.status_code == 200
        body = health.json()
        for field in (
            "avg_intervention_latency_s",
            "target_latency_s",
            "interventions_24h",
            "success_rate",
        ):
            assert field in body
        assert body["crm_configured"] is False
        operator = {"Authorization": f"Bearer {make_token('t1', scopes=(OPERATOR,))}"}
        assert (await client.get("/v1/churn/dead-letters", headers=operator)).json() == []
    async with owner_db.unscoped() as conn:
        rows = await conn.fetch("SELECT tenant_id, lead_id FROM churn_signals")
        jobs = await conn.fetchval(
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'churn.detect'"
        )
    assert [tuple(row) for row in rows] == [("t1", "lead-1")]
    assert jobs == 1  # detection queued by the one stored batch


async def test_tenant_outside_the_rollout_has_its_facts_stored_and_no_detection_queued(
    churn_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    app_client: AppClient,
    make_token: Callable[..., str],
    redis_client: Redis,
    owner_db: Database,
) -> None:
    # The flag gates what the feature does to leads (detection, staging,
    # sending), not the CRM's facts nor the operators' reads.
    inside, outside = tenants_around("churn_prevention", 50)
    await write_flag(
        redis_client, "churn_prevention", FlagState(enabled=True, rollout_percentage=50)
    )
    monkeypatch.setenv("CHURN_WORKER_ENABLED", "false")
    monkeypatch.setenv("CHURN_SCHEDULER_ENABLED", "false")
    app = create_app(ChurnSettings.from_env(), registry=CollectorRegistry())
    leads = {"leads": [{"lead_id": "lead-1", "timezone": "UTC"}]}
    signals = {"signals": [_signal("lead-1")]}
    async with app_client(app) as client:
        for tenant in (outside, inside):
            token = {"Authorization": f"Bearer {make_token(tenant, scopes=SCOPES)}"}
            answers = [
                await client.put("/v1/churn/leads", json=leads, headers=token),
                await client.post("/v1/churn/signals", json=signals, headers=token),
                await client.get("/v1/churn/interventions", headers=token),
                await client.get("/v1/churn/dead-letters", headers=token),
            ]
            assert [a.status_code for a in answers] == [200, 202, 200, 200], tenant
            retried = await client.post(
                f"/v1/churn/dead-letters/{uuid.uuid4()}/retry", headers=token
            )
            expected = (
                (404, "unknown_dead_letter")
                if tenant == inside
                else (
                    403,
                    "feature_disabled",
                )
            )
            assert (retried.status_code, retried.json()["reason"]) == expected
    async with owner_db.unscoped() as conn:
        stored = await conn.fetch("SELECT DISTINCT tenant_id FROM churn_signals ORDER BY 1")
        jobs = await conn.fetch(
            "SELECT args->>'tenant_id' AS tenant_id FROM procrastinate_jobs "
            "WHERE task_name = 'churn.detect'"
        )
    assert [row["tenant_id"] for row in stored] == sorted([inside, outside])
    assert [row["tenant_id"] for row in jobs] == [inside]


async def test_leads_and_signals_need_the_crm_ingest_scope(
    churn_app: FastAPI,
    app_client: AppClient,
    make_token: Callable[..., str],
    owner_db: Database,
) -> None:
    # A valid token of the tenant, but a feed reader's: it may not write CRM data.
    reader = {"Authorization": f"Bearer {make_token('t1', scopes=(FEED_READ,))}"}
    async with app_client(churn_app) as client:
        leads = await client.put(
            "/v1/churn/leads",
            json={"leads": [{"lead_id": "lead-1", "timezone": "UTC"}]},
            headers=reader,
        )
        signals = await client.post(
            "/v1/churn/signals", json={"signals": [_signal("lead-1")]}, headers=reader
        )
    for response in (leads, signals):
        assert response.status_code == 403, response.text
        assert response.json()["reason"] == "insufficient_scope"
        assert "crm:ingest" in response.json()["detail"]
    async with owner_db.unscoped() as conn:
        assert await conn.fetchval("SELECT count(*) FROM churn_leads") == 0


async def test_a_lead_twice_in_one_batch_is_a_422_naming_it_and_nothing_is_stored(
    churn_app: FastAPI,
    app_client: AppClient,
    make_token: Callable[..., str],
    owner_db: Database,
) -> None:
    # One INSERT ... ON CONFLICT DO UPDATE cannot touch a row twice: Postgres
    # refuses the statement, which was a 500 before the batch was checked.
    auth = {"Authorization": f"Bearer {make_token('t1')}"}
    leads = [{"lead_id": "lead-1"}, {"lead_id": "lead-2"}, {"lead_id": "lead-1"}]
    async with app_client(churn_app) as client:
        response = await client.put("/v1/churn/leads", json={"leads": leads}, headers=auth)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["reason"] == "validation_error"
    assert body["errors"][0]["field"] == "body.leads"
    assert "'lead-1' is at indexes 0 and 2" in body["detail"]
    async with owner_db.unscoped() as conn:
        assert await conn.fetchval("SELECT count(*) FROM churn_leads") == 0


async def test_batches_of_the_same_leads_in_any_order_upsert_together_without_deadlock(
    churn_app: FastAPI,
    app_client: AppClient,
    make_token: Callable[..., str],
    owner_db: Database,
) -> None:
    # Each batch upserted its leads in the order sent: two batches holding the
    # same leads in different orders locked them in different orders, and
    # Postgres aborted one of them (a 500 deadlock_detected) most rounds.
    auth = {"Authorization": f"Bearer {make_token('t1')}"}
    leads = [{"lead_id": f"lead-{i:03d}"} for i in range(300)]
    shuffler = random.Random(5)
    async with app_client(churn_app) as client:
        for _ in range(3):
            batches = [shuffler.sample(leads, len(leads)) for _ in range(6)]
            answers = await asyncio.gather(
                *[
                    client.put("/v1/churn/leads", json={"leads": batch}, headers=auth)
                    for batch in batches
                ]
            )
            assert [a.status_code for a in answers] == [200] * 6, [a.text for a in answers]
    async with owner_db.unscoped() as conn:
        assert await conn.fetchval("SELECT count(*) FROM churn_leads") == 300


async def test_batches_sending_the_same_signal_ids_for_other_leads_do_not_deadlock(
    churn_app: FastAPI, app_client: AppClient, make_token: Callable[..., str]
) -> None:
    # Each batch inserted its signals in the order sent: two batches of other
    # leads sharing signal ids in crossing orders each held an id the other
    # waited for, and Postgres aborted one of them (a 500 deadlock_detected).
    auth = {"Authorization": f"Bearer {make_token('t1')}"}
    count = 500
    leads = [{"lead_id": f"{side}-{i:03d}"} for side in "ab" for i in range(count)]
    at = datetime.now(UTC).isoformat()
    async with app_client(churn_app) as client:
        put = await client.put("/v1/churn/leads", json={"leads": leads}, headers=auth)
        assert put.status_code == 200, put.text
        for _ in range(CROSSING_ROUNDS):
            ids = [str(uuid.uuid4()) for _ in range(count)]
            batches = [
                [
                    {
                        "signal_id": ids[i],
                        "lead_id": f"{side}-{i:03d}",
                        "type": "email_opened",
                        "occurred_at": at,
                    }
                    for i in order
                ]
                for side, order in (("a", range(count)), ("b", reversed(range(count))))
            ]
            answers = await asyncio.gather(
                *[
                    client.post("/v1/churn/signals", json={"signals": batch}, headers=auth)
                    for batch in batches
                ]
            )
            assert [a.status_code for a in answers] == [202, 202], [a.text for a in answers]
            # Each id stored once, by whichever batch got it first.
            assert sum(a.json()["stored"] for a in answers) == count
            assert sum(a.json()["duplicates"] for a in answers) == count


async def test_timestamps_outside_what_postgres_round_trips_are_422_naming_the_field(
    churn_app: FastAPI,
    app_client: AppClient,
    make_token: Callable[..., str],
    owner_db: Database,
) -> None:
    # asyncpg stores 0001-01-01T00:00Z as -infinity and reads it back naive:
    # such a signal was a 500 (the fold subtracted it from an aware now), such
    # a lead was stored "created" at -infinity and scored as certain churn, and
    # an offset pushing an instant before year 1 was refused by Postgres.
    auth = {"Authorization": f"Bearer {make_token('t1')}"}
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    async with app_client(churn_app) as client:
        for created_at in ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00", tomorrow):
            response = await client.put(
                "/v1/churn/leads",
                json={"leads": [{"lead_id": "lead-2", "created_at": created_at}]},
                headers=auth,
            )
            assert response.status_code == 422, (created_at, response.text)
            body = response.json()
            assert body["reason"] == "validation_error"
            assert body["errors"][0]["field"] == "body.leads.0.created_at"
            assert "0001" not in body["detail"]
        await client.put("/v1/churn/leads", json={"leads": [{"lead_id": "lead-1"}]}, headers=auth)
        for occurred_at in ("0001-01-01T00:00:00Z", "1969-12-31T23:59:59Z"):
            response = await client.post(
                "/v1/churn/signals",
                json={"signals": [_signal("lead-1", occurred_at=occurred_at)]},
                headers=auth,
            )
            assert response.status_code == 422, (occurred_at, response.text)
            assert response.json()["errors"][0]["field"] == "body.signals.0.occurred_at"
    async with owner_db.unscoped() as conn:
        assert await conn.fetchval("SELECT count(*) FROM churn_signals") == 0
        assert await conn.fetch("SELECT lead_id FROM churn_leads") == [("lead-1",)]


@pytest.mark.parametrize(
    "form",
    ["{{{id}}}", "urn:uuid:{id}", "{hex}", "{id}\n"],
    ids=["braces", "urn", "hex", "newline"],
)
async def test_a_signal_id_in_another_form_than_8_4_4_4_12_is_422(
    churn_app: FastAPI,
    app_client: AppClient,
    make_token: Callable[..., str],
    owner_db: Database,
    form: str,
) -> None:
    signal_id = uuid.uuid4()
    sent = form.format(id=signal_id, hex=signal_id.hex)
    auth = {"Authorization": f"Bearer {make_token('t1')}"}
    async with app_client(churn_app) as client:
        await client.put("/v1/churn/leads", json={"leads": [{"lead_id": "lead-1"}]}, headers=auth)
        response = await client.post(
            "/v1/churn/signals",
            json={"signals": [_signal("lead-1", signal_id=sent)]},
            headers=auth,
        )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "body.signals.0.signal_id"
    async with owner_db.unscoped() as conn:
        assert await conn.fetchval("SELECT count(*) FROM churn_signals") == 0


async def test_one_signal_id_with_two_contents_in_a_batch_is_422_and_nothing_is_stored(
    churn_app: FastAPI,
    app_client: AppClient,
    make_token: Callable[..., str],
    owner_db: Database,
) -> None:
    auth = {"Authorization": f"Bearer {make_token('t1')}"}
    reply = _signal("lead-1", "reply")
    async with app_client(churn_app) as client:
        await client.put("/v1/churn/leads", json={"leads": [{"lead_id": "lead-1"}]}, headers=auth)
        conflicting = await client.post(
            "/v1/churn/signals",
            json={"signals": [reply, {**reply, "type": "email_opened"}]},
            headers=auth,
        )
        retried = await client.post(
            "/v1/churn/signals", json={"signals": [reply, dict(reply)]}, headers=auth
        )
    assert conflicting.status_code == 422, conflicting.text
    assert conflicting.json()["errors"][0]["field"] == "body.signals"
    assert "indexes 0 and 1" in conflicting.json()["detail"]
    assert retried.status_code == 202
    assert retried.json() == {"stored": 1, "duplicates": 1, "cancelled_sends": 0}
    async with owner_db.unscoped() as conn:
        assert await conn.fetch("SELECT signal_type FROM churn_signals") == [("reply",)]


async def test_no_request_the_document_describes_gets_a_server_error(
    served: tuple[httpx.AsyncClient, ChurnRuntime], make_token: Callable[..., str]
) -> None:
    """Valid and invalid requests generated from churn-orchestrator's document (the
    CRM's routes and the operator's): each answered below 500, every refusal in the
    ``{detail, reason}`` shape."""
    client, _ = served
    openapi = (await client.get("/openapi.json")).json()
    report = await fuzz_operations(client, openapi, token=make_token("t1", scopes=SCOPES))
    assert report.findings == []
    for operation in ("PUT /v1/churn/leads", "GET /v1/churn/interventions"):
        assert report.answered(operation, 2) > 0, report.statuses  # handlers reached
