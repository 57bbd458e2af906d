"""Shared fixtures: real PostgreSQL 15 and Redis, started once per test session.

The servers come from ``localrun.servers`` (the same code as ``make run``),
listen on loopback on free ports under a temporary directory, and are
migrated with ``services.migrations.runner.migrate`` (schema + application
role) before the first test that needs them. Tests that request none of these
fixtures start nothing.

Session scope
- ``local_servers``: ``localrun.servers.LocalServers`` (``.postgres``,
  ``.redis``), already migrated. Use it from your own session fixtures;
  it does not clean anything between tests.

Function scope (each first empties every table in ``public`` except
``alembic_version`` and FLUSHALLs Redis, so tests never see each other's data)
- ``postgres_url``: superuser DSN; bypasses row-level security (the migrations run
  as ``localrun.servers.MIGRATION_ROLE``, which owns the tables and does not).
- ``app_database_url``: application role DSN (``APP_ROLE``); RLS applies.
- ``redis_url``: ``redis://127.0.0.1:PORT/0``.
- ``settings_env``: ``dict`` of a complete, valid environment, already applied
  with ``monkeypatch`` (other variables CommonSettings reads are removed).
  Change one with ``monkeypatch.setenv`` before building settings.
- ``settings``: ``CommonSettings.from_env()`` over ``settings_env``.
- ``db`` / ``owner_db``: ``services.common.database.Database`` for the
  application role / the owner, closed after the test.
- ``redis_client``: a pooled client on ``redis_url``, closed after the test.
- ``make_token(tenant_id, subject="agent-1", ttl_seconds=3600, scopes=TEST_SCOPES)``:
  a JWT signed with the test's active key (``JWT_SECRET`` / ``JWT_KID``). Its
  scopes are explicit: by default every scope but operator (what most tests
  need at once); pass ``scopes=(...)`` to test scope checks.
- ``app_client``: ``async with app_client(app) as client`` runs the app's
  lifespan and yields an ``httpx.AsyncClient`` talking to it in-process.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
import pytest_asyncio
from fastapi import FastAPI

# pytest puts tests/ (this file's directory) first on sys.path, and the
# project is not on it when pytest runs as `.venv/bin/pytest`; put the
# repository root first so `services` and `localrun` are always the real
# packages, never a same-named test package.
_ROOT = str(Path(__file__).resolve().parents[1])
if sys.path[:1] != [_ROOT]:
    sys.path.insert(0, _ROOT)

# A hook: a test stuck past its limit reports its threads and tasks.
from hang_report import pytest_runtest_call  # noqa: E402, F401

# A socket a test leaves to the garbage collector fails that test.
from socket_leaks import (  # noqa: E402, F401
    pytest_collection_finish,
    sockets_closed_by_their_test,
)

from localrun.servers import LocalServers, start_all  # noqa: E402
from services.common.auth import issue_token  # noqa: E402
from services.common.database import Database  # noqa: E402
from services.common.redis import Redis, close_redis, create_redis  # noqa: E402
from services.common.scopes import (  # noqa: E402
    COACHING_ANALYZE,
    CRM_INGEST,
    DASHBOARDS_VIEW,
    FEED_READ,
    LEADS_SCORE,
    VISION_ANALYZE,
)
from services.common.settings import CommonSettings  # noqa: E402
from services.migrations.runner import migrate  # noqa: E402

APP_ROLE = "enterprisehub_app"
APP_PASSWORD = "app-role-password-for-tests"
JWT_KID = "test-2026-01"
JWT_SECRET = "test-active-signing-key-0123456789abcdef"
JWT_PREVIOUS_KID = "test-2025-12"
JWT_PREVIOUS_SECRET = "test-retired-signing-key-0123456789abcdef"
TEST_SCOPES = (
    FEED_READ,
    CRM_INGEST,
    LEADS_SCORE,
    VISION_ANALYZE,
    COACHING_ANALYZE,
    DASHBOARDS_VIEW,
)
"""Scopes of ``make_token``'s tokens unless a test asks for others."""


def _servers_env(servers: LocalServers) -> dict[str, str]:
    return {
        "ENVIRONMENT": "local",
        "DATABASE_URL": servers.postgres.url(APP_ROLE, APP_PASSWORD),
        "MIGRATION_DATABASE_URL": servers.postgres.migration_url,
        "REDIS_URL": servers.redis.url,
        "JWT_SECRET_KEY": JWT_SECRET,
        "JWT_KEY_ID": JWT_KID,
        "JWT_PREVIOUS_KEYS": f'{{"{JWT_PREVIOUS_KID}": "{JWT_PREVIOUS_SECRET}"}}',
        "DB_POOL_SIZE": "4",
        "DB_MAX_OVERFLOW": "4",
        "DB_POOL_TIMEOUT": "5",
        "REDIS_MAX_CONNECTIONS": "20",
        "REDIS_SOCKET_TIMEOUT": "2",
        "CORS_ORIGINS": "https://app.enterprisehub.test,https://*.enterprisehub.test",
    }


@pytest.fixture(scope="session")
def _started_servers() -> Iterator[LocalServers]:
    base = Path(tempfile.mkdtemp(prefix="enterprisehub-test-"))
    # As root, initdb runs as the postgres user, which must traverse this dir.
    base.chmod(0o711)
    servers = start_all(base)
    try:
        yield servers
    finally:
        servers.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def local_servers(_started_servers: LocalServers) -> LocalServers:
    """Postgres + Redis for the whole session, migrated to head by the migration owner."""
    env = _servers_env(_started_servers)
    await migrate(CommonSettings(**{k.lower(): v for k, v in env.items()}))
    return _started_servers


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def _session_owner_db(local_servers: LocalServers) -> AsyncIterator[Database]:
    database = await Database.open(local_servers.postgres.owner_url, max_size=2)
    yield database
    await database.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def _session_redis(local_servers: LocalServers) -> AsyncIterator[Redis]:
    client = create_redis(local_servers.redis.url, max_connections=4)
    yield client
    await close_redis(client)


@pytest_asyncio.fixture
async def _clean_state(
    local_servers: LocalServers, _session_owner_db: Database, _session_redis: Redis
) -> LocalServers:
    async with _session_owner_db.unscoped() as conn:
        tables = await conn.fetch(
            "SELECT quote_ident(tablename) AS name FROM pg_tables "
            "WHERE schemaname = 'public' AND tablename <> 'alembic_version'"
        )
        if tables:
            await conn.execute(
                f"TRUNCATE {', '.join(row['name'] for row in tables)} RESTART IDENTITY CASCADE"
            )
    await _session_redis.flushall()
    return local_servers


@pytest.fixture
def postgres_url(_clean_state: LocalServers) -> str:
    """Owner (superuser) DSN of the test database."""
    return _clean_state.postgres.owner_url


@pytest.fixture
def app_database_url(_clean_state: LocalServers) -> str:
    """Application role DSN: row-level security applies to it."""
    return _clean_state.postgres.url(APP_ROLE, APP_PASSWORD)


@pytest.fixture
def redis_url(_clean_state: LocalServers) -> str:
    """URL of the session's Redis (flushed before each test)."""
    return _clean_state.redis.url


@pytest.fixture
def settings_env(_clean_state: LocalServers, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A complete valid environment, applied to ``os.environ`` for this test."""
    for name in CommonSettings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
    env = _servers_env(_clean_state)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def settings(settings_env: dict[str, str]) -> CommonSettings:
    """``CommonSettings`` read from ``settings_env``."""
    return CommonSettings.from_env()


@pytest_asyncio.fixture
async def db(app_database_url: str) -> AsyncIterator[Database]:
    """Pool for the application role (subject to row-level security)."""
    database = await Database.open(app_database_url, max_size=4, acquire_timeout=5)
    yield database
    await database.close()


@pytest_asyncio.fixture
async def owner_db(postgres_url: str) -> AsyncIterator[Database]:
    """Pool for the owner role (sees every tenant's rows)."""
    database = await Database.open(postgres_url, max_size=2, acquire_timeout=5)
    yield database
    await database.close()


@pytest_asyncio.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    """A pooled client on the session's Redis."""
    client = create_redis(redis_url, max_connections=8, socket_timeout=2)
    yield client
    await close_redis(client)


@pytest.fixture
def make_unchecked_token(settings: CommonSettings) -> Callable[..., str]:
    """``make_unchecked_token(tenant_id, subject, scopes)``: a token signed as
    ``issue_token`` signed them before it checked subjects. ``issue_token`` now
    refuses a subject that is not an ``AgentId``; one signed before still
    verifies until it expires, so what it reaches must still be safe."""

    def make(tenant_id: str, subject: str, scopes: tuple[str, ...]) -> str:
        now = int(time.time())
        claims = {"tid": tenant_id, "sub": subject, "scope": " ".join(scopes), "iat": now}
        return jwt.encode(
            {**claims, "exp": now + 600, "jti": uuid.uuid4().hex},
            settings.jwt_secret_key.get_secret_value(),
            algorithm="HS256",
            headers={"kid": settings.jwt_key_id},
        )

    return make


@pytest.fixture
def make_token(settings: CommonSettings) -> Callable[..., str]:
    """``make_token(tenant_id, subject="agent-1", ttl_seconds=3600, scopes=TEST_SCOPES, **kw)``."""

    def make(
        tenant_id: str,
        subject: str = "agent-1",
        ttl_seconds: float = 3600,
        scopes: tuple[str, ...] = TEST_SCOPES,
        **kwargs: Any,
    ) -> str:
        return issue_token(
            settings,
            tenant_id=tenant_id,
            subject=subject,
            scopes=scopes,
            ttl_seconds=ttl_seconds,
            **kwargs,
        )

    return make


@asynccontextmanager
async def _running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


@pytest.fixture
def app_client() -> Callable[[FastAPI], AbstractAsyncContextManager[httpx.AsyncClient]]:
    """``async with app_client(app) as client``: lifespan + in-process HTTP client."""
    return _running
