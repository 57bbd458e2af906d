"""A pass that queues many sends refreshes the job queue's planner statistics.

Without it the workers' fetch (procrastinate_fetch_job_v2) is planned from a
near-empty queue's statistics and sorts every waiting job on each fetch
(revision 0010 has the numbers).
"""

from __future__ import annotations

from datetime import datetime

import pytest

from localrun.standins.leadconnector import StandinServer
from services.churn import runtime as runtime_module
from services.churn.queue import QUEUE
from services.common.database import Database
from tests.services.churn.conftest import RuntimeFactory, seed_leads

pytestmark = pytest.mark.integration


async def _analyzed_at(owner: Database) -> datetime | None:
    async with owner.unscoped() as conn:
        analyzed: datetime | None = await conn.fetchval(
            "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = 'procrastinate_jobs'"
        )
    return analyzed


async def test_a_pass_that_queues_many_sends_analyzes_the_queue(
    make_runtime: RuntimeFactory,
    standin: StandinServer,
    db: Database,
    owner_db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runtime_module, "ANALYZE_AFTER_SENDS", 4)
    await seed_leads(db, "t1", 3)
    before = await _analyzed_at(owner_db)
    async with make_runtime(standin=standin) as runtime:
        summary = await runtime.run_pass()  # no worker runs: the sends stay queued
    queued = sum(t.sends_queued for t in summary.tenants)
    assert queued >= 4
    after = await _analyzed_at(owner_db)
    assert after is not None
    assert before is None or after > before
    async with owner_db.unscoped() as conn:
        estimated = await conn.fetchval(
            "SELECT reltuples FROM pg_class WHERE relname = 'procrastinate_jobs'"
        )
        actual = await conn.fetchval(
            "SELECT count(*) FROM procrastinate_jobs WHERE queue_name = $1", QUEUE
        )
    assert estimated == actual
