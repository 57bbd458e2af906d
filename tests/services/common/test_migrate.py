"""`enterprisehub migrate`: idempotent, creates a restricted role, refuses unsafe setups."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from pydantic import SecretStr

from services.cli import main
from services.common.database import Database, DatabaseUnavailable
from services.common.settings import CommonSettings
from services.migrations.runner import MIGRATIONS_DIR, MigrationError, alembic_config, migrate


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def test_second_run_is_a_no_op(settings: CommonSettings) -> None:
    result = await migrate(settings)
    assert (result.revision_before, result.revision_after) == (head_revision(), head_revision())


async def test_cli_migrate_reports_the_revision(
    settings_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert await asyncio.to_thread(main, ["migrate"]) == 0
    assert f"schema at {head_revision()}" in capsys.readouterr().out


async def test_application_role_cannot_bypass_row_security(owner_db: Database) -> None:
    async with owner_db.unscoped() as conn:
        row = await conn.fetchrow(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = 'enterprisehub_app'"
        )
    assert (row["rolsuper"], row["rolbypassrls"]) == (False, False)


async def test_application_role_cannot_touch_alembic_version(db: Database) -> None:
    import asyncpg

    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with db.unscoped() as conn:
            await conn.execute("UPDATE alembic_version SET version_num = 'forged'")


async def test_application_role_password_is_enforced(app_database_url: str) -> None:
    wrong = app_database_url.replace("app-role-password-for-tests", "wrong-password")
    database = await Database.open(wrong, max_size=1, acquire_timeout=5)
    try:
        with pytest.raises(DatabaseUnavailable, match="InvalidPasswordError"):
            await database.ping()
    finally:
        await database.close()


async def test_same_role_for_app_and_owner_is_refused(settings: CommonSettings) -> None:
    assert settings.migration_database_url is not None
    same = settings.model_copy(update={"database_url": settings.migration_database_url})
    with pytest.raises(MigrationError, match="same role"):
        await migrate(same)


async def test_missing_migration_url_is_refused(settings: CommonSettings) -> None:
    with pytest.raises(MigrationError, match="MIGRATION_DATABASE_URL"):
        await migrate(settings.model_copy(update={"migration_database_url": None}))


async def test_tenant_table_without_row_security_fails_the_migration(
    settings: CommonSettings,
) -> None:
    # Created by the role that runs migrations, as a revision would.
    assert settings.migration_database_url is not None
    migrator = await Database.open(settings.migration_database_url.get_secret_value(), max_size=1)
    try:
        async with migrator.unscoped() as conn:
            await conn.execute("CREATE TABLE leaky_notes (tenant_id text, body text)")
        try:
            with pytest.raises(MigrationError, match="leaky_notes"):
                await migrate(settings)
        finally:
            async with migrator.unscoped() as conn:
                await conn.execute("DROP TABLE leaky_notes")
    finally:
        await migrator.close()


async def test_a_second_run_by_a_non_superuser_owner_keeps_the_role_confined(
    settings: CommonSettings, owner_db: Database
) -> None:
    """The owner that runs migrations is not a superuser (as RDS's master user):
    a later run must not name SUPERUSER or BYPASSRLS, which only a superuser may
    alter, and must refuse an application role that has gained either."""
    async with owner_db.unscoped() as conn:
        runner = await conn.fetchval(
            "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = 'enterprisehub_owner'"
        )
    assert runner is False
    assert (await migrate(settings)).revision_after == head_revision()
    async with owner_db.unscoped() as conn:
        await conn.execute("ALTER ROLE enterprisehub_app BYPASSRLS")
    try:
        with pytest.raises(MigrationError, match="BYPASSRLS"):
            await migrate(settings)
    finally:
        async with owner_db.unscoped() as conn:
            await conn.execute("ALTER ROLE enterprisehub_app NOBYPASSRLS")


async def test_unreachable_owner_database_is_a_clear_cli_error(
    settings_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from localrun.servers import free_port

    owner = SecretStr(settings_env["MIGRATION_DATABASE_URL"]).get_secret_value()
    host_port = owner.split("@", 1)[1].split("/", 1)[0]
    monkeypatch.setenv(
        "MIGRATION_DATABASE_URL", owner.replace(host_port, f"127.0.0.1:{free_port()}")
    )
    assert await asyncio.to_thread(main, ["migrate"]) == 1
    assert "cannot reach Postgres" in capsys.readouterr().err


def test_every_revision_is_named_by_its_file_and_alembic_writes_new_ones_so(
    tmp_path: Path,
) -> None:
    # The stack rollback plan and the docs find a revision by its file name;
    # `alembic revision --rev-id 0022_x` wrote 0022_x_<message slug>.py.
    script = ScriptDirectory.from_config(alembic_config())
    # Applied before the convention: an applied revision's id never changes.
    older = {"0001": "0001_initial", "0004": "0004_realtime_idempotency_keys"}
    for revision in script.walk_revisions():
        stem = Path(revision.path).stem
        assert stem == older.get(revision.revision, revision.revision)
    copy = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, copy, ignore=shutil.ignore_patterns("__pycache__"))
    config = Config(str(copy / "alembic.ini"))
    command.revision(config, message="an example change", rev_id="9999_example")
    assert (copy / "versions" / "9999_example.py").is_file()


@pytest.mark.parametrize(
    ("revision", "said"),
    [
        ("nosuch", "revision 'nosuch': Can't locate revision identified by 'nosuch'"),
        ("+5", "revision '+5': Relative revision +5"),
        ("", "the revision is empty"),
        ("  ", "the revision is empty"),
    ],
)
async def test_a_revision_no_file_defines_is_one_line_not_alembics_traceback(
    settings_env: dict[str, str], capsys: pytest.CaptureFixture[str], revision: str, said: str
) -> None:
    # alembic raised its CommandError (an AssertionError for "") through `main`.
    assert await asyncio.to_thread(main, ["migrate", "--revision", revision]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert said in err
