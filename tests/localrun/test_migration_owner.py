"""make run migrates as the migration owner, as RDS's master user, also on old state.

A ``var/run`` database that an older ``make run`` migrated as the superuser
holds tables the owner role could not alter; starting the servers hands
them over, so that the next ``migrate`` (and any later revision) runs.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from alembic.script import ScriptDirectory

from localrun.servers import MIGRATION_ROLE, PostgresServer, start_postgres
from services.common.settings import CommonSettings
from services.migrations.runner import alembic_config, migrate
from tests.schema_history import downgrade_to

# Everything in public, with its owner: tables, views, sequences, routines, types.
_OWNERS = """
SELECT c.oid::regclass::text AS name, pg_get_userbyid(c.relowner) AS owner
  FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
UNION ALL
SELECT p.oid::regprocedure::text, pg_get_userbyid(p.proowner)
  FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
UNION ALL
SELECT t.oid::regtype::text, pg_get_userbyid(t.typowner)
  FROM pg_type t WHERE t.typnamespace = 'public'::regnamespace
"""


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    # Under /tmp directly: the postgres user must traverse every parent.
    base = Path(tempfile.mkdtemp(prefix="enterprisehub-owner-"))
    base.chmod(0o711)
    server = start_postgres(base)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


def _settings(server: PostgresServer, migration_url: str) -> CommonSettings:
    return CommonSettings(
        environment="local",
        database_url=server.url("enterprisehub_app", "app-password-for-this-test"),
        migration_database_url=migration_url,
        redis_url="redis://127.0.0.1:1/0",
        jwt_secret_key="test-active-signing-key-0123456789abcdef",
        jwt_key_id="test",
    )


async def _owners(server: PostgresServer) -> dict[str, str]:
    conn = await asyncpg.connect(server.owner_url)
    try:
        return {row["name"]: row["owner"] for row in await conn.fetch(_OWNERS)}
    finally:
        await conn.close()


async def test_a_database_migrated_by_the_superuser_is_handed_to_the_owner(
    postgres: PostgresServer,
) -> None:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    await migrate(_settings(postgres, postgres.owner_url))  # what older runs did
    assert "postgres" in (await _owners(postgres)).values()

    postgres.ensure_migration_owner()  # every start does this
    owners = await _owners(postgres)
    assert "postgres" not in owners.values(), sorted(
        name for name, owner in owners.items() if owner == "postgres"
    )
    assert owners["coaching_sessions"] == MIGRATION_ROLE

    # The owner can take every revision back and forward again.
    as_owner = _settings(postgres, postgres.migration_url)
    await downgrade_to(as_owner, "base")
    assert (await migrate(as_owner)).revision_after == head
    after = await _owners(postgres)
    assert "postgres" not in after.values()
    postgres.ensure_migration_owner()  # a later start changes nothing
    assert await _owners(postgres) == after
