"""The only place that opens Postgres connections.

Services connect as the application role (``DATABASE_URL``), which has no
``BYPASSRLS``; every tenant table forces row-level security with the policy
``tenant_id = current_setting('app.tenant_id', true)``. Work on tenant data
therefore goes through ``Database.tenant(tenant_id)``, which opens a
transaction and sets ``app.tenant_id`` for that transaction only
(``set_config(..., true)``), so a pooled connection never carries one tenant's
scope into the next request. Without a tenant, the policy compares with NULL
and the application role sees no rows at all (fails closed).

Round trips of a tenant transaction: ``BEGIN`` and the ``set_config`` travel
in one simple-protocol message (two statements, executed in order, before
the caller's first statement is even sent), and ``COMMIT`` in one message
with the session reset the pool would otherwise send on release (the same
reset asyncpg sends: advisory locks, cursors, LISTEN, ``RESET ALL``). With
one statement inside, that is three round trips instead of five. The scope
is set by a separate statement that completes before the caller's run, never
by a CTE or sub-select of the caller's statement (whose evaluation order
Postgres does not promise relative to the policy's check). A hot path that
needs a single statement can instead call a SQL function that sets the scope
itself as its first step (``Database.tenant_call``): one round trip.

JSON and JSONB values are encoded and decoded with orjson: pass Python objects
(dicts, lists), not pre-serialised strings.

When Postgres cannot be reached, ``DatabaseUnavailable`` is raised; the app's
error handlers turn it into a 503 with a reason.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import orjson

from services.common.settings import SettingsError
from services.common.tenancy import validate_tenant_id

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from services.common.settings import CommonSettings

log = logging.getLogger(__name__)

# Errors that mean "the server cannot be reached or refuses us", as opposed to
# errors in the SQL a caller sent. Only these become DatabaseUnavailable.
_UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InvalidAuthorizationSpecificationError,
)


# A bare or schema-qualified SQL identifier: tenant_call builds its statement
# from the name, so nothing else may get into it.
_FUNCTION_NAME = re.compile(r"[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?")


@functools.lru_cache(maxsize=64)
def _call_statement(function: str, arguments: int) -> str:
    """``SELECT function($1, ..., $n)``, checked and built once per function and arity."""
    if not _FUNCTION_NAME.fullmatch(function):
        raise ValueError(f"not a SQL function name: {function!r}")
    placeholders = ", ".join(f"${index}" for index in range(1, arguments + 1))
    return f"SELECT {function}({placeholders})"


class DatabaseUnavailable(RuntimeError):  # noqa: N818 - the name the contract uses
    """Postgres could not be reached; ``reason`` is safe to show to a client."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


#: libpq's TLS parameters, read from the DSN's query and turned into an SSL context.
_TLS_PARAMETERS = ("sslmode", "sslrootcert")
_VERIFYING_MODES = ("verify-ca", "verify-full")
_PLAIN_MODES = ("disable", "allow", "prefer", "require")


def tls_from_dsn(url: str) -> tuple[str, ssl.SSLContext | str | None]:
    """Split a DSN into (DSN without TLS parameters, what to pass as asyncpg's ``ssl``).

    The stacks write RDS DSNs with ``sslmode=verify-full&sslrootcert=<RDS CA
    bundle in the image>``: the server's certificate must chain to that bundle
    and name the host. The context is built here, from the CA file the DSN
    names, rather than left to each driver, so that the pool (asyncpg) and the
    migrations (SQLAlchemy, whose asyncpg dialect refuses ``sslmode``) verify
    alike. Without ``sslmode`` the drivers' default applies.
    """
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    params = dict(query)
    stripped = urlunsplit(
        parts._replace(query=urlencode([(k, v) for k, v in query if k not in _TLS_PARAMETERS]))
    )
    mode = params.get("sslmode")
    if mode is None:
        return stripped, None
    if mode in _PLAIN_MODES:
        return stripped, mode
    if mode not in _VERIFYING_MODES:
        raise SettingsError([f"DSN sslmode={mode!r}: use one of {_PLAIN_MODES + _VERIFYING_MODES}"])
    cafile = params.get("sslrootcert") or None
    if cafile is not None and not Path(cafile).is_file():
        raise SettingsError([f"DSN sslrootcert={cafile!r}: no such CA file in this image"])
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
    context.check_hostname = mode == "verify-full"
    context.verify_mode = ssl.CERT_REQUIRED
    return stripped, context


def asyncpg_dsn(url: str) -> str:
    """Normalise a DSN for asyncpg, which rejects the SQLAlchemy driver suffix."""
    parts = urlsplit(url)
    scheme = "postgresql" if parts.scheme.startswith("postgres") else parts.scheme
    return urlunsplit(parts._replace(scheme=scheme))


def sqlalchemy_url(url: str) -> str:
    """The same DSN with the ``postgresql+asyncpg`` scheme SQLAlchemy needs."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgresql+asyncpg"))


def migration_engine(url: str) -> AsyncEngine:
    """An async SQLAlchemy engine without pooling, for Alembic runs only."""
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    plain, tls = tls_from_dsn(url)
    connect_args = {} if tls is None else {"ssl": tls}
    return create_async_engine(sqlalchemy_url(plain), poolclass=NullPool, connect_args=connect_args)


class _Connection(asyncpg.Connection):
    """A pooled connection that knows whether its session was reset with its commit."""

    session_reset = False

    def mark_session_reset(self) -> None:
        """The session was just reset: the pool may skip its reset on release."""
        self.session_reset = True


async def _reset_session(conn: Any) -> None:
    """The pool's reset on release: skipped once when ``tenant()`` already sent it.

    The pool has already rolled back any open transaction (``Connection._reset``)
    before calling this.
    """
    if conn.session_reset:
        conn.session_reset = False
        return
    query = conn.get_reset_query()
    if query:
        await conn.execute(query)


def _begin_tenant_sql(tenant_id: str) -> str:
    # A literal, because the simple protocol (several statements in one
    # message) takes no parameters. validate_tenant_id allows only
    # [A-Za-z0-9_.-]; the check below keeps quoting correct even if that
    # pattern ever widens.
    if "'" in tenant_id or "\\" in tenant_id:
        raise ValueError("tenant id must not contain quotes or backslashes")
    return f"BEGIN;\nSELECT set_config('app.tenant_id', '{tenant_id}', true);"


async def _init_connection(conn: Any) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(
            type_name,
            schema="pg_catalog",
            encoder=lambda value: orjson.dumps(value).decode(),
            decoder=orjson.loads,
            format="text",
        )


def _unavailable(exc: BaseException) -> DatabaseUnavailable:
    log.warning("postgres unavailable: %s: %s", type(exc).__name__, exc)
    return DatabaseUnavailable(f"postgres unavailable ({type(exc).__name__})")


class Database:
    """An asyncpg pool with tenant-scoped transactions.

    Build it with ``connect(settings)`` (application role) or
    ``connect(settings, owner=True)`` (owner role from MIGRATION_DATABASE_URL,
    for migrations and operator jobs), or ``open(dsn)`` for an explicit DSN.
    """

    def __init__(self, pool: Any, *, acquire_timeout: float) -> None:
        self._pool = pool
        self._acquire_timeout = acquire_timeout

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        max_size: int = 10,
        acquire_timeout: float = 30.0,
        application_name: str = "enterprisehub",
    ) -> Database:
        """Create the pool. No connection is opened until first use.

        Connections open lazily (``min_size=0``) so a service starts, and
        reports itself not ready, while Postgres is still coming up, instead
        of crash-looping.
        """
        plain, tls = tls_from_dsn(dsn)
        pool = await asyncpg.create_pool(
            asyncpg_dsn(plain),
            ssl=tls,
            min_size=0,
            max_size=max_size,
            timeout=acquire_timeout,
            max_inactive_connection_lifetime=300.0,
            init=_init_connection,
            reset=_reset_session,
            connection_class=_Connection,
            server_settings={"application_name": application_name},
        )
        return cls(pool, acquire_timeout=acquire_timeout)

    @classmethod
    async def connect(cls, settings: CommonSettings, *, owner: bool = False) -> Database:
        """Open the pool for the application role, or the owner role if ``owner``.

        asyncpg has no overflow concept: the pool grows on demand up to
        DB_POOL_SIZE + DB_MAX_OVERFLOW and waits DB_POOL_TIMEOUT for a free
        connection.
        """
        if owner:
            if settings.migration_database_url is None:
                raise SettingsError(["MIGRATION_DATABASE_URL: required for owner connections"])
            dsn = settings.migration_database_url.get_secret_value()
        else:
            dsn = settings.database_url.get_secret_value()
        return await cls.open(
            dsn,
            max_size=settings.db_max_connections,
            acquire_timeout=settings.db_pool_timeout,
            application_name=f"enterprisehub-{settings.service_name}",
        )

    async def close(self) -> None:
        """Close every connection; waits for connections in use to be released."""
        await self._pool.close()

    async def ping(self, *, max_wait: float = 2.0) -> float:
        """Run ``SELECT 1`` and return the measured round trip in seconds.

        Includes waiting for a pooled connection, so a saturated pool shows up
        as latency. Raises ``DatabaseUnavailable`` on failure or timeout.
        """
        started = time.perf_counter()
        try:
            async with self._pool.acquire(timeout=max_wait) as conn:
                await conn.fetchval("SELECT 1", timeout=max_wait)
        except _UNAVAILABLE_ERRORS as exc:
            raise _unavailable(exc) from exc
        return time.perf_counter() - started

    async def _acquire(self) -> Any:
        try:
            return await self._pool.acquire(timeout=self._acquire_timeout)
        except _UNAVAILABLE_ERRORS as exc:
            raise _unavailable(exc) from exc

    @asynccontextmanager
    async def tenant(self, tenant_id: str) -> AsyncIterator[Any]:
        """Yield a connection inside a transaction scoped to ``tenant_id``.

        The transaction commits when the block exits normally and rolls back on
        an exception. Raises ``InvalidTenantId`` for a malformed id.

        The transaction is opened with a plain ``BEGIN`` (see the module
        docstring), so asyncpg's ``conn.transaction()`` cannot be nested inside
        the block (asyncpg refuses it with ``InterfaceError``); use
        ``SAVEPOINT`` statements if a block ever needs a partial rollback.
        """
        validate_tenant_id(tenant_id)
        begin = _begin_tenant_sql(tenant_id)
        conn = await self._acquire()
        try:
            await conn.execute(begin)
            try:
                yield conn
            except BaseException:
                if conn.is_in_transaction() and not conn.is_closed():
                    # Best effort: if this fails too, the pool rolls back or
                    # terminates the connection on release.
                    with contextlib.suppress(Exception):
                        await conn.execute("ROLLBACK")
                raise
            # COMMIT first: if it fails, nothing after it runs and the pool
            # resets the session on release as usual.
            await conn.execute("COMMIT;\n" + conn.get_reset_query())
            conn.mark_session_reset()
        finally:
            await self._pool.release(conn)

    async def tenant_call(self, tenant_id: str, function: str, *args: Any) -> Any:
        """Call a SQL function that scopes itself to ``tenant_id``; one round trip.

        Runs ``SELECT function(tenant_id, *args)`` as a statement of its own
        (its own implicit transaction) and returns the function's value. The
        function must take the tenant id first and set ``app.tenant_id``
        with ``set_config(..., true)`` before it touches a tenant table, as
        ``realtime_store_events`` does (revision 0003): for a hot path that
        needs one statement, this costs one round trip where `tenant` costs
        three. Everything else goes through `tenant`.

        The setting is transaction-local, so nothing of the call outlives it
        on the pooled connection and the pool's session reset is skipped.
        Raises ``InvalidTenantId`` for a malformed id and ``DatabaseUnavailable``
        when Postgres cannot be reached.
        """
        validate_tenant_id(tenant_id)
        query = _call_statement(function, len(args) + 1)
        conn = await self._acquire()
        try:
            try:
                value = await conn.fetchval(query, tenant_id, *args)
            except _UNAVAILABLE_ERRORS as exc:
                raise _unavailable(exc) from exc
            # Only a successful call skips the reset; after a failure the pool
            # resets the session as usual.
            conn.mark_session_reset()
            return value
        finally:
            await self._pool.release(conn)

    @asynccontextmanager
    async def unscoped(self) -> AsyncIterator[Any]:
        """Yield a connection in a transaction without a tenant.

        For the owner role (migrations, operator jobs). Under the application
        role, row-level security hides every tenant row on such a connection.
        """
        conn = await self._acquire()
        try:
            async with conn.transaction():
                yield conn
        finally:
            await self._pool.release(conn)
