"""Deferring procrastinate jobs inside the caller's own Postgres transaction.

procrastinate's Python API defers through its own psycopg connection, which
would commit the job separately from the outbox row it is for: a crash
between the two would leave a row without a job or a job without a row. Its
schema's ``procrastinate_defer_jobs_v1`` function is what that API calls;
calling it on the transaction that writes the outbox rows makes "row written"
and "job queued" one atomic step.

Two kinds of delivery job: ``churn.deliver`` for one outbox row (queueing
lock: the outbox id), and ``churn.deliver_group`` for the rows of one new
intervention due at the same time (queueing lock: the intervention id), which
sends its channels in turn: one job to fetch and finish instead of one per
channel (a third of the orchestrator's CPU per send went to procrastinate's
fetch and finish). A row of a group that has to wait (a retry, quiet hours)
is handed to a ``churn.deliver`` job of its own. Either way at most one job
per row waits in the queue. Callers describe each job as a ``SingleDelivery``
or a ``GroupDelivery`` and queue them with ``defer_delivery_jobs``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, TypeAlias
from uuid import UUID

import asyncpg
import orjson

QUEUE: Final = "churn"
DELIVER_TASK: Final = "churn.deliver"
DELIVER_GROUP_TASK: Final = "churn.deliver_group"
DETECT_TASK: Final = "churn.detect"

DEFER_DELIVERIES_SQL: Final = """
SELECT coalesce(cardinality(procrastinate_defer_jobs_v1(array_agg(ROW(
    $1::varchar, $2::varchar, j.priority, NULL::text, j.outbox_id::text,
    jsonb_build_object('tenant_id', $3::text, 'outbox_id', j.outbox_id::text),
    CASE WHEN j.not_before > now() THEN j.not_before END
)::procrastinate_job_to_defer_v1))), 0)
FROM unnest($4::uuid[], $5::int[], $6::timestamptz[]) AS j(outbox_id, priority, not_before)
"""

DEFER_GROUPS_SQL: Final = """
SELECT coalesce(cardinality(procrastinate_defer_jobs_v1(array_agg(ROW(
    $1::varchar, $2::varchar, g.priority, NULL::text, g.intervention_id::text,
    jsonb_build_object('tenant_id', $3::text, 'outbox_ids', g.outbox_ids::jsonb),
    CASE WHEN g.not_before > now() THEN g.not_before END
)::procrastinate_job_to_defer_v1))), 0)
FROM unnest($4::uuid[], $5::text[], $6::int[], $7::timestamptz[])
     AS g(intervention_id, outbox_ids, priority, not_before)
"""


@dataclass(frozen=True, slots=True)
class SingleDelivery:
    """A ``churn.deliver`` job: one outbox row (queueing lock: its id).

    ``priority`` is the job's queue position (detection.py on fairness);
    ``not_before`` delays the job only when it is in the future.
    """

    outbox_id: UUID
    priority: int
    not_before: datetime


@dataclass(frozen=True, slots=True)
class GroupDelivery:
    """A ``churn.deliver_group`` job: the rows of one intervention due together.

    Queueing lock: the intervention id. ``priority`` and ``not_before`` as for
    a ``SingleDelivery``.
    """

    intervention_id: UUID
    outbox_ids: tuple[UUID, ...]
    priority: int
    not_before: datetime


DeliveryJob: TypeAlias = SingleDelivery | GroupDelivery


async def defer_delivery_jobs(conn: Any, *, tenant_id: str, jobs: Sequence[DeliveryJob]) -> int:
    """Queue ``jobs`` on ``conn``'s transaction; return the outbox rows they cover.

    One statement for the groups and one for the single rows, none for a kind
    without jobs. A queueing lock already taken (a job waiting for that row or
    intervention) raises ``asyncpg.UniqueViolationError``, for the caller to
    roll back; otherwise every job given is queued.
    """
    groups = [job for job in jobs if isinstance(job, GroupDelivery)]
    singles = [job for job in jobs if isinstance(job, SingleDelivery)]
    if groups:
        await conn.execute(
            DEFER_GROUPS_SQL,
            QUEUE,
            DELIVER_GROUP_TASK,
            tenant_id,
            [group.intervention_id for group in groups],
            [orjson.dumps([str(i) for i in group.outbox_ids]).decode() for group in groups],
            [group.priority for group in groups],
            [group.not_before for group in groups],
        )
    if singles:
        await conn.execute(
            DEFER_DELIVERIES_SQL,
            QUEUE,
            DELIVER_TASK,
            tenant_id,
            [single.outbox_id for single in singles],
            [single.priority for single in singles],
            [single.not_before for single in singles],
        )
    # procrastinate_defer_jobs_v1 inserts every job it is given or raises: the
    # rows covered are those of ``jobs`` (the statements' job counts add nothing).
    return len(singles) + sum(len(group.outbox_ids) for group in groups)


async def defer_unless_queued(conn: Any, *, tenant_id: str, job: SingleDelivery) -> bool:
    """Queue ``job`` unless a job for its row is already waiting; True when queued.

    The row's queueing lock refuses a second job, and that refusal would abort
    the caller's transaction: the insert runs under a savepoint (the tenant
    transactions are started by hand, so asyncpg's nested transactions do not
    apply). The waiting job takes the row as it finds it when it runs.
    """
    await conn.execute("SAVEPOINT defer_unless_queued")
    try:
        await defer_delivery_jobs(conn, tenant_id=tenant_id, jobs=[job])
    except asyncpg.UniqueViolationError:
        await conn.execute("ROLLBACK TO SAVEPOINT defer_unless_queued")
        return False
    await conn.execute("RELEASE SAVEPOINT defer_unless_queued")
    return True


async def defer_detection(conn: Any, *, tenant_id: str, lead_ids: Sequence[str]) -> None:
    """Queue a ``churn.detect`` job for these leads (signal-triggered detection)."""
    await conn.execute(
        """
        SELECT procrastinate_defer_jobs_v1(ARRAY[ROW(
            $1::varchar, $2::varchar, 1000, NULL::text, NULL::text,
            jsonb_build_object('tenant_id', $3::text, 'lead_ids', $4::text[]), NULL::timestamptz
        )::procrastinate_job_to_defer_v1])
        """,
        QUEUE,
        DETECT_TASK,
        tenant_id,
        list(lead_ids),
    )


async def analyze_queue(conn: Any) -> None:
    """Refresh the planner statistics of ``procrastinate_jobs`` (revision 0010 says why)."""
    await conn.execute("SELECT churn_analyze_queue()")


async def pending_backlog(conn: Any) -> int:
    """The tenant's sends waiting or in flight (the fair-queue position of its next job)."""
    count: int = await conn.fetchval(
        "SELECT count(*) FROM churn_outbox WHERE status IN ('pending', 'sending')"
    )
    return count
