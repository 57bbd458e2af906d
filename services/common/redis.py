"""The only place that opens Redis connections.

``create_redis(settings)`` returns a ``redis.asyncio.Redis`` over a blocking
pool of at most REDIS_MAX_CONNECTIONS connections; every socket operation and
every wait for a pooled connection is bounded by REDIS_SOCKET_TIMEOUT.
Responses are bytes (``decode_responses=False``): payloads are JSON that
orjson reads from bytes directly.

Tenant data lives under ``tenant_key(tenant_id, ...)`` = ``tenant:{id}:...``;
the tenant id is validated so that it can neither add a ``:`` segment nor glob
characters that would widen a SCAN/PSUBSCRIBE pattern to other tenants.

Behaviour when Redis is unreachable: a command fails after one quick retry
(no long backoff), redis-py raises ``ConnectionError``/``TimeoutError``, and
``redis_errors()`` (or the app's exception handlers, for errors that escape a
route) turns that into ``RedisUnavailable``, answered as HTTP 503 with a
reason and ``Retry-After``. ``/health/detailed`` reports Redis as down and
returns 503 so the replica leaves the load balancer until Redis is back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.common.tenancy import validate_tenant_id

if TYPE_CHECKING:
    from services.common.settings import RedisSettings

log = logging.getLogger(__name__)

Redis = aioredis.Redis
"""The client type services receive (``RedisDep``)."""

# AuthenticationError and BusyLoadingError subclass ConnectionError.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
)
_FORBIDDEN_IN_PARTS = frozenset("*?[]\\ \t\r\n")


class RedisUnavailable(RuntimeError):  # noqa: N818 - the name the contract uses
    """Redis could not be reached; ``reason`` is safe to show to a client."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def tenant_key(tenant_id: str, *parts: str) -> str:
    """Build ``tenant:{tenant_id}:{part}:...``.

    Raises ``InvalidTenantId`` for a bad tenant id and ``ValueError`` for an
    empty part or one containing glob characters or whitespace (parts may
    contain ``:`` to nest, since they come from code, not from requests).
    """
    validate_tenant_id(tenant_id)
    for part in parts:
        if not part or _FORBIDDEN_IN_PARTS.intersection(part):
            raise ValueError(f"key part {part!r} is empty or has glob characters/whitespace")
    return ":".join(("tenant", tenant_id, *parts))


def create_redis(
    url: str,
    *,
    max_connections: int = 50,
    socket_timeout: float = 5.0,
) -> Redis:
    """Create a pooled client. No connection is opened until the first command."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        # How long a caller waits for a free pooled connection.
        timeout=socket_timeout,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
        # One quick retry covers a dropped idle connection; longer backoff
        # would only delay the 503 a caller gets while Redis is down.
        retry=Retry(ExponentialBackoff(cap=0.05, base=0.01), retries=1),
        health_check_interval=30,
    )
    return aioredis.Redis(connection_pool=pool)


def create_redis_from_settings(settings: RedisSettings) -> Redis:
    """``create_redis`` with REDIS_URL, REDIS_MAX_CONNECTIONS, REDIS_SOCKET_TIMEOUT."""
    return create_redis(
        settings.redis_url.get_secret_value(),
        max_connections=settings.redis_max_connections,
        socket_timeout=settings.redis_socket_timeout,
    )


def unavailable(exc: BaseException) -> RedisUnavailable:
    """Wrap a connection-level redis-py error as ``RedisUnavailable``."""
    log.warning("redis unavailable: %s: %s", type(exc).__name__, exc)
    return RedisUnavailable(f"redis unavailable ({type(exc).__name__})")


@contextmanager
def redis_errors() -> Iterator[None]:
    """Translate connection-level failures inside the block to ``RedisUnavailable``."""
    try:
        yield
    except UNAVAILABLE_ERRORS as exc:
        raise unavailable(exc) from exc


async def ping_redis(client: Redis) -> float:
    """PING and return the measured round trip in seconds (``RedisUnavailable`` if down)."""
    started = time.perf_counter()
    with redis_errors():
        await client.ping()
    return time.perf_counter() - started


async def close_redis(client: Redis) -> None:
    """Close the client and its pool."""
    await client.aclose(close_connection_pool=True)
