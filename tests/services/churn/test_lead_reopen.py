"""A churned lead is watched again once the CRM reopens it, and only detection contacts it.

Real Postgres, Redis, procrastinate and the LeadConnector stand-in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from localrun.standins.leadconnector import StandinServer
from services.churn.runtime import ChurnRuntime
from services.common.database import Database
from services.common.scopes import CRM_INGEST
from tests.services.churn.conftest import drain, seed_leads, signal_body

Served = tuple[httpx.AsyncClient, ChurnRuntime]


def _crm(make_token: Callable[..., str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token('t1', scopes=(CRM_INGEST,))}"}


async def _statuses(owner: Database) -> dict[str, str]:
    async with owner.unscoped() as conn:
        rows = await conn.fetch("SELECT lead_id, status FROM churn_leads WHERE tenant_id = 't1'")
    return {row["lead_id"]: row["status"] for row in rows}


async def _scored(runtime: ChurnRuntime) -> int:
    (tenant,) = (await runtime.run_pass()).tenants
    return tenant.scored


async def _staged(runtime: ChurnRuntime, db: Database, owner: Database, *, leads: int) -> Any:
    """Register ``leads`` at-risk leads, run a pass; lead-0's intervention id."""
    await seed_leads(db, "t1", leads)
    await runtime.run_pass()
    async with owner.unscoped() as conn:
        return await conn.fetchval(
            "SELECT intervention_id FROM churn_interventions "
            "WHERE tenant_id = 't1' AND lead_id = 'lead-0'"
        )


async def test_a_lead_that_writes_back_after_it_was_lost_is_watched_again(
    served: Served,
    make_token: Callable[..., str],
    db: Database,
    owner_db: Database,
) -> None:
    # A lead marked churned stayed churned: its reply was stored, and it was
    # never scored again. A late copy of a reply from before the loss is no
    # reopening.
    await seed_leads(db, "t1", 2)
    now = datetime.now(UTC)
    lost = [
        signal_body(lead, "lead_lost", now - timedelta(hours=1)) for lead in ("lead-0", "lead-1")
    ]
    client, runtime = served
    posted = await client.post(
        "/v1/churn/signals", json={"signals": lost}, headers=_crm(make_token)
    )
    assert posted.status_code == 202, posted.text
    assert await _statuses(owner_db) == {"lead-0": "churned", "lead-1": "churned"}
    assert await _scored(runtime) == 0
    replies = [
        signal_body("lead-0", "reply", now),
        signal_body("lead-1", "reply", now - timedelta(hours=2)),
    ]
    posted = await client.post(
        "/v1/churn/signals", json={"signals": replies}, headers=_crm(make_token)
    )
    assert posted.status_code == 202, posted.text
    assert await _statuses(owner_db) == {"lead-0": "active", "lead-1": "churned"}
    assert await _scored(runtime) == 1
    # Lost again (the same batch: the order of what happened decides).
    again = [signal_body("lead-0", "reply", now), signal_body("lead-0", "lead_lost", now)]
    again[0]["occurred_at"] = (now - timedelta(seconds=1)).isoformat()
    await client.post("/v1/churn/signals", json={"signals": again}, headers=_crm(make_token))
    assert (await _statuses(owner_db))["lead-0"] == "churned"
    async with owner_db.unscoped() as conn:
        churned_at = await conn.fetchval(
            "SELECT churned_at FROM churn_leads WHERE tenant_id = 't1' AND lead_id = 'lead-0'"
        )
    assert churned_at == datetime.fromisoformat(again[1]["occurred_at"])


async def test_the_crm_reopening_a_lead_watches_it_and_cancels_what_was_decided_before(
    served: Served,
    make_token: Callable[..., str],
    db: Database,
    owner_db: Database,
    standin: StandinServer,
) -> None:
    # Reported churned with its sends still queued (the delivery cancels them
    # when their turn comes); reopened before that, they would have gone out,
    # decided before it churned.
    client, runtime = served
    intervention = await _staged(runtime, db, owner_db, leads=2)
    reported = await client.post(
        f"/v1/churn/interventions/{intervention}/outcome",
        json={"outcome": "churned"},
        headers=_crm(make_token),
    )
    assert reported.status_code == 200, reported.text
    # A resync of the lead (contact data) is no reopening.
    lead = {"lead_id": "lead-0", "agent_id": "agent-1"}
    synced = await client.put("/v1/churn/leads", json={"leads": [lead]}, headers=_crm(make_token))
    assert synced.status_code == 200, synced.text
    assert (await _statuses(owner_db))["lead-0"] == "churned"
    reopened = await client.put(
        "/v1/churn/leads",
        json={"leads": [{**lead, "status": "active"}]},
        headers=_crm(make_token),
    )
    assert reopened.status_code == 200, reopened.text
    assert await _statuses(owner_db) == {"lead-0": "active", "lead-1": "active"}
    await drain(runtime)
    assert await _scored(runtime) == 2
    async with owner_db.unscoped() as conn:
        sends = await conn.fetch(
            "SELECT lead_id, status, reason FROM churn_outbox WHERE tenant_id = 't1'"
        )
    assert {(s["lead_id"], s["status"], s["reason"]) for s in sends} == {
        ("lead-0", "cancelled", "lead_re_engaged"),
        ("lead-1", "delivered", None),
    }
    assert {d["contact_id"] for d in standin.standin.stats()["deliveries"]} == {"lead-1"}


async def _lock_waits(owner: Database) -> int:
    async with owner.unscoped() as conn:
        waits: int = await conn.fetchval("SELECT count(*) FROM pg_locks WHERE NOT granted")
    return waits


async def test_a_churned_report_locks_the_lead_before_its_intervention(
    served: Served, db: Database, owner_db: Database, make_token: Callable[..., str]
) -> None:
    # The report locked the intervention, then the lead; a reply of that lead
    # locks the lead, then its delivered interventions: crossing, one of the
    # two was aborted (deadlock_detected).
    client, runtime = served
    intervention = await _staged(runtime, db, owner_db, leads=1)
    async with owner_db.unscoped() as reply:
        # What a reply's batch does, in its order: the lead, then its interventions.
        await reply.execute(
            "SELECT 1 FROM churn_leads WHERE tenant_id = 't1' AND lead_id = 'lead-0' FOR UPDATE"
        )
        report = asyncio.create_task(
            client.post(
                f"/v1/churn/interventions/{intervention}/outcome",
                json={"outcome": "churned"},
                headers=_crm(make_token),
            )
        )
        async with asyncio.timeout(10):
            while not await _lock_waits(owner_db):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        await reply.execute(
            "SELECT 1 FROM churn_interventions WHERE intervention_id = $1 FOR UPDATE",
            intervention,
        )
    answer = await report
    assert answer.status_code == 200, answer.text
    assert (await _statuses(owner_db))["lead-0"] == "churned"
