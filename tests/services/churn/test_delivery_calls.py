"""A send's claim and record in one statement each (revision 0012), and group jobs.

The common path claims with ``churn_claim_send`` and records with
``churn_record_delivery`` (no tenant transaction of several round trips);
when a contact rule says no after that claim, the row is put back as it was
and the decision is the one the tenant transaction always took.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import pytest

from localrun.standins.leadconnector import Faults, StandinServer
from services.common.database import Database
from tests.services.churn.conftest import RuntimeFactory, quiet_zone, seed_leads


class CountingDatabase:
    """The runtime's database, counting tenant transactions and one-statement calls."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self.calls: Counter[str] = Counter()

    @asynccontextmanager
    async def tenant(self, tenant_id: str) -> AsyncIterator[Any]:
        self.calls["tenant"] += 1
        async with self._db.tenant(tenant_id) as conn:
            yield conn

    async def tenant_call(self, tenant_id: str, function: str, *args: Any) -> Any:
        self.calls[function] += 1
        return await self._db.tenant_call(tenant_id, function, *args)


async def _outbox(owner: Database, channel: str) -> dict[str, Any]:
    async with owner.unscoped() as conn:
        row = await conn.fetchrow(
            "SELECT outbox_id::text, status, reason, attempts, claimed_at, not_before, "
            "(SELECT count(*) FROM procrastinate_jobs j WHERE j.status = 'todo' "
            " AND j.queueing_lock = o.outbox_id::text) AS jobs "
            "FROM churn_outbox o WHERE channel = $1",
            channel,
        )
    assert row is not None
    return dict(row)


async def test_a_delivered_send_takes_one_statement_to_claim_and_one_to_record(
    make_runtime: RuntimeFactory, standin: StandinServer, db: Database, owner_db: Database
) -> None:
    await seed_leads(db, "t1", 1)
    async with make_runtime(standin=standin) as runtime:
        await runtime.run_pass()
        counting = CountingDatabase(runtime.db)
        runtime.deliverer.db = counting
        for channel in ("email", "task"):
            row = await _outbox(owner_db, channel)
            result = await runtime.deliverer.deliver(tenant_id="t1", outbox_id=row["outbox_id"])
            assert result == "delivered"
    assert counting.calls == {"churn_claim_send": 2, "churn_record_delivery": 2}
    for channel in ("email", "task"):
        row = await _outbox(owner_db, channel)
        assert (row["status"], row["attempts"]) == ("delivered", 1)
    async with owner_db.unscoped() as conn:
        intervention = await conn.fetchrow(
            "SELECT status, channels_used, intervention_latency_seconds FROM churn_interventions"
        )
    assert intervention["status"] == "delivered"
    assert sorted(intervention["channels_used"]) == ["email", "task"]
    assert intervention["intervention_latency_seconds"] is not None
    assert len(standin.standin.stats()["deliveries"]) == 2


async def test_quiet_hours_after_the_claim_put_the_row_back_and_defer_it(
    make_runtime: RuntimeFactory, standin: StandinServer, db: Database, owner_db: Database
) -> None:
    await seed_leads(db, "t1", 1)
    async with make_runtime(standin=standin) as runtime:
        await runtime.run_pass()
        # Staged in an open zone; the lead's zone is in quiet hours by the time it is sent.
        async with owner_db.unscoped() as conn:
            await conn.execute("UPDATE churn_leads SET timezone = $1", quiet_zone())
            # This test runs the job itself: no worker holds it.
            await conn.execute("DELETE FROM procrastinate_jobs")
        counting = CountingDatabase(runtime.db)
        runtime.deliverer.db = counting
        before = await _outbox(owner_db, "email")
        result = await runtime.deliverer.deliver(tenant_id="t1", outbox_id=before["outbox_id"])
    assert result == "rescheduled"
    # The claim ran, found a contact rule saying no, and the tenant transaction decided.
    assert counting.calls == {"churn_claim_send": 1, "tenant": 1}
    after = await _outbox(owner_db, "email")
    assert (after["status"], after["attempts"], after["claimed_at"]) == ("pending", 0, None)
    assert after["not_before"] > before["not_before"]
    assert after["jobs"] == 1  # deferred to the end of the quiet hours
    assert standin.standin.stats()["deliveries"] == []


async def test_a_capped_send_is_suppressed_with_its_attempts_as_they_were(
    make_runtime: RuntimeFactory, standin: StandinServer, db: Database, owner_db: Database
) -> None:
    await seed_leads(db, "t1", 1)
    async with make_runtime(standin=standin, churn_max_contacts_per_day=0) as runtime:
        await runtime.run_pass()
        row = await _outbox(owner_db, "email")
        assert await runtime.deliverer.deliver(tenant_id="t1", outbox_id=row["outbox_id"]) == (
            "suppressed"
        )
    row = await _outbox(owner_db, "email")
    assert (row["status"], row["reason"], row["attempts"]) == ("suppressed", "frequency_cap", 0)


async def test_the_calls_keep_to_their_tenant(
    make_runtime: RuntimeFactory, standin: StandinServer, db: Database, owner_db: Database
) -> None:
    await seed_leads(db, "t1", 1)
    async with make_runtime(standin=standin) as runtime:
        await runtime.run_pass()
    row = await _outbox(owner_db, "email")
    outbox_id = uuid.UUID(row["outbox_id"])
    # Under another tenant's scope the row is invisible: nothing claimed, nothing recorded.
    claim = await db.tenant_call(
        "t2", "churn_claim_send", outbox_id, row["not_before"], 3, row["not_before"],
        row["not_before"], ["email", "sms"],
    )  # fmt: skip
    assert claim[0] == "skipped"
    assert await db.tenant_call("t2", "churn_record_delivery", outbox_id, "x") == (False, None)
    # Inside another tenant's transaction the functions refuse to run.
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with db.tenant("t2") as conn:
            await conn.fetchval("SELECT churn_record_delivery('t1', $1, 'x')", outbox_id)
    after = await _outbox(owner_db, "email")
    assert (after["status"], after["attempts"]) == ("pending", 0)


async def test_a_group_job_sends_each_channel_and_on_a_rerun_leaves_handed_over_rows(
    make_runtime: RuntimeFactory, standin: StandinServer, db: Database, owner_db: Database
) -> None:
    await seed_leads(db, "t1", 1)
    async with make_runtime(standin=standin) as runtime:
        await runtime.run_pass()
        async with owner_db.unscoped() as conn:
            jobs = await conn.fetch("SELECT task_name, args FROM procrastinate_jobs")
            # This test runs the job itself: no worker holds it.
            await conn.execute("DELETE FROM procrastinate_jobs")
        # One job for the intervention's two channels, due together.
        assert [job["task_name"] for job in jobs] == ["churn.deliver_group"]
        outbox_ids = jobs[0]["args"]["outbox_ids"]
        assert len(outbox_ids) == 2
        # The first channel is rate limited (a job of its own after the backoff),
        # then the worker dies before the second one is sent.
        standin.standin.set_faults(Faults(rate_limited=1.0))
        first = await runtime.deliverer.deliver(tenant_id="t1", outbox_id=outbox_ids[0])
        assert first == "retry"
        standin.standin.set_faults(Faults())
        results = await runtime.deliverer.deliver_group(
            tenant_id="t1", outbox_ids=outbox_ids, rerun=True
        )
    # The rerun sent only the second channel; the first waits for its own job.
    assert results == ["delivered"]
    async with owner_db.unscoped() as conn:
        rows = {
            str(row["outbox_id"]): row
            for row in await conn.fetch(
                "SELECT outbox_id, status, attempts, (SELECT count(*) FROM procrastinate_jobs j "
                " WHERE j.status = 'todo' AND j.queueing_lock = o.outbox_id::text) AS jobs "
                "FROM churn_outbox o"
            )
        }
    assert (rows[outbox_ids[0]]["status"], rows[outbox_ids[0]]["attempts"]) == ("pending", 1)
    assert rows[outbox_ids[0]]["jobs"] == 1
    assert (rows[outbox_ids[1]]["status"], rows[outbox_ids[1]]["attempts"]) == ("delivered", 1)
    assert len(standin.standin.stats()["deliveries"]) == 1
