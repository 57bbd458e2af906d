"""Inference for ml-services: worker threads, micro-batching, a deadline, metrics.

The model runs in a small dedicated thread pool so the event loop keeps
serving health checks and other requests while leads are scored, and so a
slow model cannot starve the loop's default executor.

Single-lead requests are coalesced: each one is queued, and a dispatcher
takes whatever is waiting (up to ML_BATCH_SIZE) into one model call. One
scikit-learn call costs about the same for 1 row as for 32 (its per-call
overhead dominates), so under concurrency this multiplies throughput, while
an idle service still answers a lone request at once: nothing waits for a
batch to fill. Batch requests are already batches and go straight to a worker.

Each call waits at most ML_INFERENCE_TIMEOUT seconds; a late call raises
`InferenceTimeoutError` (the route answers 503). Python cannot interrupt the
worker thread, so a timed-out call still finishes in the background; the pool
size bounds how many can pile up.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import KW_ONLY, InitVar, dataclass, field
from typing import Final, Literal, TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from services.common.latency import LatencySummary, LatencyWindow
from services.common.metrics import MetricFactory
from services.common.scoring import LeadFeatures, LeadScorer
from services.common.series import Series
from services.common.tasks import stop_tasks

Kind = Literal["single", "batch"]
KINDS: Final[tuple[Kind, ...]] = ("single", "batch")
_T = TypeVar("_T")


class InferenceTimeoutError(Exception):
    """Inference did not finish within ML_INFERENCE_TIMEOUT."""


class _CacheCollector(Collector):
    """Exports the scorer cache's own hit/miss counters at scrape time.

    The cache counts under its lock; reading those counts when Prometheus
    scrapes avoids a second, possibly diverging, set of counters.
    """

    def __init__(self, scorer: LeadScorer, *, hits: Series, misses: Series) -> None:
        self._scorer = scorer
        self._hits = hits
        self._misses = misses

    def collect(self) -> Iterator[Metric]:
        stats = self._scorer.cache.stats()
        for series, value in ((self._hits, stats.hits), (self._misses, stats.misses)):
            # With ``_created``, as every other counter: a new cache is a reset.
            yield CounterMetricFamily(
                series.registered_name, series.help, value=value, created=stats.created
            )


class InferenceMetrics:
    """The service's Prometheus series, registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry, scorer: LeadScorer) -> None:
        factory = MetricFactory(registry)
        # Each kind at 0 from the start: increase() and rate() cannot see the first
        # event of a series that appears already counted.
        self.duration = factory.histogram("ml_inference_duration_seconds", labelvalues=KINDS)
        self.predictions = factory.counter("ml_predictions_total", labelvalues=KINDS)
        self.timeouts = factory.counter("ml_inference_timeouts_total", labelvalues=KINDS)
        self.coalesced = factory.histogram("ml_coalesced_batch_leads")
        registry.register(
            _CacheCollector(
                scorer,
                hits=factory.series("ml_score_cache_hits_total", "counter"),
                misses=factory.series("ml_score_cache_misses_total", "counter"),
            )
        )


@dataclass
class _Pending:
    """A queued single-lead request and the future its caller awaits."""

    tenant_id: str
    features: LeadFeatures
    future: asyncio.Future[float]


@dataclass(slots=True, eq=False)
class InferenceService:
    """Runs `LeadScorer` calls off the event loop under a deadline, measuring each.

    Call `start` inside the running event loop (the lifespan does) before
    scoring single leads, and `close` on shutdown.
    """

    scorer: LeadScorer
    _: KW_ONLY
    registry: InitVar[CollectorRegistry]
    timeout_seconds: float
    workers: int
    window_size: InitVar[int]
    _executor: ThreadPoolExecutor = field(init=False)
    _metrics: InferenceMetrics = field(init=False)
    _windows: dict[Kind, LatencyWindow] = field(init=False)
    _queue: asyncio.Queue[_Pending] = field(default_factory=asyncio.Queue, init=False)
    _dispatchers: list[asyncio.Task[None]] = field(default_factory=list, init=False)

    def __post_init__(self, registry: CollectorRegistry, window_size: int) -> None:
        self._executor = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="ml-infer")
        self._metrics = InferenceMetrics(registry, self.scorer)
        self._windows = {kind: LatencyWindow(max_samples=window_size) for kind in KINDS}

    def start(self) -> None:
        """Start one dispatcher per worker thread, so every worker can be busy."""
        if not self._dispatchers:
            self._dispatchers = [
                asyncio.create_task(self._dispatch(), name=f"ml-dispatch-{i}")
                for i in range(self.workers)
            ]

    async def score_one(self, features: LeadFeatures, *, tenant_id: str) -> float:
        """Score one lead for ``tenant_id``; raises `InferenceTimeoutError`."""
        if not self._dispatchers:
            raise RuntimeError("InferenceService.start() was not called")
        started = time.perf_counter()
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(tenant_id, features, future))
        try:
            score = await asyncio.wait_for(future, timeout=self.timeout_seconds)
        except TimeoutError:
            raise self._timed_out("single", 1, time.perf_counter() - started) from None
        self._observe("single", 1, time.perf_counter() - started)
        return score

    async def score_many(self, features: Sequence[LeadFeatures], *, tenant_id: str) -> list[float]:
        """Score leads in input order (chunked by ML_BATCH_SIZE in the scorer)."""
        started = time.perf_counter()
        call = functools.partial(self.scorer.score_batch, features, tenant_id=tenant_id)
        try:
            scores = await self._in_thread(call)
        except TimeoutError:
            raise self._timed_out("batch", len(features), time.perf_counter() - started) from None
        self._observe("batch", len(scores), time.perf_counter() - started)
        return scores

    async def _dispatch(self) -> None:
        batch_size = self.scorer.batch_size
        while True:
            batch = [await self._queue.get()]
            while len(batch) < batch_size and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            # A caller that already timed out no longer needs its lead scored.
            batch = [item for item in batch if not item.future.done()]
            if not batch:
                continue
            self._metrics.coalesced.observe(len(batch))
            pairs = [(item.tenant_id, item.features) for item in batch]
            loop = asyncio.get_running_loop()
            try:
                scores = await loop.run_in_executor(self._executor, self.scorer.score_pairs, pairs)
            except Exception as exc:  # hand the failure to every waiting caller
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            for item, score in zip(batch, scores, strict=True):
                if not item.future.done():
                    item.future.set_result(score)

    def _timed_out(self, kind: Kind, leads: int, waited: float) -> InferenceTimeoutError:
        self._metrics.timeouts.labels(kind).inc()
        # The caller waited this long for nothing: left out, a hung scorer would
        # take the slow calls out of the p95 (the latency alerts and the rollback
        # trigger would see only the calls that made it, or none at all).
        self._metrics.duration.labels(kind).observe(waited)
        self._windows[kind].record(waited)
        return InferenceTimeoutError(
            f"scoring {leads} lead(s) took longer than {self.timeout_seconds:g} s "
            "(ML_INFERENCE_TIMEOUT)"
        )

    def _observe(self, kind: Kind, leads: int, seconds: float) -> None:
        self._metrics.duration.labels(kind).observe(seconds)
        self._metrics.predictions.labels(kind).inc(leads)
        self._windows[kind].record(seconds)

    async def _in_thread(self, call: Callable[[], _T]) -> _T:
        loop = asyncio.get_running_loop()
        return await asyncio.wait_for(
            loop.run_in_executor(self._executor, call), timeout=self.timeout_seconds
        )

    def latency(self, kind: Kind) -> LatencySummary:
        """Percentiles of the recent calls of ``kind``."""
        return self._windows[kind].summary()

    async def close(self) -> None:
        """Stop the dispatchers and worker threads; queued callers get cancelled.

        Calls already running in a worker (possibly abandoned after a timeout)
        are waited for, off the event loop, so none outlives the app.
        """
        await stop_tasks(self._dispatchers)
        self._dispatchers = []
        while not self._queue.empty():
            self._queue.get_nowait().future.cancel()
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
