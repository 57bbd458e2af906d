"""The in-process copy of the flags that every decision reads.

A decision (``FlagCache.evaluate`` / ``is_enabled``) reads only memory: the
feature's threshold and the tenant's remembered bucket. It never waits on
the network. ``FlagCache.run`` keeps the copy fresh: it subscribes to
``feature_flags:changed`` (every write publishes the name of the flag it
changed, and the cache re-reads that key, so an out-of-order notice cannot
install an old value), re-reads every flag after (re)subscribing, and again
every ``refresh_interval`` seconds as a safety net for a lost notice.

When Redis is unreachable the copy is kept as it was: a feature keeps its
last known state, and one never seen is disabled. ``feature_flags_stale``
is 1 until a refresh succeeds again, ``feature_flags_last_sync_timestamp_seconds``
says since when, and ``feature_flag_sync_failures_total`` counts attempts.
A flag that Redis answers has no record (Redis lost it: a restart without
persistence, a failover to an empty replica, a ``FLUSHALL``) is disabled too,
and ``feature_flag_missing{feature}`` is 1 until it is back (the rollback
handler restores it from Postgres: ``services.rollout.restore``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from prometheus_client import CollectorRegistry

from services.common.flags.bucketing import Bucketer
from services.common.flags.model import (
    CHANNEL,
    FEATURES,
    FlagState,
    InvalidFlag,
    check_feature,
    get_flag,
    read_flags,
)
from services.common.metrics import MetricFactory
from services.common.redis import Redis, RedisUnavailable, redis_errors
from services.common.tasks import stop_tasks

log = logging.getLogger(__name__)

TREATMENT: Final = "treatment"
CONTROL: Final = "control"


class Reason(StrEnum):
    """Why a decision came out as it did (OpenFeature's reason names)."""

    #: The flag is on for every tenant (100%).
    TARGETING_MATCH = "TARGETING_MATCH"
    #: The flag is on for a share of tenants; the bucket decided.
    SPLIT = "SPLIT"
    #: The flag is off (kill switch) or at 0%.
    DEFAULT = "DEFAULT"
    #: No state has ever been read for this flag (Redis unreachable since start,
    #: or the flag does not exist): disabled.
    ERROR = "ERROR"


@dataclass(frozen=True, slots=True)
class Decision:
    """One evaluation: the value, why, and the variant for experiments."""

    enabled: bool
    reason: Reason
    variant: str | None = None
    bucket: int | None = None


_UNKNOWN: Final = Decision(False, Reason.ERROR)
_OFF: Final = Decision(False, Reason.DEFAULT)

ExposureSink = Callable[[str, str, Decision, float], bool]
"""Called with (feature, tenant_id, decision, percentage) on a first exposure;
False when it could not be taken (it is offered again at the next evaluation)."""


class FlagMetrics:
    """The cache's health (``FeatureFlagsStale``) and each feature's state as this
    replica decides it (the overview's "Rollout state" panel).

    The per-feature gauges carry one ``feature`` label from ``FEATURES`` (four
    series each per replica) and exist from the start at 0: a flag never read
    is disabled (``Reason.ERROR``), which is what they then say.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        factory = MetricFactory(registry)
        self.stale = factory.gauge("feature_flags_stale")
        self.last_sync = factory.gauge("feature_flags_last_sync_timestamp_seconds")
        self.failures = factory.counter("feature_flag_sync_failures_total")
        self.known = factory.gauge("feature_flags_known")
        self.enabled = factory.gauge("feature_flag_enabled", labelvalues=FEATURES)
        self.rollout_ratio = factory.gauge("feature_flag_rollout_ratio", labelvalues=FEATURES)
        self.missing = factory.gauge("feature_flag_missing", labelvalues=FEATURES)

    def show(self, feature: str, state: FlagState | None) -> None:
        """Export ``state`` (None: not known, so off at 0) as ``feature``'s gauges."""
        check_feature(feature)  # the label stays within the catalog
        enabled = state is not None and state.enabled
        self.enabled.labels(feature).set(1 if enabled else 0)
        # Base unit: a ratio, not the percentage operators type.
        ratio = state.rollout_percentage / 100 if state is not None else 0.0
        self.rollout_ratio.labels(feature).set(ratio)


class FlagCache:
    """Feature -> state, read from Redis in the background, evaluated in memory."""

    def __init__(
        self,
        redis: Redis,
        *,
        registry: CollectorRegistry,
        refresh_interval: float = 30.0,
        exposure: ExposureSink | None = None,
    ) -> None:
        self._redis = redis
        self.refresh_interval = refresh_interval
        self.metrics = FlagMetrics(registry)
        self._exposure = exposure
        self._states: dict[str, FlagState] = {}
        self._thresholds: dict[str, int] = {}
        self._bucketers = {feature: Bucketer(feature) for feature in FEATURES}
        self._exposed: set[tuple[str, str]] = set()
        self._synced = asyncio.Event()
        self._refreshes = 0
        self._stale = True
        self.metrics.stale.set(1)

    # -- decisions (memory only) ---------------------------------------------

    def is_enabled(self, feature: str, tenant_id: str) -> bool:
        """The raw decision: no reason, no exposure record. Unknown feature -> False."""
        threshold = self._thresholds.get(feature)
        if not threshold:
            return False
        return self._bucketers[feature](tenant_id) < threshold

    def evaluate(self, feature: str, tenant_id: str) -> Decision:
        """The decision with its reason and variant; records a first exposure."""
        state = self._states.get(feature)
        if state is None:
            return _UNKNOWN
        if not state.enabled or state.threshold == 0:
            return _OFF
        if state.threshold >= 10_000:
            decision = Decision(True, Reason.TARGETING_MATCH, TREATMENT)
        else:
            unit_bucket = self._bucketers[feature](tenant_id)
            enabled = unit_bucket < state.threshold
            decision = Decision(
                enabled, Reason.SPLIT, TREATMENT if enabled else CONTROL, unit_bucket
            )
        if self._exposure is not None and (feature, tenant_id) not in self._exposed:
            if decision.bucket is None:
                decision = Decision(
                    decision.enabled,
                    decision.reason,
                    decision.variant,
                    self._bucketers[feature](tenant_id),
                )
            if self._exposure(feature, tenant_id, decision, state.rollout_percentage):
                self._exposed.add((feature, tenant_id))
        return decision

    def state(self, feature: str) -> FlagState | None:
        """The local copy of one flag (None when never read)."""
        return self._states.get(check_feature(feature))

    @property
    def synced(self) -> bool:
        """True once every flag has been read at least once."""
        return self._synced.is_set()

    @property
    def stale(self) -> bool:
        """True until the first read and while Redis cannot be read (``feature_flags_stale``):
        decisions then use the last known state, and flag changes do not arrive."""
        return self._stale

    # -- keeping the copy fresh -----------------------------------------------

    def apply(self, feature: str, state: FlagState | None) -> None:
        """Install one flag's state (None: the flag does not exist, so disabled)."""
        check_feature(feature)
        if state is None:
            self._states.pop(feature, None)
            self._thresholds.pop(feature, None)
        else:
            self._states[feature] = state
            self._thresholds[feature] = state.threshold
        self.metrics.show(feature, state)
        self.metrics.missing.labels(feature).set(1 if state is None else 0)
        self.metrics.known.set(len(self._states))

    async def refresh(self) -> None:
        """Read every flag now. Raises ``RedisUnavailable``; a malformed record
        keeps that flag's last known state."""
        stored = await read_flags(self._redis)
        for problem in stored.invalid.values():
            log.error("feature flags: %s; keeping the last known state", problem)
            self.metrics.failures.inc()
        for feature, state in stored.states.items():
            self.apply(feature, state)
        self._synced.set()
        self._refreshes += 1
        self._stale = False
        self.metrics.stale.set(0)
        self.metrics.last_sync.set(time.time())

    async def _refresh_one(self, feature: str) -> None:
        try:
            self.apply(feature, await get_flag(self._redis, feature))
        except InvalidFlag as exc:
            log.error("feature flags: %s; keeping the last known state", exc)
            self.metrics.failures.inc()

    async def _follow(self) -> None:
        """Subscribe, read everything, then apply notices until the connection fails."""
        pubsub = self._redis.pubsub()
        try:
            with redis_errors():
                await pubsub.subscribe(CHANNEL)
            await self.refresh()
            next_refresh = time.monotonic() + self.refresh_interval
            while True:
                timeout = max(0.0, next_refresh - time.monotonic())
                with redis_errors():
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=timeout
                    )
                if message is not None and message.get("type") == "message":
                    raw = message.get("data")
                    name = raw.decode() if isinstance(raw, bytes) else str(raw)
                    if name in FEATURES:
                        await self._refresh_one(name)
                if time.monotonic() >= next_refresh:
                    await self.refresh()
                    next_refresh = time.monotonic() + self.refresh_interval
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    async def run(self, *, max_backoff: float = 5.0) -> None:
        """Keep the copy fresh until cancelled, riding out Redis outages."""
        backoff = 0.2
        while True:
            refreshes = self._refreshes
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Whatever ends a follow (an outage, NOPERM after an ACL change,
                # MASTERDOWN, a bug) must not end the loop: a dead task would
                # freeze every flag, the kill switch included, and say nothing.
                if self._refreshes > refreshes:
                    backoff = 0.2  # it worked for a while: retry quickly
                self._stale = True
                self.metrics.stale.set(1)
                self.metrics.failures.inc()
                if isinstance(exc, RedisUnavailable):
                    log.warning("feature flags: %s; keeping the last known state", exc.reason)
                else:
                    log.exception("feature flags: reading them failed; keeping the last state")
            await asyncio.sleep(backoff)
            backoff = min(max_backoff, backoff * 2)

    async def wait_synced(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the first full read; True if it happened."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._synced.wait()
        return self.synced

    @asynccontextmanager
    async def running(self, *, first_sync_timeout: float = 2.0) -> AsyncIterator[FlagCache]:
        """Run ``run`` in the background; wait briefly for the first read so a
        service does not start by refusing every feature while Redis is up."""
        task = asyncio.create_task(self.run(), name="feature-flag-cache")
        try:
            await self.wait_synced(first_sync_timeout)
            yield self
        finally:
            await stop_tasks([task])
