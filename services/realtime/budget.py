"""Each tenant's share of the ingest: a rate budget across replicas.

Every replica serves every tenant, so without a budget one tenant's runaway
integration (a CRM replaying its history in a loop) takes the Postgres writes,
the scorer's CPU and the stream fan-out that the other tenants' feeds need to
stay within their latency target. The budget is REALTIME_TENANT_EVENT_RATE
events per second per tenant, averaged over a sliding window of
``WINDOW_SECONDS``, counted in Redis so that it holds whatever the number of
replicas. A batch costs its number of events. A request over the budget is a
429 with ``Retry-After`` and nothing is stored: CRMs retry webhooks on 429.

The counting is the ``limits`` library's sliding-window counter (two
counters per tenant and an atomic Lua script), run on the service's own Redis
pool, so its connections, TLS and timeouts are those of every other command.

When Redis cannot answer, the budget is not checked and the request goes on
(and, for REDIS_BACKOFF_SECONDS after a failure, the next ones without asking):
the ingest stores to Postgres and defers delivery while Redis is down
(docs/contracts.md), and refusing every tenant's events then would lose the
CRMs' webhooks to protect a Redis that is not being used.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time

from limits import RateLimitItemPerSecond
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from services.common.redis import Redis, tenant_key
from services.realtime.stream import REDIS_BACKOFF_SECONDS, REDIS_DOWN_OR_SLOW

log = logging.getLogger(__name__)

#: The window the rate is averaged over: a burst of up to rate x 10 s events is
#: taken at once (a CRM's bulk import), a sustained flood is not.
WINDOW_SECONDS = 10
#: Prefix of the budget's Redis keys (the tenant's key follows, ``tenant:{id}:ingest``).
KEY_PREFIX = "budget"


class IngestBudget:
    """The per-tenant event budget of the ingest (see the module docstring)."""

    def __init__(self, redis: Redis, *, events_per_second: int, timeout: float) -> None:
        """``events_per_second`` 0 turns the budget off; ``timeout`` bounds the check."""
        self._timeout = timeout
        self._rate = events_per_second
        self._skip_until = 0.0
        self._item = (
            RateLimitItemPerSecond(events_per_second * WINDOW_SECONDS, WINDOW_SECONDS)
            if events_per_second > 0
            else None
        )
        # The URI only names the client library: with a pool, limits uses it as is.
        storage = RedisStorage(
            "async+redis://",
            implementation="redispy",
            key_prefix=KEY_PREFIX,
            # Documented (":param connection_pool:"), but typed out of **options.
            connection_pool=redis.connection_pool,  # type: ignore[arg-type]
        )
        self._limiter = SlidingWindowCounterRateLimiter(storage)

    async def take(self, tenant_id: str, events: int) -> int | None:
        """Take ``events`` from the tenant's budget: None if taken, else seconds to wait.

        Nothing is taken from a budget that refuses. A Redis failure or a check
        slower than the timeout lets the events through (the module docstring).
        """
        if self._item is None or time.monotonic() < self._skip_until:
            return None
        key = tenant_key(tenant_id, "ingest")
        try:
            async with asyncio.timeout(self._timeout):
                if await self._limiter.hit(self._item, key, cost=events):
                    return None
                stats = await self._limiter.get_window_stats(self._item, key)
        except REDIS_DOWN_OR_SLOW as exc:
            # A hung Redis would otherwise cost every request the whole timeout.
            self._skip_until = time.monotonic() + REDIS_BACKOFF_SECONDS
            log.warning("ingest budget not checked: %s", type(exc).__name__)
            return None
        # The window frees one event at reset_time and then about one per
        # 1/rate seconds: a batch of n needs about n/rate seconds, not one.
        first = math.ceil(stats.reset_time - time.time())
        return max(1, first, math.ceil(events / self._rate))
