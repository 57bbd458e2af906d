"""What one websocket-manager process runs, built in the app's lifespan.

`RealtimeRuntime` wires the parts around the Postgres pool and Redis client
that `create_app` opened: the ingest, the feed hub (tenant pools, stream
reader, heartbeats, caps), the batched row writer and the outbox relay. It
lives on ``app.state.realtime`` and reaches routes through `deps`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field

from fastapi import FastAPI

from services.common.auth import TokenVerifier
from services.common.database import Database
from services.common.redis import Redis
from services.common.scoring import LeadScorer
from services.realtime.budget import IngestBudget
from services.realtime.config import RealtimeSettings
from services.realtime.hub import FeedHub
from services.realtime.ingest import IngestService
from services.realtime.metrics import LatencyWindow, RealtimeMetrics
from services.realtime.outbox import OutboxRelay, RowWriter
from services.realtime.scoring import Scorer
from services.realtime.stream import EventStream

log = logging.getLogger(__name__)


@dataclass(slots=True, eq=False, kw_only=True)
class RealtimeRuntime:
    """The service's long-lived components for one process."""

    settings: RealtimeSettings
    db: Database
    redis: Redis
    scorer: Scorer
    metrics: RealtimeMetrics
    #: The app's verifier: the feed closes a socket whose token it learns is revoked.
    verifier: TokenVerifier
    window: LatencyWindow = field(init=False)
    events: EventStream = field(init=False)
    writer: RowWriter = field(init=False)
    hub: FeedHub = field(init=False)
    relay: OutboxRelay = field(init=False)
    ingest: IngestService = field(init=False)
    budget: IngestBudget = field(init=False)

    def __post_init__(self) -> None:
        settings, db, metrics = self.settings, self.db, self.metrics
        self.window = LatencyWindow(window_seconds=settings.realtime_latency_window_seconds)
        self.events = EventStream(self.redis, maxlen=settings.realtime_stream_maxlen)
        self.writer = RowWriter(db, interval=settings.realtime_flush_interval)
        self.hub = FeedHub(
            settings=settings,
            db=db,
            redis=self.redis,
            events=self.events,
            metrics=metrics,
            window=self.window,
            writer=self.writer,
            verifier=self.verifier,
        )
        self.relay = OutboxRelay(
            db,
            self.events,
            metrics,
            tenants=self.hub.registry.tenants,
            interval=settings.realtime_relay_interval,
            grace=settings.realtime_relay_grace,
            scan_interval=settings.realtime_relay_scan_interval,
        )
        self.ingest = IngestService(
            db=db,
            events=self.events,
            scorer=self.scorer,
            writer=self.writer,
            relay=self.relay,
            metrics=metrics,
            publish_timeout=settings.realtime_publish_timeout,
        )
        self.budget = IngestBudget(
            self.redis,
            events_per_second=settings.realtime_tenant_event_rate,
            timeout=settings.realtime_publish_timeout,
        )

    def start(self) -> None:
        """Start the background tasks."""
        self.writer.start()
        self.hub.start()
        self.relay.start()

    async def warm_up(self, *, connections: int) -> None:
        """Open pooled Postgres and Redis connections before traffic arrives.

        Both pools open connections lazily; without this the first requests
        of a fresh replica pay for connection set-up (TLS, SCRAM) and show up
        as latency spikes. A dependency that is down is left for later.
        """
        results = await asyncio.gather(
            *(self.db.ping() for _ in range(connections)),
            *(self.redis.ping() for _ in range(connections)),
            return_exceptions=True,
        )
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            log.info("pool warm-up incomplete: %s", type(failures[0]).__name__)

    async def stop(self) -> None:
        """Stop the background tasks, writing what is still buffered."""
        await self.relay.stop()
        await self.hub.stop()
        await self.writer.stop()


def realtime_lifespan(
    settings: RealtimeSettings,
    *,
    scorer: Scorer | None,
    metrics: RealtimeMetrics,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The service lifespan `create_app` nests inside its own (stores and storage open)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = RealtimeRuntime(
            settings=settings,
            db=app.state.db,
            redis=app.state.redis,
            scorer=scorer
            if scorer is not None
            else LeadScorer.from_settings(settings, s3=app.state.storage.client),
            metrics=metrics,
            verifier=app.state.token_verifier,
        )
        app.state.realtime = runtime
        await runtime.warm_up(connections=min(4, settings.db_pool_size))
        runtime.start()
        # Everything loaded so far (the model, pydantic schemas, modules) lives
        # as long as the process: moving it out of the collected generations
        # keeps full collections, i.e. latency spikes, short on the hot path.
        gc.freeze()
        try:
            yield
        finally:
            await runtime.stop()

    return lifespan
