"""First exposure of a tenant to a feature, written once to ``ab_test_assignments``.

``FlagCache.evaluate`` calls ``ExposureRecorder.record`` the first time a
process evaluates a (feature, tenant) pair while the flag is on. ``record``
only appends to a bounded queue (``put_nowait``), so the request never waits
for Postgres; a background task writes the rows, each in the tenant's own
transaction (row-level security), with ``ON CONFLICT DO NOTHING`` so that
every replica of every service may report the same exposure and one row
stays: the first. Randomisation is by tenant, so ``user_id`` is ``'*'``
(the whole tenant). When the queue is full the exposure is refused and
counted (``feature_flag_exposures_dropped_total``), and the cache offers it
again at the tenant's next evaluation; one that Postgres could not take is
queued again and retried. (Dropped for good, a tenant's first exposure was
missing from the experiment's units until the process restarted.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final

from prometheus_client import CollectorRegistry

from services.common.database import Database, DatabaseUnavailable
from services.common.flags.cache import Decision
from services.common.metrics import MetricFactory
from services.common.tasks import stop_tasks

log = logging.getLogger(__name__)

TENANT_UNIT: Final = "*"
#: Pause after Postgres refused a write, before the next one (it is down).
RETRY_SECONDS: Final = 1.0

INSERT_ASSIGNMENT: Final = (
    "INSERT INTO ab_test_assignments "
    "(user_id, feature_name, variant, bucket, rollout_percentage) "
    "VALUES ($1, $2, $3, $4, $5) "
    "ON CONFLICT ON CONSTRAINT ab_test_assignments_once DO NOTHING"
)


@dataclass(frozen=True, slots=True)
class Exposure:
    """One first exposure waiting to be written."""

    tenant_id: str
    feature: str
    variant: str
    bucket: int
    rollout_percentage: float


class ExposureRecorder:
    """Queue of first exposures and the task that writes them."""

    def __init__(
        self, db: Database, *, registry: CollectorRegistry, max_pending: int = 10_000
    ) -> None:
        self._db = db
        self._queue: asyncio.Queue[Exposure] = asyncio.Queue(max_pending)
        factory = MetricFactory(registry)
        self.written = factory.counter("feature_flag_exposures_written_total")
        self.dropped = factory.counter("feature_flag_exposures_dropped_total")

    def record(self, feature: str, tenant_id: str, decision: Decision, percentage: float) -> bool:
        """Queue an exposure; never blocks (the hot path calls this). False when the
        queue is full: the caller offers it again later."""
        if decision.variant is None or decision.bucket is None:
            return True
        try:
            self._queue.put_nowait(
                Exposure(tenant_id, feature, decision.variant, decision.bucket, percentage)
            )
        except asyncio.QueueFull:
            self.dropped.inc()
            return False
        return True

    async def write(self, exposure: Exposure) -> None:
        """Write one exposure in its tenant's transaction (idempotent)."""
        async with self._db.tenant(exposure.tenant_id) as conn:
            await conn.execute(
                INSERT_ASSIGNMENT,
                TENANT_UNIT,
                exposure.feature,
                exposure.variant,
                exposure.bucket,
                exposure.rollout_percentage,
            )
        self.written.inc()

    async def drain(self) -> None:
        """Write everything queued so far (tests and shutdown), retrying nothing."""
        while not self._queue.empty():
            await self._write_next(retry=False)

    async def _write_next(self, *, retry: bool = True) -> None:
        exposure = await self._queue.get()
        try:
            await self.write(exposure)
        except DatabaseUnavailable as exc:
            log.warning("exposure of %s not recorded yet: %s", exposure.feature, exc.reason)
            if retry and not self._queue.full():  # no await between the check and the put
                self._queue.put_nowait(exposure)
                await asyncio.sleep(RETRY_SECONDS)
            else:
                self.dropped.inc()
        except Exception:
            self.dropped.inc()
            log.exception("exposure of %s not recorded", exposure.feature)
        finally:
            self._queue.task_done()

    async def run(self) -> None:
        """Write exposures as they come, until cancelled."""
        while True:
            await self._write_next()

    @asynccontextmanager
    async def running(self, *, drain_timeout: float = 2.0) -> AsyncIterator[ExposureRecorder]:
        """Run the writer in the background; on exit, write what is queued (bounded)."""
        task = asyncio.create_task(self.run(), name="feature-flag-exposures")
        try:
            yield self
        finally:
            await stop_tasks([task])
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.drain(), drain_timeout)
