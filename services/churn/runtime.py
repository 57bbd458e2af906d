"""The orchestrator's moving parts in one replica: job queue, worker, scheduler.

- The job queue is procrastinate over the platform's Postgres (why: docs/churn.md).
  This module builds one procrastinate ``App`` per runtime (no module
  globals) with three tasks: ``churn.deliver`` and ``churn.deliver_group``
  (delivery.py, queue.py), and ``churn.detect`` (detection right after a
  signal, for the leads it touched).
- The worker runs ``CHURN_WORKER_CONCURRENCY`` jobs at once, sends heartbeats,
  and is restarted if it stops on an error (a Postgres restart).
- The scheduler runs a detection pass over every tenant every
  CHURN_MONITORING_INTERVAL seconds, then puts an outbox row left
  ``pending``/``sending`` without any job back in the queue. Every replica may
  run it: the per-tenant pass lock and the constraints make two schedulers
  safe (detection.py).
- The stalled-job recovery runs on its own clock (every ``RECOVERY_SECONDS``)
  in every replica with a worker or a scheduler: the jobs a SIGKILLed replica
  had claimed are back in the queue about ``STALLED_AFTER_SECONDS`` after its
  last heartbeat, not after the next pass (60 s by default, two thirds of the
  30-second detection-to-intervention budget on its own).

The ``churn_prevention`` flag gates what each tenant's leads are done to
(``feature_enabled``): a tenant outside the rollout is skipped by the scheduled
pass's detection and by signal-triggered detection, so it gets no new
interventions, and its sends still queued are cancelled (``feature_disabled``)
when their turn comes. What it knows is not gated: its signals are still
stored (routes/signals.py), so the first pass after it is back in works on
them, and its interventions of the last 24 h still count in the health
aggregates. A flag never read (Redis down since the start) cancels nothing. The decision goes
through the app's OpenFeature client, as the routes' (reasons, hooks, the
``feature_flag_evaluations_total`` metric), once per tenant and pass or
detection job, never per lead (and once per delivery job): about 10 µs each,
50 of them in a pass over 100,000 leads of 50 tenants. The flag cache itself is kept for health
(synced, stale).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

import asyncpg
from openfeature.client import OpenFeatureClient
from procrastinate import App, PsycopgConnector, RetryStrategy
from procrastinate.exceptions import ConnectorException
from procrastinate.job_context import JobContext

from services.churn.config import CHURN_FEATURE, ChurnSettings, queue_pool_size
from services.churn.contact_rules import QuietHours
from services.churn.crm import LeadConnectorClient
from services.churn.delivery import Deliverer, DeliveryPolicy
from services.churn.detection import DetectionConfig, TenantPass, detect_tenant
from services.churn.metrics import ChurnMetrics
from services.churn.model import ChurnModel
from services.churn.queue import (
    DELIVER_GROUP_TASK,
    DELIVER_TASK,
    DETECT_TASK,
    QUEUE,
    SingleDelivery,
    analyze_queue,
    defer_delivery_jobs,
)
from services.churn.success import DELIVERED, SUCCEEDED_SQL
from services.common.database import Database, DatabaseUnavailable, asyncpg_dsn
from services.common.flags import FlagCache, evaluate_feature

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS: Final = 2.0
STALLED_AFTER_SECONDS: Final = 10.0
RECOVERY_SECONDS: Final = 2.0
#: Sends queued in a pass after which it refreshes the queue's planner
#: statistics at once (revision 0010) rather than at the end of the pass.
ANALYZE_AFTER_SENDS: Final = 500
ORPHAN_AFTER_SECONDS: Final = 60.0
WORKER_RESTART_SECONDS: Final = 1.0
# Infrastructure failures inside a job (Postgres restarting) are retried by
# procrastinate; CRM failures are handled by the delivery itself.
INFRA_RETRY: Final = RetryStrategy(max_attempts=30, wait=1, linear_wait=1)
ORPHANS_SQL: Final = """
WITH locks AS (
    SELECT j.queueing_lock FROM procrastinate_jobs j
    WHERE j.queue_name = $2 AND j.status IN ('todo', 'doing') AND j.queueing_lock IS NOT NULL)
SELECT o.outbox_id, o.not_before FROM churn_outbox o
WHERE o.status IN ('pending', 'sending')
  AND o.updated_at < now() - make_interval(secs => $1)
  -- neither its own job nor its intervention's group job (queue.py)
  AND o.outbox_id::text NOT IN (SELECT queueing_lock FROM locks)
  AND o.intervention_id::text NOT IN (SELECT queueing_lock FROM locks)
"""
# Depth, and how long the oldest due job has waited: a job is due from its
# scheduled_at (a retry's backoff, a sequence's next step) or, unscheduled, from
# its deferral. A worker that takes nothing leaves the latency histogram without
# samples (it records accepted sends only); this age grows instead.
QUEUE_STATS_SQL: Final = """
SELECT count(*) AS depth,
       coalesce(extract(epoch FROM now() - min(coalesce(j.scheduled_at, d.at))
                    FILTER (WHERE j.scheduled_at IS NULL OR j.scheduled_at <= now())),
                0)::float8 AS oldest_due_seconds
FROM procrastinate_jobs j
LEFT JOIN LATERAL (
    SELECT min(e.at) AS at FROM procrastinate_events e
    WHERE e.job_id = j.id AND e.type = 'deferred'
) d ON true
WHERE j.queue_name = $1 AND j.status = 'todo'
"""

HEALTH_SQL: Final = f"""
SELECT count(*) AS total,
       count(*) FILTER (WHERE status = '{DELIVERED}') AS delivered,
       count(*) FILTER (WHERE {SUCCEEDED_SQL}) AS succeeded,
       sum(intervention_latency_seconds) AS latency_sum,
       count(intervention_latency_seconds) AS latency_count
FROM churn_interventions WHERE created_at > now() - interval '24 hours'
"""  # noqa: S608 - constants


@dataclass
class HealthSnapshot:
    """Fleet-wide values of the last 24 h, refreshed by each scheduler pass."""

    interventions_24h: int = 0
    delivered_24h: int = 0
    succeeded_24h: int = 0
    latency_sum: float = 0.0
    latency_count: int = 0
    last_pass_at: datetime | None = None
    last_pass_seconds: float | None = None
    tenants: int = 0


@dataclass
class PassSummary:
    """What a pass over every tenant did."""

    tenants: list[TenantPass] = field(default_factory=list)
    seconds: float = 0.0
    failed_tenants: list[str] = field(default_factory=list)


class ChurnRuntime:
    """Owns the procrastinate app, the worker and scheduler tasks of one replica."""

    def __init__(
        self,
        *,
        settings: ChurnSettings,
        db: Database,
        model: ChurnModel,
        metrics: ChurnMetrics,
        crm: LeadConnectorClient | None,
        flags: FlagCache,
        flag_client: OpenFeatureClient,
    ) -> None:
        self.settings = settings
        self.db = db
        self.model = model
        self.metrics = metrics
        self.crm = crm
        self.flags = flags
        self.flag_client = flag_client
        self.health = HealthSnapshot()
        self.last_queue_depth: int | None = None
        self.detection = DetectionConfig(
            window_days=settings.churn_window_days,
            quiet_hours=QuietHours(
                settings.churn_quiet_hours_start, settings.churn_quiet_hours_end
            ),
            crm_configured=crm is not None,
        )
        self.deliverer = Deliverer(
            db=db,
            crm=crm,
            metrics=metrics,
            policy=DeliveryPolicy(
                retry_count=settings.churn_intervention_retry_count,
                retry_base_seconds=settings.churn_retry_base_seconds,
                retry_max_seconds=settings.churn_retry_max_seconds,
                quiet_hours=self.detection.quiet_hours,
                max_per_day=settings.churn_max_contacts_per_day,
                max_per_week=settings.churn_max_contacts_per_week,
                send_timeout_seconds=settings.ghl_timeout_seconds,
            ),
            outside_rollout=self.outside_rollout,
        )
        self.app = self._build_app()
        self._tasks: list[asyncio.Task[None]] = []

    def _build_app(self) -> App:
        connector = PsycopgConnector(
            conninfo=asyncpg_dsn(self.settings.database_url.get_secret_value()),
            min_size=1,
            max_size=queue_pool_size(self.settings.churn_worker_concurrency),
        )
        app = App(connector=connector)

        @app.task(name=DELIVER_TASK, queue=QUEUE, retry=INFRA_RETRY, pass_context=True)
        async def deliver(context: JobContext, tenant_id: str, outbox_id: str) -> None:
            await self.deliverer.deliver(
                tenant_id=tenant_id, outbox_id=outbox_id, priority=context.job.priority
            )

        @app.task(name=DELIVER_GROUP_TASK, queue=QUEUE, retry=INFRA_RETRY, pass_context=True)
        async def deliver_group(context: JobContext, tenant_id: str, outbox_ids: list[str]) -> None:
            await self.deliverer.deliver_group(
                tenant_id=tenant_id,
                outbox_ids=outbox_ids,
                priority=context.job.priority,
                # Requeued after its worker died, or retried after an error.
                rerun=context.job.attempts > 0,
            )

        @app.task(name=DETECT_TASK, queue=QUEUE, retry=INFRA_RETRY, pass_context=True)
        async def detect(context: JobContext, tenant_id: str, lead_ids: list[str]) -> None:
            if not self.feature_enabled(tenant_id):
                return
            result = await detect_tenant(
                self.db,
                tenant_id=tenant_id,
                model=self.model,
                config=self.detection,
                lead_ids=lead_ids,
                trigger="signal",
            )
            self._observe(result, "signal")

        return app

    def feature_enabled(self, tenant_id: str) -> bool:
        """Whether ``tenant_id`` is inside the ``churn_prevention`` rollout now (OpenFeature)."""
        return evaluate_feature(self.flag_client, CHURN_FEATURE, tenant_id).value

    def outside_rollout(self, tenant_id: str) -> bool:
        """Whether the flag, once read, leaves ``tenant_id`` out (its queued sends are cancelled).

        A flag never read (Redis down since start) decides nothing: the sends
        wait for no flag and go out as decided, rather than all be cancelled.
        """
        return self.flags.state(CHURN_FEATURE) is not None and not self.feature_enabled(tenant_id)

    # -- lifecycle ---------------------------------------------------------

    async def start(self, *, worker: bool, scheduler: bool) -> None:
        """Open the job queue's pool and start the requested background tasks."""
        await self.app.open_async()
        if worker:
            self._tasks.append(asyncio.create_task(self._supervise_worker(), name="churn-worker"))
        if scheduler:
            self._tasks.append(asyncio.create_task(self._schedule(), name="churn-scheduler"))
        if worker or scheduler:
            self._tasks.append(asyncio.create_task(self._recover_stalled(), name="churn-recovery"))

    async def stop(self) -> None:
        """Stop the tasks (a running job is cancelled and recovered later) and close."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        await self.app.close_async()
        if self.crm is not None:
            await self.crm.aclose()

    async def _supervise_worker(self) -> None:
        while True:
            try:
                await self.app.run_worker_async(
                    queues=[QUEUE],
                    name=f"churn-{id(self):x}",
                    concurrency=self.settings.churn_worker_concurrency,
                    wait=True,
                    install_signal_handlers=False,
                    update_heartbeat_interval=HEARTBEAT_SECONDS,
                    stalled_worker_timeout=STALLED_AFTER_SECONDS,
                    fetch_job_polling_interval=1.0,
                    delete_jobs="successful",
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("churn worker stopped; restarting")
            await asyncio.sleep(WORKER_RESTART_SECONDS)

    async def _schedule(self) -> None:
        interval = self.settings.churn_monitoring_interval
        while True:
            started = time.monotonic()
            try:
                await self.run_pass()
                await self.recover_orphans()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("churn scheduler pass failed; next one in %.0f s", interval)
            await asyncio.sleep(max(interval - (time.monotonic() - started), 0.0))

    async def _recover_stalled(self) -> None:
        while True:
            try:
                await self.requeue_stalled_jobs()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("churn stalled-job recovery failed; retrying")
            await asyncio.sleep(RECOVERY_SECONDS)

    # -- passes ------------------------------------------------------------

    async def tenants(self) -> list[str]:
        """Every tenant with leads (the directory in ``churn_tenants``)."""
        async with self.db.unscoped() as conn:
            rows = await conn.fetch("SELECT tenant_id FROM churn_tenants ORDER BY tenant_id")
        return [row["tenant_id"] for row in rows]

    async def run_pass(self, *, now: datetime | None = None) -> PassSummary:
        """Detection over every enabled tenant, then the health aggregates."""
        started = time.perf_counter()
        summary = PassSummary()
        snapshot = HealthSnapshot()
        queued_since_analyze = 0
        for tenant_id in await self.tenants():
            try:
                if not self.feature_enabled(tenant_id):
                    # No detection, but its interventions of the last 24 h and
                    # their outcomes (still reported) are measured all the same.
                    await self._add_health(snapshot, tenant_id)
                    continue
                result = await detect_tenant(
                    self.db, tenant_id=tenant_id, model=self.model, config=self.detection, now=now
                )
                await self._add_health(snapshot, tenant_id)
            except DatabaseUnavailable:
                # The tenant's transaction rolled back whole: the next pass redoes it.
                summary.failed_tenants.append(tenant_id)
                continue
            except Exception:
                # One tenant's failure (a deadlock, a row the code did not expect)
                # must not stop detection for every tenant after it in the pass.
                log.exception("churn: detection of tenant %s failed; next pass retries", tenant_id)
                summary.failed_tenants.append(tenant_id)
                continue
            summary.tenants.append(result)
            self._observe(result, "schedule")
            queued_since_analyze += result.sends_queued
            if queued_since_analyze >= ANALYZE_AFTER_SENDS:
                # Right away, not at the end of the pass: the workers are
                # already fetching this tenant's jobs.
                await self._analyze_queue()
                queued_since_analyze = 0
        if queued_since_analyze:
            # The pass's remaining sends: one ANALYZE (milliseconds) per pass that
            # queued anything.
            await self._analyze_queue()
        summary.seconds = time.perf_counter() - started
        snapshot.last_pass_at = datetime.now(UTC)
        snapshot.last_pass_seconds = summary.seconds
        snapshot.tenants = len(summary.tenants)
        self.health = snapshot
        self.metrics.pass_duration.observe(summary.seconds)
        return summary

    async def _analyze_queue(self) -> None:
        try:
            async with self.db.unscoped() as conn:
                await analyze_queue(conn)
        except DatabaseUnavailable:
            log.warning("churn: queue statistics not refreshed (postgres unavailable)")

    def _observe(self, result: TenantPass, trigger: str) -> None:
        self.metrics.leads_scored.inc(result.scored)
        for seconds in result.detection_seconds:
            self.metrics.detection_latency.labels(trigger).observe(seconds)

    async def _add_health(self, snapshot: HealthSnapshot, tenant_id: str) -> None:
        async with self.db.tenant(tenant_id) as conn:
            row = await conn.fetchrow(HEALTH_SQL)
        snapshot.interventions_24h += row["total"]
        snapshot.delivered_24h += row["delivered"]
        snapshot.succeeded_24h += row["succeeded"]
        snapshot.latency_sum += float(row["latency_sum"] or 0.0)
        snapshot.latency_count += row["latency_count"]

    async def requeue_stalled_jobs(self) -> int:
        """Put the jobs of workers without a heartbeat for STALLED_AFTER_SECONDS back in the queue.

        Two replicas may both find a job: ``retry_job`` moves it from ``doing``
        to ``todo`` only while it is ``doing`` (the second one gets an error and
        moves on), and the delivery claims its outbox row under a row lock.
        """
        stalled = 0
        for job in await self.app.job_manager.get_stalled_jobs(
            queue=QUEUE, seconds_since_heartbeat=STALLED_AFTER_SECONDS
        ):
            try:
                await self.app.job_manager.retry_job(job)
            except ConnectorException:
                continue  # another replica requeued it first
            stalled += 1
        if stalled:
            log.warning("churn recovery: %d stalled jobs requeued", stalled)
        return stalled

    async def recover_orphans(self) -> int:
        """Queue a job for every outbox row left pending/sending without one; return the count."""
        orphans = 0
        for tenant_id in await self.tenants():
            try:
                orphans += await self._recover_tenant_orphans(tenant_id)
            except DatabaseUnavailable:
                raise  # every tenant's would fail: the scheduler logs it once
            except asyncpg.UniqueViolationError:
                # Another replica's scheduler queued one of them between our
                # read and our insert (its queueing lock): the next pass finds
                # whichever of this tenant's orphans are left.
                log.info("churn recovery: tenant %s's orphans queued meanwhile", tenant_id)
            except Exception:
                log.exception("churn recovery: orphans of tenant %s not queued", tenant_id)
        await self.refresh_queue_depth()
        if orphans:
            log.warning("churn recovery: %d orphaned sends queued", orphans)
        return orphans

    async def _recover_tenant_orphans(self, tenant_id: str) -> int:
        async with self.db.tenant(tenant_id) as conn:
            rows = await conn.fetch(ORPHANS_SQL, ORPHAN_AFTER_SECONDS, QUEUE)
            return await defer_delivery_jobs(
                conn,
                tenant_id=tenant_id,
                jobs=[
                    SingleDelivery(
                        outbox_id=row["outbox_id"], priority=0, not_before=row["not_before"]
                    )
                    for row in rows
                ],
            )

    async def refresh_queue_depth(self) -> int:
        """Set ``churn_queue_depth`` and ``churn_queue_oldest_due_seconds`` from the
        queue (a table without tenant rows); return the depth."""
        async with self.db.unscoped() as conn:
            row = await conn.fetchrow(QUEUE_STATS_SQL, QUEUE)
        depth: int = row["depth"]
        self.metrics.queue_depth.set(depth)
        self.metrics.oldest_due.set(row["oldest_due_seconds"])
        self.last_queue_depth = depth
        return depth
