"""Fair delivery across tenants: a big tenant's backlog does not hold back small tenants.

One worker slot, so the order of sends at the stand-in is the order in which
the queue hands out jobs. The big tenant is staged first (its jobs are older),
yet the small tenants' sends go out round-robin with the big tenant's first
ones, not after its whole backlog.
"""

from __future__ import annotations

from collections import Counter

import pytest

from localrun.standins.leadconnector import Faults, StandinServer
from services.churn.queue import QUEUE
from services.common.database import Database
from tests.services.churn.conftest import RuntimeFactory, drain, seed_leads

pytestmark = pytest.mark.integration

BIG_LEADS = 24
SMALL = ("small-1", "small-2")


async def test_small_tenants_are_served_round_robin_with_a_big_tenants_backlog(
    make_runtime: RuntimeFactory, standin: StandinServer, db: Database, owner_db: Database
) -> None:
    await seed_leads(db, "big", BIG_LEADS)
    for tenant in SMALL:
        await seed_leads(db, tenant, 2)
    async with make_runtime(standin=standin, churn_worker_concurrency=1) as runtime:
        summary = await runtime.run_pass()
        # "big" sorts first: its jobs are queued before the small tenants'.
        assert [t.tenant_id for t in summary.tenants] == ["big", *SMALL]
        await drain(runtime)
    async with owner_db.unscoped() as conn:
        tenant_of = {
            row["idempotency_key"]: row["tenant_id"]
            for row in await conn.fetch("SELECT idempotency_key, tenant_id FROM churn_outbox")
        }
    deliveries = sorted(standin.standin.stats()["deliveries"], key=lambda d: d["received_at"])
    order = [tenant_of[d["key"]] for d in deliveries]
    per_tenant = Counter(order)
    assert per_tenant["big"] > 4 * per_tenant["small-1"]
    assert set(per_tenant.values()) != {1}
    # Round-robin by queue position: before the last small-tenant send, the big
    # tenant got at most one send per small-tenant send position.
    last_small = max(i for i, tenant in enumerate(order) if tenant != "big")
    big_before = order[:last_small].count("big")
    assert big_before <= max(per_tenant[t] for t in SMALL)
    # Without fairness (oldest job first) every big send would come first.
    assert order.index("small-1") < per_tenant["big"]


async def test_a_retried_send_keeps_its_queue_position(
    make_runtime: RuntimeFactory, standin: StandinServer, db: Database, owner_db: Database
) -> None:
    await seed_leads(db, "big", 10)
    async with make_runtime(standin=standin) as runtime:
        await runtime.run_pass()
        async with owner_db.unscoped() as conn:
            # Claimed as a worker would (the job is 'doing' while it runs).
            worker_id = await conn.fetchval(
                "SELECT worker_id FROM procrastinate_register_worker_v1()"
            )
            job = await conn.fetchrow(
                "SELECT priority, args FROM procrastinate_fetch_job_v2(ARRAY[$1]::varchar[], $2)",
                QUEUE,
                worker_id,
            )
        assert job["priority"] == -1
        standin.standin.set_faults(Faults(rate_limited=1.0, retry_after_seconds=1))
        # The tenant's first job: the group job of its first intervention (queue.py).
        outbox_ids = job["args"]["outbox_ids"]
        results = await runtime.deliverer.deliver_group(
            tenant_id="big", outbox_ids=outbox_ids, priority=job["priority"]
        )
        assert results == ["retry"] * len(outbox_ids)
    async with owner_db.unscoped() as conn:
        retry = await conn.fetchrow(
            "SELECT priority, scheduled_at > now() AS later FROM procrastinate_jobs "
            "WHERE status = 'todo' AND queueing_lock = $1",
            outbox_ids[0],
        )
        behind = await conn.fetchval(
            "SELECT count(*) FROM procrastinate_jobs WHERE status = 'todo' AND priority < -1"
        )
    # After its backoff it goes ahead of the tenant's later sends, not behind them.
    assert retry["later"]
    assert retry["priority"] == -1
    assert behind > 0
