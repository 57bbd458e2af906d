"""The intervention workflow end to end: real Postgres, procrastinate, the CRM stand-in."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from localrun.standins.leadconnector import Faults, StandinServer
from services.churn.config import ChurnSettings
from services.churn.main import create_app
from services.churn.queue import defer_detection
from services.churn.runtime import ChurnRuntime
from services.churn.schemas import SignalCreate
from services.churn.signals import store_signals
from services.common.database import Database
from services.common.flags import FlagState, write_flag
from services.common.redis import Redis
from services.common.scopes import OPERATOR
from tests.flags import tenants_around
from tests.services.churn.conftest import (
    RuntimeFactory,
    drain,
    queued,
    quiet_zone,
    seed_leads,
)

AppClient = Callable[[FastAPI], AbstractAsyncContextManager[httpx.AsyncClient]]


async def _outbox(owner: Database) -> list[dict]:
    async with owner.unscoped() as conn:
        rows = await conn.fetch(
            "SELECT tenant_id, lead_id, channel, status, reason, attempts, last_error, "
            "idempotency_key, updated_at FROM churn_outbox ORDER BY tenant_id, lead_id, channel"
        )
    return [dict(row) for row in rows]


async def _interventions(owner: Database) -> list[dict]:
    async with owner.unscoped() as conn:
        rows = await conn.fetch(
            "SELECT tenant_id, lead_id, intervention_stage, channels_used, status, reason, "
            "intervention_latency_seconds, detected_at FROM churn_interventions"
        )
    return [dict(row) for row in rows]


def _delivered_keys(standin: StandinServer) -> Counter[str]:
    return Counter(d["key"] for d in standin.standin.stats()["deliveries"])


async def _kill_switch(runtime: ChurnRuntime, redis: Redis, tenant_id: str) -> None:
    """churn_prevention off (its percentage kept), once ``runtime`` has heard it."""
    state = runtime.flags.state("churn_prevention")
    percentage = state.rollout_percentage if state else 100
    await write_flag(
        redis, "churn_prevention", FlagState(enabled=False, rollout_percentage=percentage)
    )
    async with asyncio.timeout(5):
        while runtime.feature_enabled(tenant_id):  # noqa: ASYNC110
            await asyncio.sleep(0.01)


async def test_pass_stages_and_delivers_each_send_once(
    make_runtime: RuntimeFactory, standin: StandinServer, db: Database, owner_db: Database
) -> None:
    at_risk = await seed_leads(db, "t1", 5)
    await seed_leads(db, "t1", 3, prefix="fresh", at_risk=False)
    async with make_runtime(standin=standin) as runtime:
        summary = await runtime.run_pass()
        (tenant,) = summary.tenants
        assert tenant.scored == 8
        assert tenant.interventions == 5
        assert sorted(lead for lead, _, _ in tenant.created) == sorted(at_risk)
        await drain(runtime)
        # A second pass in the same window stages nothing new.
        again = await runtime.run_pass()
        assert again.tenants[0].interventions == 0
        assert await queued(db) == 0
    rows = await _outbox(owner_db)
    assert len(rows) == 10  # escalate: email + task per lead
    assert {row["status"] for row in rows} == {"delivered"}
    keys = _delivered_keys(standin)
    assert sorted(keys) == sorted(row["idempotency_key"] for row in rows)
    assert set(keys.values()) == {1}
    assert standin.standin.stats()["results"] == {"accepted": 10}
    for row in await _interventions(owner_db):
        assert row["status"] == "delivered"
        assert sorted(row["channels_used"]) == ["email", "task"]
        assert row["intervention_latency_seconds"] is not None


async def test_without_crm_key_interventions_are_recorded_not_sent(
    make_runtime: RuntimeFactory, db: Database, owner_db: Database
) -> None:
    await seed_leads(db, "t1", 3)
    async with make_runtime(standin=None) as runtime:
        await runtime.run_pass()
        assert await queued(db) == 0
    interventions = await _interventions(owner_db)
    assert len(interventions) == 3
    assert {(i["status"], i["reason"]) for i in interventions} == {
        ("not_sent", "crm_not_configured")
    }
    assert {(r["status"], r["reason"]) for r in await _outbox(owner_db)} == {
        ("not_sent", "crm_not_configured")
    }


async def test_detection_skips_tenants_outside_the_rollout(
    make_runtime: RuntimeFactory,
    standin: StandinServer,
    db: Database,
    owner_db: Database,
    redis_client: Redis,
) -> None:
    inside, outside = tenants_around("churn_prevention", 50)
    await write_flag(
        redis_client, "churn_prevention", FlagState(enabled=True, rollout_percentage=50)
    )
    await seed_leads(db, inside, 3)
    outside_leads = await seed_leads(db, outside, 3)
    async with make_runtime(standin=standin) as runtime:
        summary = await runtime.run_pass()
        assert [t.tenant_id for t in summary.tenants] == [inside]
        # Signal-triggered detection skips it too.
        async with db.tenant(outside) as conn:
            await defer_detection(conn, tenant_id=outside, lead_ids=outside_leads)
        await drain(runtime)
        # The kill switch reaches the running scheduler without a restart.
        await _kill_switch(runtime, redis_client, inside)
        assert (await runtime.run_pass()).tenants == []
    interventions = await _interventions(owner_db)
    assert {i["tenant_id"] for i in interventions} == {inside}
    assert {row["tenant_id"] for row in await _outbox(owner_db)} == {inside}
    async with owner_db.unscoped() as conn:
        scored = await conn.fetchval(
            "SELECT count(*) FROM churn_leads WHERE tenant_id = $1 AND scored_at IS NOT NULL",
            outside,
        )
    assert scored == 0


async def test_sends_queued_before_the_kill_switch_are_cancelled_not_sent(
    make_runtime: RuntimeFactory,
    standin: StandinServer,
    db: Database,
    owner_db: Database,
    redis_client: Redis,
) -> None:
    # Sending is what the flag turns off: what was queued before the rollback
    # went out anyway.
    await seed_leads(db, "t1", 2)
    async with make_runtime(standin=standin) as runtime:
        await runtime.run_pass()
        assert await queued(db) > 0
        await _kill_switch(runtime, redis_client, "t1")
        await drain(runtime)
    assert standin.standin.stats()["deliveries"] == []
    rows = await _outbox(owner_db)
    assert rows
    assert {(r["status"], r["reason"], r["attempts"]) for r in rows} == {
        ("cancelled", "feature_disabled", 0)
    }
    assert {(i["status"], i["reason"]) for i in await _interventions(owner_db)} == {
        ("cancelled", "feature_disabled")
    }


async def test_two_replicas_and_two_schedulers_send_nothing_twice(
    make_runtime: RuntimeFactory, standin: StandinServer, db: Database, owner_db: Database
) -> None:
    for tenant in ("t1", "t2", "t3"):
        await seed_leads(db, tenant, 8)
    async with make_runtime(standin=standin) as one, make_runtime(standin=standin) as two:
        await asyncio.gather(one.run_pass(), two.run_pass(), one.run_pass(), two.run_pass())
        await asyncio.gather(drain(one), drain(two))
    rows = await _outbox(owner_db)
    assert len(rows) == 3 * 8 * 2
    assert {row["status"] for row in rows} == {"delivered"}
    keys = _delivered_keys(standin)
    assert len(keys) == len(rows)
    assert set(keys.values()) == {1}
    # No send even reached the CRM twice: the claim, not the CRM's dedup, held.
    assert standin.standin.stats()["results"] == {"accepted": len(rows)}
    assert len(await _interventions(owner_db)) == 24


async def test_provider_faults_are_retried_and_delivered_once(
    make_runtime: RuntimeFactory, standin: StandinServer, db: Database, owner_db: Database
) -> None:
    standin.standin.set_faults(
        Faults(
            rate_limited=0.2,
            retry_after_seconds=1,
            server_error=0.2,
            timeout_after_accept=0.15,
            timeout_seconds=3,
            seed=3,
        )
    )
    await seed_leads(db, "t1", 15)
    async with make_runtime(standin=standin, churn_intervention_retry_count=8) as runtime:
        await runtime.run_pass()
        await drain(runtime, limit=120)
    rows = await _outbox(owner_db)
    assert {row["status"] for row in rows} == {"delivered"}
    results = standin.standin.stats()["results"]
    # Every kind of fault happened, and each was retried to one delivery.
    assert results["rate_limited"]
    assert results["server_error"]
    assert results["timeout_after_accept"]
    assert results.get("duplicate", 0) >= 1  # the retries after a timeout
    keys = _delivered_keys(standin)
    assert len(keys) == len(rows) == 30
    assert set(keys.values()) == {1}
    assert max(row["attempts"] for row in rows) > 1


async def test_poisoned_lead_is_dead_lettered_and_others_are_delivered(
    make_runtime: RuntimeFactory, standin: StandinServer, db: Database, owner_db: Database
) -> None:
    await seed_leads(db, "t1", 6)
    standin.standin.set_faults(Faults(poisoned_contacts=["lead-0"]))
    async with make_runtime(standin=standin, churn_intervention_retry_count=2) as runtime:
        await runtime.run_pass()
        await drain(runtime, limit=60)
        dead = [row for row in await _outbox(owner_db) if row["status"] == "dead_letter"]
        assert {(row["lead_id"], row["attempts"]) for row in dead} == {
            ("lead-0", 3)
        }  # 1 try + 2 retries, each channel
        assert all("500" in row["last_error"] for row in dead)
        metrics = runtime.metrics.dead_letters
        assert sum(metrics.labels(c)._value.get() for c in ("email", "task")) == 2
    rows = await _outbox(owner_db)
    others = [row for row in rows if row["lead_id"] != "lead-0"]
    assert {row["status"] for row in others} == {"delivered"}
    # The other leads went out before the poisoned one gave up.
    last_other = max(d["received_at"] for d in standin.standin.stats()["deliveries"])
    assert all(row["updated_at"].timestamp() >= last_other for row in dead)
    interventions = {i["lead_id"]: i for i in await _interventions(owner_db)}
    assert interventions["lead-0"]["status"] == "dead_letter"


async def test_reengaging_lead_cancels_its_pending_sends(
    make_runtime: RuntimeFactory, standin: StandinServer, db: Database, owner_db: Database
) -> None:
    # Quiet hours where the lead is: its messages wait; the agent's task does not.
    await seed_leads(db, "t1", 2, timezone=quiet_zone())
    async with make_runtime(standin=standin) as runtime:
        await runtime.run_pass()
        await drain(runtime, due_only=True)
        waiting = [row for row in await _outbox(owner_db) if row["status"] == "pending"]
        assert {row["channel"] for row in waiting} == {"email"}
        reply = SignalCreate(
            signal_id=uuid.uuid4(),
            lead_id="lead-0",
            type="reply",
            occurred_at=datetime.now(UTC),
        )
        async with db.tenant("t1") as conn:
            result = await store_signals(conn, [reply], now=datetime.now(UTC))
        assert result.cancelled_sends == 1
    by_lead = {(r["lead_id"], r["channel"]): r for r in await _outbox(owner_db)}
    assert by_lead[("lead-0", "email")]["status"] == "cancelled"
    assert by_lead[("lead-0", "email")]["reason"] == "lead_re_engaged"
    assert by_lead[("lead-1", "email")]["status"] == "pending"
    assert by_lead[("lead-0", "task")]["status"] == "delivered"
    async with owner_db.unscoped() as conn:
        jobs = await conn.fetch(
            "SELECT status::text, queueing_lock FROM procrastinate_jobs WHERE status = 'todo'"
        )
    # Only lead-1's email is still waiting in the queue.
    assert len(jobs) == 1


async def test_frequency_cap_suppresses_messages_but_not_the_agent_task(
    make_runtime: RuntimeFactory, standin: StandinServer, db: Database, owner_db: Database
) -> None:
    await seed_leads(db, "t1", 1)
    async with owner_db.unscoped() as conn:
        # An earlier intervention already reached this lead today.
        await conn.execute(
            "INSERT INTO churn_interventions (tenant_id, lead_id, churn_probability, "
            "intervention_stage, window_start, status, detected_at) "
            "VALUES ('t1', 'lead-0', 0.6, 'nudge', '2000-01-01', 'delivered', now())"
        )
        iid = await conn.fetchval("SELECT intervention_id FROM churn_interventions")
        await conn.execute(
            "INSERT INTO churn_outbox (tenant_id, intervention_id, lead_id, channel, "
            "idempotency_key, status, delivered_at) "
            "VALUES ('t1', $1, 'lead-0', 'sms', 'earlier', 'delivered', now())",
            iid,
        )
    async with make_runtime(standin=standin, churn_max_contacts_per_day=1) as runtime:
        await runtime.run_pass()
        await drain(runtime)
    rows = {r["channel"]: r for r in await _outbox(owner_db) if r["idempotency_key"] != "earlier"}
    assert (rows["email"]["status"], rows["email"]["reason"]) == ("suppressed", "frequency_cap")
    assert rows["task"]["status"] == "delivered"


async def test_a_tenant_never_touches_another_tenants_sends(
    make_runtime: RuntimeFactory, standin: StandinServer, db: Database, owner_db: Database
) -> None:
    await seed_leads(db, "t1", 2)
    async with make_runtime(standin=standin, churn_worker_concurrency=1) as runtime:
        summary = await runtime.run_pass()
        assert {t.tenant_id for t in summary.tenants} == {"t1"}
        async with owner_db.unscoped() as conn:
            outbox_id = await conn.fetchval("SELECT outbox_id::text FROM churn_outbox LIMIT 1")
        # A job naming another tenant finds nothing under that tenant's scope.
        assert await runtime.deliverer.deliver(tenant_id="t2", outbox_id=outbox_id) == "skipped"
        await seed_leads(db, "t2", 1, at_risk=False)
        summary = await runtime.run_pass()
        t2 = next(t for t in summary.tenants if t.tenant_id == "t2")
        assert t2.scored == 1
        assert t2.interventions == 0
    assert standin.standin.stats()["deliveries"] == []


async def _reply(db: Database, lead_id: str) -> int:
    """The lead replies (re-engages); the number of sends the signal cancelled."""
    reply = SignalCreate(
        signal_id=uuid.uuid4(), lead_id=lead_id, type="reply", occurred_at=datetime.now(UTC)
    )
    async with db.tenant("t1") as conn:
        result = await store_signals(conn, [reply], now=datetime.now(UTC))
    return result.cancelled_sends


async def test_a_send_in_flight_when_its_lead_replies_is_not_retried(
    make_runtime: RuntimeFactory, standin: StandinServer, db: Database, owner_db: Database
) -> None:
    await seed_leads(db, "t1", 1)
    async with make_runtime(standin=standin) as runtime:
        await runtime.run_pass()
        [email] = [r for r in await _outbox_ids(owner_db) if r["channel"] == "email"]
        # Held at the CRM until released; then answered 503 (a request reads
        # its faults as it arrives).
        standin.standin.set_faults(Faults(hold=True, server_error=1.0))
        sending = asyncio.create_task(
            runtime.deliverer.deliver(tenant_id="t1", outbox_id=str(email["outbox_id"]))
        )
        # Polled: the row changes in another connection.
        while (await _status(owner_db, email["outbox_id"])) != "sending":  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        # The reply arrives while the email is at the CRM: only the task (pending) is cancelled.
        assert await _reply(db, "lead-0") == 1
        standin.standin.set_faults(Faults(server_error=1.0))  # releases it
        assert await sending == "cancelled"
        standin.standin.set_faults(Faults())
        await drain(runtime)
    rows = {r["channel"]: r for r in await _outbox(owner_db)}
    assert (rows["email"]["status"], rows["email"]["reason"]) == ("cancelled", "lead_re_engaged")
    assert standin.standin.stats()["deliveries"] == []


async def test_a_job_run_twice_while_its_send_is_at_the_crm_does_not_send_beside_it(
    make_runtime: RuntimeFactory, standin: StandinServer, db: Database, owner_db: Database
) -> None:
    await seed_leads(db, "t1", 1)
    async with make_runtime(standin=standin) as runtime:
        await runtime.run_pass()
        [email] = [r for r in await _outbox_ids(owner_db) if r["channel"] == "email"]
        standin.standin.set_faults(Faults(hold=True))
        first = asyncio.create_task(
            runtime.deliverer.deliver(tenant_id="t1", outbox_id=str(email["outbox_id"]))
        )
        # Polled: the row changes in another connection.
        while (await _status(owner_db, email["outbox_id"])) != "sending":  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        # The same job again (requeued from a worker that was slow, not dead).
        second = await runtime.deliverer.deliver(tenant_id="t1", outbox_id=str(email["outbox_id"]))
        assert second == "in_flight"
        standin.standin.set_faults(Faults())
        assert await first == "delivered"
        await drain(runtime)
    results = standin.standin.stats()["results"]
    # One request for the email (no duplicate answered from the key), one for the task.
    assert results == {"accepted": 2}, results
    assert await _status(owner_db, email["outbox_id"]) == "delivered"


async def test_a_resend_after_a_dead_worker_is_cancelled_when_the_lead_replied_since(
    make_runtime: RuntimeFactory, standin: StandinServer, db: Database, owner_db: Database
) -> None:
    await seed_leads(db, "t1", 1)
    async with make_runtime(standin=standin) as runtime:
        await runtime.run_pass()
        [email] = [r for r in await _outbox_ids(owner_db) if r["channel"] == "email"]
        async with owner_db.unscoped() as conn:
            # Claimed by a worker that was then killed before it sent.
            await conn.execute(
                "UPDATE churn_outbox SET status = 'sending', attempts = 1, claimed_at = now() "
                "WHERE outbox_id = $1",
                email["outbox_id"],
            )
        await _reply(db, "lead-0")
        # Its job, run again by the stalled-job recovery.
        result = await runtime.deliverer.deliver(tenant_id="t1", outbox_id=str(email["outbox_id"]))
        assert result == "cancelled"
    assert await _status(owner_db, email["outbox_id"]) == "cancelled"
    assert standin.standin.stats()["deliveries"] == []


async def test_a_dead_letter_replayed_after_its_lead_replied_is_cancelled_not_sent(
    make_runtime: RuntimeFactory,
    standin: StandinServer,
    db: Database,
    owner_db: Database,
    churn_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    app_client: AppClient,
    make_token: Callable[..., str],
) -> None:
    await seed_leads(db, "t1", 2)
    standin.standin.set_faults(Faults(poisoned_contacts=["lead-0", "lead-1"]))
    async with make_runtime(standin=standin, churn_intervention_retry_count=0) as runtime:
        await runtime.run_pass()
        await drain(runtime)
        dead = {(r["lead_id"], r["channel"]): r["outbox_id"] for r in await _outbox_ids(owner_db)}
        assert {await _status(owner_db, i) for i in dead.values()} == {"dead_letter"}
        assert await _reply(db, "lead-0") == 0  # nothing pending to cancel
        standin.standin.set_faults(Faults())
        monkeypatch.setenv("CHURN_WORKER_ENABLED", "false")
        monkeypatch.setenv("CHURN_SCHEDULER_ENABLED", "false")
        app = create_app(ChurnSettings.from_env(), registry=CollectorRegistry())
        operator = {"Authorization": f"Bearer {make_token('t1', scopes=(OPERATOR,))}"}
        async with app_client(app) as client:
            replayed = await client.post(
                f"/v1/churn/dead-letters/{dead[('lead-0', 'email')]}/retry", headers=operator
            )
            assert replayed.status_code == 409, replayed.text
            assert replayed.json()["reason"] == "lead_re_engaged"
            again = await client.post(
                f"/v1/churn/dead-letters/{dead[('lead-0', 'email')]}/retry", headers=operator
            )
            assert again.json()["reason"] == "unknown_dead_letter"
            # The lead that did not reply is retried as before.
            other = await client.post(
                f"/v1/churn/dead-letters/{dead[('lead-1', 'email')]}/retry", headers=operator
            )
            assert other.status_code == 202, other.text
        await drain(runtime)
    assert await _status(owner_db, dead[("lead-0", "email")]) == "cancelled"
    assert await _status(owner_db, dead[("lead-1", "email")]) == "delivered"
    assert [d["contact_id"] for d in standin.standin.stats()["deliveries"]] == ["lead-1"]


async def _outbox_ids(owner: Database) -> list[dict]:
    async with owner.unscoped() as conn:
        rows = await conn.fetch("SELECT outbox_id, lead_id, channel FROM churn_outbox")
    return [dict(row) for row in rows]


async def _status(owner: Database, outbox_id: uuid.UUID) -> str:
    async with owner.unscoped() as conn:
        status: str = await conn.fetchval(
            "SELECT status FROM churn_outbox WHERE outbox_id = $1", outbox_id
        )
    return status
