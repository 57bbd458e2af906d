"""The CRM webhook's work: validate, score, store, publish, acknowledge.

Order and guarantees, per event:

1. The route has authenticated the caller (tenant from the token only) and
   validated the body (a malformed event is a 4xx with a reason, never
   stored). ``accepted_at`` is taken there: the latency clock starts when the
   event is accepted, so scoring, storing and publishing count against it.
2. The lead is scored in-process by the lead-conversion model.
3. The event is stored in ``realtime_intelligence_events`` in a transaction
   scoped to the tenant (row-level security), with ``published_at`` NULL, by
   one call of ``realtime_store_events``: one round trip. If Postgres
   is unreachable the request fails with 503 and nothing is acknowledged, so
   the CRM retries: an acknowledged event is always stored.
4. It is appended to the tenant's Redis stream (bounded by
   REALTIME_PUBLISH_TIMEOUT). Success: 202 ``delivery: published`` and the
   stream id; the "published" mark goes to Postgres in a later batch.
   Redis unreachable: 202 ``delivery: deferred``; the row stays unpublished
   and `OutboxRelay` publishes it when Redis is back. After a failure the
   ingest skips Redis for a short back-off, so during an outage requests are
   answered at once instead of each waiting for a timeout. Until the relay
   has published a tenant's deferred events, that tenant's new events are
   deferred too, so that delivery keeps acceptance order (see `outbox`).

Group commit: the events of one tenant go through steps 2-4 together (one
model call, one function call that inserts all rows in one transaction, one
Redis command that appends them all). A tenant has at most one group in flight; events that arrive
while it is being stored wait for it and then form the next group, all of
them at once (whole requests, up to `MAX_GROUP` events: a batch request is
never split, so it is stored whole or not at all). At light load a group is
a single event and nothing waits longer than the current loop turn; under
load the groups grow by themselves with the rate, so the per-event cost
drops from several round trips to a fraction of one instead of every event
paying for its own transaction (which is what capped the ingest near 230
events/s). Within a tenant, groups are stored and published in arrival order.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from services.common.database import Database, DatabaseUnavailable
from services.realtime import store
from services.realtime.event_ids import new_event_id
from services.realtime.frames import encode_event_body
from services.realtime.metrics import RealtimeMetrics
from services.realtime.outbox import OutboxRelay, RowWriter
from services.realtime.schemas import DeliveryStatus, LeadEventAccepted, LeadEventCreate
from services.realtime.scoring import Scorer
from services.realtime.stream import (
    REDIS_BACKOFF_SECONDS,
    REDIS_DOWN_OR_SLOW,
    EventStream,
    PublishItem,
)

log = logging.getLogger(__name__)
# Most events of one tenant stored and published together (and so the most
# one batch request may hold).
MAX_GROUP = 500
IDEMPOTENCY_TTL_SECONDS = 24 * 3600
"""How long an Idempotency-Key is honoured (as Stripe does); see docs/contracts.md."""
# Failures that are no request's fault and hit every request alike: a group
# failing with one is not retried request by request (it would only multiply
# the load on a database that is already down).
_SHARED_FAILURES: tuple[type[BaseException], ...] = (
    DatabaseUnavailable,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.InterfaceError,
    OSError,
)


@dataclass(slots=True)
class _Pending:
    event: LeadEventCreate
    accepted_at: float
    # Increasing within a batch: the relay keeps a batch's order by it.
    event_id: str = field(default_factory=new_event_id)


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """A request's ``Idempotency-Key`` and the SHA-256 of its body."""

    key: str
    request_sha256: bytes


class IdempotencyKeyReusedError(Exception):
    """The tenant used this Idempotency-Key for a request with another body (422)."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__("this Idempotency-Key was used for a request with another body")


@dataclass(slots=True)
class _Request:
    """The events of one webhook request, answered together."""

    items: list[_Pending]
    future: asyncio.Future[list[LeadEventAccepted]]
    idempotency: IdempotencyKey | None = None


def _response(answers: list[LeadEventAccepted]) -> dict[str, Any]:
    return {"events": [answer.model_dump() for answer in answers]}


@dataclass(slots=True, eq=False, kw_only=True)
class IngestService:
    """Stores and publishes lead events for the webhook route."""

    db: Database
    events: EventStream
    scorer: Scorer
    writer: RowWriter
    relay: OutboxRelay
    metrics: RealtimeMetrics
    publish_timeout: float
    _skip_redis_until: float = field(default=0.0, init=False)
    # Per tenant, the requests waiting for the next group.
    _pending: dict[str, list[_Request]] = field(default_factory=dict, init=False)
    _scheduled: bool = field(default=False, init=False)
    _groups: set[asyncio.Task[None]] = field(default_factory=set, init=False)
    # Tenants with a group being scored, stored and published.
    _busy: set[str] = field(default_factory=set, init=False)

    async def ingest(
        self, *, tenant_id: str, event: LeadEventCreate, accepted_at: float
    ) -> LeadEventAccepted:
        """Score, store and publish one validated event of ``tenant_id``.

        Raises `DatabaseUnavailable` when the event could not be stored (the
        route answers 503 and nothing was acknowledged).
        """
        (accepted,) = await self.ingest_many(
            tenant_id=tenant_id, events=[event], accepted_at=accepted_at
        )
        return accepted

    async def ingest_many(
        self,
        *,
        tenant_id: str,
        events: Sequence[LeadEventCreate],
        accepted_at: float,
        idempotency: IdempotencyKey | None = None,
    ) -> list[LeadEventAccepted]:
        """`ingest` for the events of one request, atomically.

        They go into the same group, hence the same transaction: either all
        are stored and acknowledged or none is (a retried batch cannot leave
        half of itself stored twice). At most `MAX_GROUP` events.

        With ``idempotency``, the key is stored in that transaction: a request
        that reuses it gets the first request's answers and stores nothing, or
        `IdempotencyKeyReusedError` when its body differs.
        """
        if not 1 <= len(events) <= MAX_GROUP:
            raise ValueError(f"a request holds 1 to {MAX_GROUP} events, not {len(events)}")
        loop = asyncio.get_running_loop()
        request = _Request(
            items=[_Pending(event=event, accepted_at=accepted_at) for event in events],
            future=loop.create_future(),
            idempotency=idempotency,
        )
        self._pending.setdefault(tenant_id, []).append(request)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._start_groups)
        # Shielded: a client that disconnects must not cancel the group its
        # events share with other requests.
        return await asyncio.shield(request.future)

    def _start_groups(self) -> None:
        self._scheduled = False
        for tenant_id in list(self._pending):
            if tenant_id not in self._busy:
                self._start_group(tenant_id)

    def _start_group(self, tenant_id: str) -> None:
        waiting = self._pending.pop(tenant_id)
        # Whole requests only, so a batch is never split across transactions.
        size = len(waiting[0].items)
        taken = 1
        # A request with an Idempotency-Key is a group of its own: its key
        # decides whether its events are stored, independently of others'.
        while (
            waiting[0].idempotency is None
            and taken < len(waiting)
            and waiting[taken].idempotency is None
            and size + len(waiting[taken].items) <= MAX_GROUP
        ):
            size += len(waiting[taken].items)
            taken += 1
        if taken < len(waiting):
            self._pending[tenant_id] = waiting[taken:]
        self._busy.add(tenant_id)
        task = asyncio.create_task(self._process(tenant_id, waiting[:taken]))
        # Keep a reference until done (the loop only holds weak ones).
        self._groups.add(task)
        task.add_done_callback(functools.partial(self._group_done, tenant_id))

    def _group_done(self, tenant_id: str, task: asyncio.Task[None]) -> None:
        self._groups.discard(task)
        self._busy.discard(tenant_id)
        if tenant_id in self._pending:
            # Everything that arrived meanwhile goes as the next group.
            self._start_group(tenant_id)

    async def _process(self, tenant_id: str, requests: list[_Request]) -> None:
        items = [item for request in requests for item in request.items]
        try:
            answers = await self._store_and_publish(tenant_id, items, requests[0].idempotency)
        except asyncio.CancelledError:
            for request in requests:
                request.future.cancel()
            raise
        except _SHARED_FAILURES as exc:
            # Postgres is unreachable: every request of the group fails alike
            # (nothing of it was acknowledged, so the CRM retries each one).
            for request in requests:
                if not request.future.done():
                    request.future.set_exception(exc)
            return
        except Exception as exc:
            if len(requests) == 1:
                requests[0].future.set_exception(exc)
                return
            # Something in one request that validation could not foresee
            # failed the group's transaction (stored all or nothing, so nothing
            # is stored). One bad request must not fail the others: each is
            # stored again on its own, and only the culprit fails.
            log.warning(
                "group of %d requests of tenant %s failed (%s); storing them one by one",
                len(requests),
                tenant_id,
                type(exc).__name__,
            )
            for request in requests:
                await self._process(tenant_id, [request])
            return
        start = 0
        for request in requests:
            end = start + len(request.items)
            if not request.future.done():
                request.future.set_result(answers[start:end])
            start = end

    async def _store_and_publish(
        self, tenant_id: str, items: list[_Pending], idempotency: IdempotencyKey | None = None
    ) -> list[LeadEventAccepted]:
        scores = self.scorer.score_rows(
            [item.event.lead.to_row() for item in items], tenant_id=tenant_id
        )
        model_version = self.scorer.version
        rows = [
            store.NewEvent(
                event_id=item.event_id,
                lead_id=item.event.lead_id,
                event_type=item.event.event_type,
                agent_id=item.event.agent_id,
                document=store.intelligence_data(
                    score=score,
                    model_version=model_version,
                    lead=item.event.lead.model_dump(),
                    data=item.event.data,
                ),
                accepted_at=item.accepted_at,
            )
            for item, score in zip(items, scores, strict=True)
        ]
        if idempotency is None:
            await store.insert_events(self.db, tenant_id=tenant_id, rows=rows)
        else:
            known = await store.insert_events_once(
                self.db,
                tenant_id=tenant_id,
                rows=rows,
                key=idempotency.key,
                request_sha256=idempotency.request_sha256,
                response=_response(self._answers(items, scores, None, observe=False)),
                ttl_seconds=IDEMPOTENCY_TTL_SECONDS,
            )
            if known is not None:
                if known.request_sha256 != idempotency.request_sha256:
                    raise IdempotencyKeyReusedError(idempotency.key)
                return [LeadEventAccepted(**answer) for answer in known.response["events"]]
        publish = [
            PublishItem(
                event_id=item.event_id,
                agent_id=item.event.agent_id,
                accepted_at=item.accepted_at,
                body=encode_event_body(
                    event_id=item.event_id,
                    lead_id=item.event.lead_id,
                    event_type=item.event.event_type,
                    agent_id=item.event.agent_id,
                    score=score,
                    model_version=model_version,
                    data=item.event.data,
                    accepted_at=item.accepted_at,
                ),
            )
            for item, score in zip(items, scores, strict=True)
        ]
        stream_ids = await self._publish(tenant_id, publish)
        delivery = "published" if stream_ids is not None else "deferred"
        self.metrics.events_ingested.labels(publish=delivery).inc(len(items))
        self.metrics.count_stage_changes(item.event.event_type for item in items)
        answers = self._answers(items, scores, stream_ids)
        if idempotency is not None and stream_ids is not None:
            try:
                await store.save_response(
                    self.db, tenant_id=tenant_id, key=idempotency.key, response=_response(answers)
                )
            except _SHARED_FAILURES as exc:
                # The stored answer says "deferred": still true of a stored event.
                log.info("answer of an idempotent request not updated: %s", type(exc).__name__)
        return answers

    def _answers(
        self,
        items: list[_Pending],
        scores: Sequence[float],
        stream_ids: list[str] | None,
        *,
        observe: bool = True,
    ) -> list[LeadEventAccepted]:
        delivery: DeliveryStatus = "published" if stream_ids is not None else "deferred"
        model_version = self.scorer.version
        now = time.time()
        answers = []
        for index, (item, score) in enumerate(zip(items, scores, strict=True)):
            if observe:
                self.metrics.ingest_seconds.observe(now - item.accepted_at)
            answers.append(
                LeadEventAccepted(
                    event_id=item.event_id,
                    accepted_at=item.accepted_at,
                    stream_id=stream_ids[index] if stream_ids is not None else None,
                    delivery=delivery,
                    score=score,
                    model_version=model_version,
                )
            )
        return answers

    async def _publish(self, tenant_id: str, items: list[PublishItem]) -> list[str] | None:
        gate = self.relay.gate(tenant_id)
        if gate is not None:
            # The relay is publishing the tenant's deferred events: after them.
            await gate.wait()
        if self.relay.is_held(tenant_id) or time.monotonic() < self._skip_redis_until:
            # Behind the tenant's deferred events, not ahead of them: the
            # relay publishes the whole backlog in acceptance order.
            self.relay.hold(tenant_id, [item.event_id for item in items])
            return None
        try:
            async with asyncio.timeout(self.publish_timeout):
                stream_ids = await self.events.publish_many(tenant_id, items)
        except REDIS_DOWN_OR_SLOW as exc:
            # A timed-out XADD may still have been applied; the relay checks
            # the stream before publishing, so this cannot duplicate an event.
            log.warning(
                "publish of %d event(s) of tenant %s deferred: %s",
                len(items),
                tenant_id,
                type(exc).__name__,
            )
            self._skip_redis_until = time.monotonic() + REDIS_BACKOFF_SECONDS
            self.relay.hold(tenant_id, [item.event_id for item in items])
            return None
        for item, stream_id in zip(items, stream_ids, strict=True):
            self.writer.published(tenant_id, item.event_id, stream_id)
        return stream_ids
