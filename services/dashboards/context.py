"""What a page receives: the signed-in tenant, its token, settings, and ``run``.

Streamlit runs each page's script in a thread without an event loop, while
the platform's clients are asyncio ones. `AsyncRunner` keeps one event loop
on a daemon thread per process, with one ``Database`` pool (the application
role, so row-level security applies) opened on it lazily; ``ctx.run(fn)``
hands ``fn`` that database on that loop and waits for the result. One pool
per process rather than per session keeps the connection count bounded by
DB_POOL_SIZE + DB_MAX_OVERFLOW however many people have the dashboards open.
The same loop keeps the sign-in's token revocations current
(`AsyncRunner.keep_revocations_current`), as every service's lifespan does.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import asyncpg

from services.common.database import Database, DatabaseUnavailable
from services.common.revocation import Revocations
from services.common.revocation_store import RevocationRefresher
from services.dashboards.config import DashboardSettings
from services.dashboards.session import signed_in_token

T = TypeVar("T")

#: The longest a page waits for its data. Postgres has no statement timeout
#: here, and a query behind a lock (a migration, a long transaction) or over
#: a silent network held the page's script thread, and the user's page,
#: forever: Streamlit cannot interrupt a thread blocked outside its own calls.
PAGE_DATA_SECONDS = 60.0
#: The longest each step of `AsyncRunner.close` waits: a pool closing towards a
#: Postgres that no longer answers must not hold whoever closes it.
CLOSE_TIMEOUT_SECONDS = 10.0

# A connection lost mid-page (Postgres restarted, the network dropped) surfaces
# as these rather than as the pool's DatabaseUnavailable, which covers only
# acquiring a connection; a page tells both apart from a bug the same way.
_LOST_CONNECTION: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.AdminShutdownError,
)


class AsyncRunner:
    """An event loop on a daemon thread, and the database opened on it."""

    def __init__(self, settings: DashboardSettings) -> None:
        self._settings = settings
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="dashboards-loop", daemon=True
        )
        self._thread.start()
        self._db: Database | None = None
        self._db_lock = asyncio.Lock()
        self._refresher: RevocationRefresher | None = None

    def call(self, coroutine: Coroutine[Any, Any, T], *, timeout: float | None = None) -> T:
        """Run ``coroutine`` on the loop and wait (at most ``timeout`` s) for its result.

        On timeout the coroutine is cancelled (it would otherwise keep its
        connection busy for nobody) and ``TimeoutError`` raised.
        """
        future: Future[T] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise

    async def database(self) -> Database:
        """The process's pool, connected on first use."""
        async with self._db_lock:
            if self._db is None:
                self._db = await Database.connect(self._settings)
            return self._db

    def keep_revocations_current(self, revocations: Revocations) -> None:
        """Read the token revocations into ``revocations`` now, then every
        AUTH_REVOCATION_REFRESH_SECONDS on this loop, for the life of the process.

        The first read is bounded (``revocation_store.READ_TIMEOUT_SECONDS``); one
        that fails leaves the list empty until a later read succeeds, as in a service.
        """

        async def start() -> None:
            refresher = RevocationRefresher(
                revocations,
                await self.database(),
                interval=self._settings.auth_revocation_refresh_seconds,
            )
            await refresher.refresh()
            refresher.start()
            self._refresher = refresher

        self.call(start())

    def close(self) -> None:
        """Stop refreshing, close the pool, stop the loop and close it."""
        if self._refresher is not None:
            self.call(self._refresher.stop(), timeout=CLOSE_TIMEOUT_SECONDS)
        if self._db is not None:
            self.call(self._db.close(), timeout=CLOSE_TIMEOUT_SECONDS)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            # Its self-pipe (a socket pair) is freed only by close().
            self._loop.close()


@dataclass(frozen=True)
class PageContext:
    """The signed-in user's view of the platform, given to every page's ``render``.

    ``tenant_id`` comes only from a verified token; every query goes through
    ``async with db.tenant(ctx.tenant_id) as conn``.
    """

    tenant_id: str
    token: str
    expires_at: datetime
    settings: DashboardSettings
    runner: AsyncRunner

    def still_signed_in(self) -> bool:
        """Whether the session still holds this token and it has not expired.

        A fragment's own reruns skip the app's sign-in check: a self-refreshing
        page asks this first and, if not, reruns the app (which signs out).
        """
        return signed_in_token() == self.token and datetime.now(UTC) < self.expires_at

    def run(self, fn: Callable[[Database], Awaitable[T]]) -> T:
        """``await fn(db)`` with the application-role ``Database``; returns its result.

        Raises ``DatabaseUnavailable`` when Postgres cannot be reached or the
        connection is lost, which the app shows as a message, not a traceback.
        """

        async def with_db() -> T:
            try:
                return await fn(await self.runner.database())
            except _LOST_CONNECTION as exc:
                raise DatabaseUnavailable(f"postgres unavailable ({type(exc).__name__})") from exc

        try:
            return self.runner.call(with_db(), timeout=PAGE_DATA_SECONDS)
        except TimeoutError:
            raise DatabaseUnavailable(
                f"postgres did not answer within {PAGE_DATA_SECONDS:g} s"
            ) from None

    def run_async(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Await ``coroutine`` on the shared loop (for clients other than Postgres)."""
        return self.runner.call(coroutine)
