"""A queue no worker takes from is seen: the oldest due job's age grows.

The latency histogram records the sends the CRM accepted, so a dead or stuck
worker leaves it without samples and ChurnInterventionLatencyHigh silent;
``churn_queue_oldest_due_seconds`` (ChurnQueueStalled) grows instead.
"""

from __future__ import annotations

import pytest

from localrun.standins.leadconnector import StandinServer
from services.churn.queue import QUEUE
from services.churn.runtime import ChurnRuntime
from services.common.database import Database
from tests.services.churn.conftest import RuntimeFactory, seed_leads

pytestmark = pytest.mark.integration


def _gauge(runtime: ChurnRuntime) -> float:
    return float(runtime.metrics.oldest_due.collect()[0].samples[0].value)


async def _shift(owner_db: Database, sql: str, *args: object) -> None:
    async with owner_db.unscoped() as conn:
        await conn.execute(sql, *args)


async def test_the_oldest_due_jobs_wait_is_exported(
    make_runtime: RuntimeFactory, standin: StandinServer, db: Database, owner_db: Database
) -> None:
    await seed_leads(db, "t1", 3)
    async with make_runtime(standin=standin) as runtime:
        await runtime.refresh_queue_depth()
        assert _gauge(runtime) == 0  # nothing queued yet

        summary = await runtime.run_pass()  # no worker runs: the sends stay queued
        assert sum(t.sends_queued for t in summary.tenants) > 0
        # Deferred ten minutes ago and never taken.
        await _shift(
            owner_db,
            "UPDATE procrastinate_events SET at = at - interval '600 seconds' "
            "WHERE type = 'deferred'",
        )
        await _shift(
            owner_db,
            "UPDATE procrastinate_jobs SET scheduled_at = NULL WHERE queue_name = $1",
            QUEUE,
        )
        depth = await runtime.refresh_queue_depth()
        assert depth > 0
        assert 600 <= _gauge(runtime) < 700

        # A retry's backoff or a sequence's next step is not due yet: no wait.
        await _shift(
            owner_db,
            "UPDATE procrastinate_jobs SET scheduled_at = now() + interval '1 hour' "
            "WHERE queue_name = $1",
            QUEUE,
        )
        assert await runtime.refresh_queue_depth() == depth
        assert _gauge(runtime) == 0

        # Due since a minute ago: waited one minute, whenever it was deferred.
        await _shift(
            owner_db,
            "UPDATE procrastinate_jobs SET scheduled_at = now() - interval '60 seconds' "
            "WHERE queue_name = $1",
            QUEUE,
        )
        await runtime.refresh_queue_depth()
        assert 60 <= _gauge(runtime) < 120
