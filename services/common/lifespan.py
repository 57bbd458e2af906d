"""The one lifespan: open what a service declares it needs, close it on the way out.

A service names its needs (``create_app(needs=frozenset({Need.POSTGRES,
Need.REDIS}))``) and never opens a pool or client itself. On start-up,
`open_resources` puts on ``app.state``:

=================  ==================  =========================================
need               ``app.state``        handed out by (``services.common.deps``)
=================  ==================  =========================================
``POSTGRES``       ``db``               ``DbDep`` (application role, RLS)
``REDIS``          ``redis``            ``RedisDep``
``STORAGE``        ``storage``          ``StorageDep`` (boto3 S3 client, buckets)
``CLAUDE``         ``claude``           ``ClaudeDep`` (``None`` without a key: 503)
=================  ==================  =========================================

then, when Postgres is a need, reads the token revocations into the app's
verifier and keeps them current (``services.common.revocation_store``: one
read before serving, then every AUTH_REVOCATION_REFRESH_SECONDS), then, when
Redis is a need, runs the feature-flag cache (``app.state.flags``,
``services.common.flags.serve_flags``: a local copy kept fresh from Redis,
first exposures written to Postgres when that is a need too), then enters
the service's own lifespan hook (its domain objects: a model, a
hub, background tasks), and on shutdown leaves the hook first and closes
everything in reverse order, also when start-up fails half-way.

Start-up does not fail when Postgres or Redis is down: the pod stays alive,
its readiness answers 503 and traffic stays away until the store is back.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from enum import StrEnum

from fastapi import FastAPI

from services.common.claude import create_claude
from services.common.database import Database, DatabaseUnavailable
from services.common.flags import serve_flags
from services.common.redis import (
    RedisUnavailable,
    close_redis,
    create_redis_from_settings,
    ping_redis,
)
from services.common.revocation_store import serve_revocations
from services.common.settings import CommonSettings
from services.common.storage import create_storage

log = logging.getLogger(__name__)

ServiceLifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]
"""A service's own start/stop work, run after its declared resources are open."""


class Need(StrEnum):
    """A shared resource a service declares; the lifespan opens exactly these."""

    POSTGRES = "postgres"
    REDIS = "redis"
    STORAGE = "storage"
    CLAUDE = "claude"


DEFAULT_NEEDS: frozenset[Need] = frozenset({Need.POSTGRES, Need.REDIS})
"""What a service gets when it declares nothing: both stores, as before needs existed."""


async def _open_postgres(app: FastAPI, settings: CommonSettings, stack: AsyncExitStack) -> None:
    db = await Database.connect(settings)
    stack.push_async_callback(db.close)
    app.state.db = db
    try:
        await db.ping()
    except DatabaseUnavailable as exc:
        log.warning("starting without postgres: %s", exc.reason)


async def _open_redis(app: FastAPI, settings: CommonSettings, stack: AsyncExitStack) -> None:
    client = create_redis_from_settings(settings)
    stack.push_async_callback(close_redis, client)
    app.state.redis = client
    try:
        await ping_redis(client)
    except RedisUnavailable as exc:
        log.warning("starting without redis: %s", exc.reason)


async def _open_storage(app: FastAPI, settings: CommonSettings, stack: AsyncExitStack) -> None:
    storage = create_storage(settings)
    stack.callback(storage.close)
    app.state.storage = storage


async def _open_claude(app: FastAPI, settings: CommonSettings, stack: AsyncExitStack) -> None:
    # Postgres opens first (Need order): the client books every call's cost there.
    client = create_claude(settings, registry=app.state.registry, db=getattr(app.state, "db", None))
    if client is None:
        log.info("claude not configured (ANTHROPIC_API_KEY unset): Claude routes answer 503")
    else:
        stack.push_async_callback(client.close)
    app.state.claude = client


_OPENERS = {
    Need.POSTGRES: _open_postgres,
    Need.REDIS: _open_redis,
    Need.STORAGE: _open_storage,
    Need.CLAUDE: _open_claude,
}


def build_lifespan(
    settings: CommonSettings, needs: frozenset[Need], service_lifespan: ServiceLifespan | None
) -> ServiceLifespan:
    """The app's lifespan: open ``needs`` (in `Need` order), run the hook, close all."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for need in Need:
                if need in needs:
                    await _OPENERS[need](app, settings, stack)
            if Need.POSTGRES in needs:
                await stack.enter_async_context(
                    serve_revocations(
                        app.state.token_verifier.revocations,
                        app.state.db,
                        interval=settings.auth_revocation_refresh_seconds,
                    )
                )
            if Need.REDIS in needs:
                await stack.enter_async_context(serve_flags(app))
            if service_lifespan is not None:
                await stack.enter_async_context(service_lifespan(app))
            yield

    return lifespan
