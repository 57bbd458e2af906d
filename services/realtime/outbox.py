"""Keeping Postgres in step with the stream: batched marks and the outbox relay.

The ingest stores an event with ``published_at`` NULL, publishes it, and
acknowledges. Two background tasks per replica finish the bookkeeping off the
hot path:

- `RowWriter` batches, per tenant, the "published as stream id X" marks of
  the ingest and the first-delivery latencies of the sockets, and writes them
  every REALTIME_FLUSH_INTERVAL with one ``UPDATE ... FROM unnest(...)`` each,
  instead of one round trip per event or per socket.
- `OutboxRelay` publishes stored events that are still unpublished after
  REALTIME_RELAY_GRACE seconds: the ingest could not reach Redis (it answered
  ``delivery: deferred``), or its replica died between storing and marking.
  Before publishing it looks for the event in the stream (an XADD whose reply
  was lost, or a mark that was never written) so an event is not published
  twice. Rows are locked with ``FOR UPDATE SKIP LOCKED`` so replicas never
  relay the same row concurrently.

Which tenants the relay scans: row-level security hides other tenants' rows
from the application role, so there is no cross-tenant query. Every pass
(REALTIME_RELAY_INTERVAL) covers the tenants whose publish failed on this
replica; every REALTIME_RELAY_SCAN_INTERVAL it also covers every tenant with a
socket here, which catches events orphaned by a replica that died between
storing and publishing (or during an outage, before it could relay). Such an
event is relayed once any replica has a socket of its tenant, i.e. before a
live client could miss it; a reconnecting client gets it after its cursor
because it is appended to the stream then.

Delivery follows acceptance order per tenant, also across an outage: while a
tenant has events held back on this replica (`hold`), the ingest defers that
tenant's new events too instead of appending them ahead of the backlog; they
queue behind it in the outbox and the relay publishes them oldest first. The
hold ends when the newest held-back event is in the stream, whichever
replica's relay put it there: the relay first publishes the backlog older
than REALTIME_RELAY_GRACE, then, with the tenant's ingest paused for that
moment, the rest of what this replica deferred. The price is latency during
the recovery: a held tenant's new events wait up to a relay pass.
Across replicas, events are ordered by when each replica published them (the
same promise as for live traffic: by millisecond).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field

from services.common.database import Database, DatabaseUnavailable
from services.common.tasks import BackgroundTask
from services.realtime import store
from services.realtime.frames import FIELD_EVENT_ID
from services.realtime.metrics import RealtimeMetrics
from services.realtime.stream import REDIS_DOWN, EventStream, PublishItem

log = logging.getLogger(__name__)

# Upper bound of buffered writes per kind while Postgres is down. Marks beyond
# it are recovered by the relay's duplicate check; latencies are best effort.
MAX_BUFFERED = 200_000
# How far before an event's acceptance (app clock) to search the stream (Redis
# clock) for it: covers clock skew between hosts.
CLOCK_SKEW_MS = 60_000
MAX_SCAN_ENTRIES = 50_000
_POSTPONE: tuple[type[BaseException], ...] = (*REDIS_DOWN, DatabaseUnavailable)


@dataclass(slots=True, eq=False)
class RowWriter:
    """Buffers publish marks and delivery latencies; flushes them in batches."""

    db: Database
    _: KW_ONLY
    interval: float
    _marks: dict[str, dict[str, str]] = field(default_factory=dict, init=False)
    _latencies: dict[str, dict[str, float]] = field(default_factory=dict, init=False)
    _size: int = field(default=0, init=False)
    _loop: BackgroundTask = field(
        default_factory=lambda: BackgroundTask("realtime-row-writer"), init=False
    )
    # One flush at a time, so a caller of flush() (shutdown, tests) returns
    # only after everything buffered before the call is written.
    _flushing: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    def published(self, tenant_id: str, event_id: str, stream_id: str) -> None:
        """Remember that an event is in the stream under ``stream_id``."""
        if self._size < MAX_BUFFERED:
            self._marks.setdefault(tenant_id, {})[event_id] = stream_id
            self._size += 1

    def delivered(self, tenant_id: str, event_id: str, latency: float) -> None:
        """Remember an event's first delivery latency on this replica (seconds)."""
        per_tenant = self._latencies.setdefault(tenant_id, {})
        known = per_tenant.get(event_id)
        if known is None:
            if self._size >= MAX_BUFFERED:
                return
            self._size += 1
            per_tenant[event_id] = latency
        elif latency < known:
            per_tenant[event_id] = latency

    def start(self) -> None:
        """Start the periodic flush."""
        self._loop.start(self._run)

    async def stop(self) -> None:
        """Stop the periodic flush and write what is buffered."""
        await self._loop.stop()
        await self.flush()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.flush()

    async def flush(self) -> None:
        """Write the buffered marks and latencies, one transaction per tenant."""
        async with self._flushing:
            await self._flush()

    async def _flush(self) -> None:
        marks, self._marks = self._marks, {}
        latencies, self._latencies = self._latencies, {}
        self._size = 0
        for tenant_id in set(marks) | set(latencies):
            tenant_marks = marks.get(tenant_id, {})
            tenant_latencies = latencies.get(tenant_id, {})
            try:
                async with self.db.tenant(tenant_id) as conn:
                    # One statement: an event this replica published and
                    # delivered gets one row update, not two.
                    await store.mark_and_record(conn, tenant_marks, tenant_latencies)
            except (DatabaseUnavailable, OSError) as exc:
                log.warning(
                    "could not write %d marks/latencies: %s",
                    len(tenant_marks) + len(tenant_latencies),
                    exc,
                )
                for event_id, stream_id in tenant_marks.items():
                    self.published(tenant_id, event_id, stream_id)
                for event_id, latency in tenant_latencies.items():
                    self.delivered(tenant_id, event_id, latency)
            except Exception:
                log.exception("writing marks/latencies of tenant %s failed", tenant_id)


@dataclass(slots=True, eq=False)
class OutboxRelay:
    """Publishes stored events whose publication was deferred or lost."""

    db: Database
    events: EventStream
    metrics: RealtimeMetrics
    _: KW_ONLY
    tenants: Callable[[], list[str]]
    interval: float
    grace: float
    scan_interval: float
    batch: int = 500
    _next_scan: float = field(default=0.0, init=False)
    # tenant -> monotonic time until which it stays on the scan list even
    # without local sockets (its deferred rows must first age past grace).
    _nudged: dict[str, float] = field(default_factory=dict, init=False)
    # tenant -> the events this replica deferred for it, oldest first.
    _held: dict[str, list[str]] = field(default_factory=dict, init=False)
    # tenant -> set while its hold is being released (the ingest waits).
    _gates: dict[str, asyncio.Event] = field(default_factory=dict, init=False)
    _loop: BackgroundTask = field(
        default_factory=lambda: BackgroundTask("realtime-outbox-relay"), init=False
    )

    def nudge(self, tenant_id: str) -> None:
        """A publish for this tenant failed here: scan it until its rows are out."""
        self._nudged[tenant_id] = time.monotonic() + self.grace + 2 * self.interval

    def hold(self, tenant_id: str, event_ids: list[str]) -> None:
        """These stored events of the tenant were deferred: hold its new ones behind them."""
        self._held.setdefault(tenant_id, []).extend(event_ids)
        self.nudge(tenant_id)

    def is_held(self, tenant_id: str) -> bool:
        """Whether the tenant's new events must queue behind deferred ones."""
        return tenant_id in self._held

    def gate(self, tenant_id: str) -> asyncio.Event | None:
        """While the tenant's hold is being released: an event set when it is done."""
        return self._gates.get(tenant_id)

    async def _release(self, tenant_id: str) -> None:
        """Publish what this replica deferred for the tenant, in order, and end the hold.

        Runs after `relay_tenant` has published the backlog older than the
        grace period, so what is left is recent. The ingest waits at the gate
        meanwhile: nothing of the tenant is published ahead of the backlog,
        and the hold ends instead of being extended by each new event. These
        rows need no grace period: this replica's ingest deferred them and
        will not publish them itself.
        """
        if tenant_id not in self._held:
            return
        gate = self._gates[tenant_id] = asyncio.Event()
        try:
            held = self._held[tenant_id]
            start = 0
            # A while loop: a publish failing meanwhile may still append ids.
            while start < len(held):
                ids = held[start : start + self.batch]
                start += len(ids)
                async with self.db.tenant(tenant_id) as conn:
                    rows = await store.unpublished_among(conn, ids)
                    if rows:
                        items = [
                            PublishItem(
                                event_id=row.event_id,
                                agent_id=row.agent_id,
                                accepted_at=row.accepted_at,
                                body=row.body(),
                            )
                            for row in rows
                        ]
                        present = await self._already_in_stream(tenant_id, rows)
                        missing = [i for i in items if i.event_id not in present]
                        published = (
                            await self.events.publish_many(tenant_id, missing) if missing else []
                        )
                        self.metrics.events_relayed.inc(len(missing))
                        marks = dict(present)
                        marks.update(zip((i.event_id for i in missing), published, strict=True))
                        await store.mark_published(conn, marks)
            del self._held[tenant_id]
        finally:
            del self._gates[tenant_id]
            gate.set()

    def start(self) -> None:
        """Start the periodic relay pass."""
        self._loop.start(self._run)

    async def stop(self) -> None:
        """Stop relaying (rows left unpublished stay for the next replica)."""
        await self._loop.stop()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox relay pass failed")

    async def run_once(self) -> int:
        """One pass over the scan list; returns how many events were published."""
        now = time.monotonic()
        for tenant_id in self._held:
            self._nudged[tenant_id] = max(self._nudged.get(tenant_id, 0.0), now + self.grace)
        scan = set(self._nudged)
        if now >= self._next_scan:
            self._next_scan = now + self.scan_interval
            scan.update(self.tenants())
        published = 0
        for tenant_id in sorted(scan):
            try:
                count = await self.relay_tenant(tenant_id)
                await self._release(tenant_id)
            except _POSTPONE as exc:
                # Still down: keep the tenant nudged and try on the next pass.
                log.info("relay of tenant %s postponed: %s", tenant_id, exc)
                self._nudged[tenant_id] = max(self._nudged.get(tenant_id, 0.0), now + self.grace)
                continue
            published += count
            if count == 0 and self._nudged.get(tenant_id, 0.0) < now:
                self._nudged.pop(tenant_id, None)
        return published

    async def relay_tenant(self, tenant_id: str) -> int:
        """Publish the tenant's unpublished events older than the grace period."""
        total = 0
        while True:
            async with self.db.tenant(tenant_id) as conn:
                rows = await store.unpublished(conn, older_than=self.grace, limit=self.batch)
                if not rows:
                    return total
                present = await self._already_in_stream(tenant_id, rows)
                marks: dict[str, str] = {}
                for row in rows:
                    stream_id = present.get(row.event_id)
                    if stream_id is None:
                        stream_id = await self.events.publish(
                            tenant_id=tenant_id,
                            event_id=row.event_id,
                            agent_id=row.agent_id,
                            accepted_at=row.accepted_at,
                            body=row.body(),
                        )
                        self.metrics.events_relayed.inc()
                        total += 1
                    marks[row.event_id] = stream_id
                await store.mark_published(conn, marks)
            if len(rows) < self.batch:
                return total

    async def _already_in_stream(
        self, tenant_id: str, rows: list[store.StoredEvent]
    ) -> dict[str, str]:
        wanted = {row.event_id for row in rows}
        start_ms = max(0, int(min(row.accepted_at for row in rows) * 1000) - CLOCK_SKEW_MS)
        start = f"{start_ms}-0"
        found: dict[str, str] = {}
        scanned = 0
        field = FIELD_EVENT_ID.encode()
        while scanned < MAX_SCAN_ENTRIES and len(found) < len(wanted):
            page = await self.events.range_from(tenant_id, start, count=1000)
            for stream_id, fields in page:
                raw = fields.get(field, fields.get(FIELD_EVENT_ID))
                event_id = raw.decode() if isinstance(raw, bytes) else raw
                if event_id in wanted:
                    found[event_id] = stream_id
            scanned += len(page)
            if len(page) < 1000:
                break
            start = "(" + page[-1][0]
        return found
