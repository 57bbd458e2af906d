"""A dead worker's claimed jobs come back without waiting for a detection pass.

The jobs are claimed by a procrastinate worker row whose heartbeat stopped (a
replica SIGKILLed after claiming: its jobs stay ``doing``). A replica running
only a worker, with a monitoring interval of an hour, must still requeue and
deliver them: recovery runs on its own clock, not after the next pass.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from localrun.standins.leadconnector import StandinServer
from services.churn.queue import QUEUE
from services.churn.runtime import STALLED_AFTER_SECONDS
from services.common.database import Database
from tests.services.churn.conftest import RuntimeFactory, queued, seed_leads

pytestmark = pytest.mark.integration


async def _claim_all_as_a_dead_worker(owner: Database) -> int:
    async with owner.unscoped() as conn:
        worker_id = await conn.fetchval("SELECT worker_id FROM procrastinate_register_worker_v1()")
        claimed = 0
        while await conn.fetchval(
            "SELECT id FROM procrastinate_fetch_job_v2(ARRAY[$1]::varchar[], $2)",
            QUEUE,
            worker_id,
        ):
            claimed += 1
        await conn.execute(
            "UPDATE procrastinate_workers SET last_heartbeat = now() - interval '1 hour' "
            "WHERE id = $1",
            worker_id,
        )
    return claimed


async def test_worker_only_replica_requeues_a_dead_workers_jobs_without_a_pass(
    make_runtime: RuntimeFactory, standin: StandinServer, db: Database, owner_db: Database
) -> None:
    await seed_leads(db, "t1", 3)
    async with make_runtime(standin=standin, churn_monitoring_interval=3600) as runtime:
        summary = await runtime.run_pass()
        sends = summary.tenants[0].sends_queued
        assert sends > 0
        # One job per intervention whose channels are due together (queue.py).
        jobs = await queued(owner_db)
        assert 0 < jobs < sends
        assert await _claim_all_as_a_dead_worker(owner_db) == jobs
        await runtime.start(worker=True, scheduler=False)
        # Generous for a loaded machine; the point is that it happens at all
        # before the next pass (an hour away).
        deadline = time.monotonic() + STALLED_AFTER_SECONDS + 50
        while len(standin.standin.stats()["deliveries"]) < sends:
            assert time.monotonic() < deadline, "the dead worker's jobs were not requeued"
            await asyncio.sleep(0.2)
        while await queued(runtime.db):
            assert time.monotonic() < deadline, "jobs left in the queue"
            await asyncio.sleep(0.2)
    keys = Counter(d["key"] for d in standin.standin.stats()["deliveries"])
    assert len(keys) == sends
    assert set(keys.values()) == {1}
