"""The ``churn_prevention`` flag gates what the feature does to leads, not what it knows.

With the flag off for a tenant, its leads, signals and outcomes are stored and
its operators read interventions and dead letters; detection, staging and
sending stay off. Real Postgres, Redis, procrastinate and the LeadConnector stand-in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import httpx

from localrun.standins.leadconnector import StandinServer
from services.churn.runtime import ChurnRuntime
from services.common.database import Database
from services.common.flags import FlagState, write_flag
from services.common.redis import Redis
from services.common.scopes import CRM_INGEST, OPERATOR
from tests.services.churn.conftest import drain, queued, seed_leads, signal_body

Served = tuple[httpx.AsyncClient, ChurnRuntime]


async def _set_flag(runtime: ChurnRuntime, redis: Redis, *, enabled: bool) -> None:
    """churn_prevention on or off for every tenant, once ``runtime`` has heard it."""
    await write_flag(redis, "churn_prevention", FlagState(enabled=enabled, rollout_percentage=100))
    async with asyncio.timeout(5):
        while runtime.feature_enabled("t1") != enabled:  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def _interventions(owner: Database) -> dict[str, str]:
    async with owner.unscoped() as conn:
        rows = await conn.fetch("SELECT lead_id, status FROM churn_interventions")
    return {row["lead_id"]: row["status"] for row in rows}


async def _lead_status(owner: Database, lead: str) -> str:
    async with owner.unscoped() as conn:
        status: str = await conn.fetchval(
            "SELECT status FROM churn_leads WHERE tenant_id = 't1' AND lead_id = $1", lead
        )
    return status


async def test_signals_received_while_off_are_stored_and_detected_on_once_back_on(
    served: Served,
    make_token: Callable[..., str],
    db: Database,
    owner_db: Database,
    redis_client: Redis,
) -> None:
    # They were refused 403: the reply of lead-0 was lost, and once the feature
    # was back on the pass staged a nudge for a lead who had answered.
    client, runtime = served
    await seed_leads(db, "t1", 3)
    crm = {"Authorization": f"Bearer {make_token('t1', scopes=(CRM_INGEST,))}"}
    await _set_flag(runtime, redis_client, enabled=False)
    answered = await client.post(
        "/v1/churn/signals",
        json={"signals": [signal_body("lead-0", "reply", datetime.now(UTC))]},
        headers=crm,
    )
    assert answered.status_code == 202, answered.text
    assert answered.json()["stored"] == 1
    upserted = await client.put(
        "/v1/churn/leads", json={"leads": [{"lead_id": "lead-9"}]}, headers=crm
    )
    assert upserted.json() == {"upserted": 1}
    assert await queued(db) == 0, "a signal while off queued detection"
    assert (await runtime.run_pass()).tenants == []
    assert await _interventions(owner_db) == {}

    await _set_flag(runtime, redis_client, enabled=True)
    await runtime.run_pass()
    await drain(runtime)
    staged = await _interventions(owner_db)
    assert sorted(staged) == ["lead-1", "lead-2"], "lead-0 answered while the feature was off"
    assert set(staged.values()) == {"delivered"}
    async with owner_db.unscoped() as conn:
        stored = await conn.fetch("SELECT lead_id, signal_type FROM churn_signals")
    assert [tuple(row) for row in stored] == [("lead-0", "reply")]


async def test_outcomes_and_operator_reads_answer_while_off_and_a_retry_does_not(
    served: Served,
    standin: StandinServer,
    redis_client: Redis,
    make_token: Callable[..., str],
    db: Database,
    owner_db: Database,
) -> None:
    # The incident that turned the feature off is when operators need its dead
    # letters, and the CRM's outcomes are what the success numbers count.
    client, runtime = served
    await seed_leads(db, "t1", 2)
    standin.standin.faults.poisoned_contacts.append("lead-0")
    operator = {"Authorization": f"Bearer {make_token('t1', scopes=(OPERATOR,))}"}
    crm = {"Authorization": f"Bearer {make_token('t1', scopes=(CRM_INGEST,))}"}
    await runtime.run_pass()
    await drain(runtime)
    await _set_flag(runtime, redis_client, enabled=False)

    dead = await client.get("/v1/churn/dead-letters", headers=operator)
    assert dead.status_code == 200, dead.text
    assert {row["lead_id"] for row in dead.json()} == {"lead-0"}
    listed = await client.get("/v1/churn/interventions", headers=operator)
    assert listed.status_code == 200, listed.text
    delivered = next(i for i in listed.json() if i["status"] == "delivered")
    reported = await client.post(
        f"/v1/churn/interventions/{delivered['intervention_id']}/outcome",
        json={"outcome": "responded"},
        headers=crm,
    )
    assert reported.status_code == 200, reported.text
    assert reported.json()["outcome"] == "responded"
    # A retry sends: still the flag's.
    retried = await client.post(
        f"/v1/churn/dead-letters/{dead.json()[0]['outbox_id']}/retry", headers=operator
    )
    assert (retried.status_code, retried.json()["reason"]) == (403, "feature_disabled")
    await runtime.run_pass()
    health = await client.get("/health/churn")
    # lead-1's delivered intervention responded; the pass measured it while off.
    assert health.json()["success_rate"] == 1.0
    async with owner_db.unscoped() as conn:
        statuses = await conn.fetch(
            "SELECT DISTINCT status FROM churn_outbox WHERE lead_id = 'lead-0'"
        )
    assert [row["status"] for row in statuses] == ["dead_letter"]
