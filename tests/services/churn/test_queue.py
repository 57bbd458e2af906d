"""The delivery queue's contract (queue.py): typed jobs in, procrastinate jobs out.

The other churn tests queue through detection, delivery and recovery; these
check what ``defer_delivery_jobs`` itself promises: both kinds in one call,
each with its queueing lock, priority, arguments and delay; the outbox rows
covered as its result; a taken queueing lock refused; nothing sent for no jobs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import asyncpg
import pytest

from services.churn.queue import (
    DELIVER_GROUP_TASK,
    DELIVER_TASK,
    QUEUE,
    DeliveryJob,
    GroupDelivery,
    SingleDelivery,
    defer_delivery_jobs,
)
from services.common.database import Database, asyncpg_dsn

pytestmark = pytest.mark.integration

TENANT = "acme"


async def test_singles_and_groups_are_queued_in_one_call(db: Database, owner_db: Database) -> None:
    now = datetime.now(UTC)
    later = now + timedelta(hours=1)
    due, waiting = uuid4(), uuid4()
    intervention, grouped = uuid4(), (uuid4(), uuid4(), uuid4())
    async with db.tenant(TENANT) as conn:
        covered = await defer_delivery_jobs(
            conn,
            tenant_id=TENANT,
            jobs=[
                SingleDelivery(outbox_id=due, priority=-1, not_before=now - timedelta(minutes=1)),
                GroupDelivery(
                    intervention_id=intervention, outbox_ids=grouped, priority=-2, not_before=later
                ),
                SingleDelivery(outbox_id=waiting, priority=-5, not_before=later),
            ],
        )
    assert covered == 5  # outbox rows, not jobs
    async with owner_db.unscoped() as conn:
        jobs = await conn.fetch(
            "SELECT task_name, queueing_lock, priority, args, scheduled_at "
            "FROM procrastinate_jobs WHERE queue_name = $1 ORDER BY priority DESC",
            QUEUE,
        )
    assert [(job["task_name"], job["queueing_lock"], job["priority"]) for job in jobs] == [
        (DELIVER_TASK, str(due), -1),
        (DELIVER_GROUP_TASK, str(intervention), -2),
        (DELIVER_TASK, str(waiting), -5),
    ]
    assert [job["args"] for job in jobs] == [
        {"tenant_id": TENANT, "outbox_id": str(due)},
        {"tenant_id": TENANT, "outbox_ids": [str(i) for i in grouped]},
        {"tenant_id": TENANT, "outbox_id": str(waiting)},
    ]
    # A job is delayed only to a time still in the future.
    assert [job["scheduled_at"] for job in jobs] == [None, later, later]


@pytest.mark.parametrize("kind", ["single", "group"])
async def test_a_second_job_for_the_same_lock_is_refused(db: Database, kind: str) -> None:
    now = datetime.now(UTC)
    job: DeliveryJob = (
        SingleDelivery(outbox_id=uuid4(), priority=0, not_before=now)
        if kind == "single"
        else GroupDelivery(
            intervention_id=uuid4(), outbox_ids=(uuid4(), uuid4()), priority=0, not_before=now
        )
    )
    async with db.tenant(TENANT) as conn:
        await defer_delivery_jobs(conn, tenant_id=TENANT, jobs=[job])
    # At most one job per row waits: the queueing lock refuses a second one.
    with pytest.raises(asyncpg.UniqueViolationError):
        async with db.tenant(TENANT) as conn:
            await defer_delivery_jobs(conn, tenant_id=TENANT, jobs=[job])


async def test_no_jobs_send_no_statement(app_database_url: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(app_database_url))
    await conn.close()
    # Any statement on a closed connection would raise.
    assert await defer_delivery_jobs(conn, tenant_id=TENANT, jobs=[]) == 0
