"""``enterprisehub migrate``: schema upgrade plus the application role, atomically.

Runs as the owner (MIGRATION_DATABASE_URL) in one transaction that holds a
transaction-level advisory lock, so two migration Jobs started together run
one after the other. Steps:

1. ``alembic upgrade head``;
2. create or update the application role named in DATABASE_URL: LOGIN,
   NOSUPERUSER, NOBYPASSRLS, with the URL's password sent as a SCRAM-SHA-256
   verifier computed here (the clear password never reaches the server or its
   logs), and grant it DML on the tables (not on ``alembic_version``);
3. verify that every table with a ``tenant_id`` column has row-level
   security enabled and forced, so a later revision that forgets its policy
   fails the migration instead of leaking tenants.

Running it again is a no-op apart from refreshing the password and grants.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.util import CommandError as AlembicCommandError
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from services.common.database import migration_engine
from services.common.settings import CommonSettings

MIGRATIONS_DIR = Path(__file__).resolve().parent
ADVISORY_LOCK_KEY = "enterprisehub-migrate"
SCRAM_ITERATIONS = 4096


class MigrationError(RuntimeError):
    """The migration cannot proceed; the message says which setting to fix."""


@dataclass(frozen=True, slots=True)
class MigrationResult:
    """What ``migrate`` did."""

    revision_before: str | None
    revision_after: str | None
    app_role: str


def alembic_config() -> Config:
    """An Alembic config pointing at this package (no ini file needed)."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def scram_sha256_verifier(password: str, *, salt: bytes | None = None) -> str:
    """The SCRAM-SHA-256 verifier Postgres stores for ``password`` (RFC 5802/7677)."""
    salt = salt if salt is not None else os.urandom(16)
    # NFKC is the normalisation SASLprep applies; ASCII passwords are unchanged.
    secret = unicodedata.normalize("NFKC", password).encode()
    salted = hashlib.pbkdf2_hmac("sha256", secret, salt, SCRAM_ITERATIONS)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${SCRAM_ITERATIONS}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _credentials(dsn: str, variable: str) -> tuple[str, str | None]:
    parts = urlsplit(dsn)
    if not parts.username:
        raise MigrationError(f"{variable} has no user name")
    password = unquote(parts.password) if parts.password is not None else None
    return unquote(parts.username), password


def _current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _upgrade(conn: Connection, revision: str) -> None:
    config = alembic_config()
    config.attributes["connection"] = conn
    try:
        command.upgrade(config, revision)
    except AlembicCommandError as exc:
        # A revision no file defines ("Can't locate revision identified by ..."):
        # the operator's input, so one message rather than alembic's traceback.
        raise MigrationError(f"revision {revision!r}: {exc}") from None


def _scalar(conn: Connection, sql: str, **params: Any) -> Any:
    return conn.execute(text(sql), params).scalar()


def _ensure_app_role(conn: Connection, role: str, password: str) -> None:
    quoted = _scalar(conn, "SELECT quote_ident(:r)", r=role)
    verifier = _scalar(conn, "SELECT quote_literal(:v)", v=scram_sha256_verifier(password))
    exists = _scalar(conn, "SELECT count(*) FROM pg_roles WHERE rolname = :r", r=role)
    verb = "ALTER" if exists else "CREATE"
    # Only a superuser may name SUPERUSER, REPLICATION or BYPASSRLS in an ALTER
    # ROLE, even to say NO; the owner of a managed database (RDS's master user)
    # is not one. They are set at creation and checked on every later run.
    powers = "NOSUPERUSER NOREPLICATION NOBYPASSRLS " if verb == "CREATE" else ""
    try:
        # exec_driver_sql: the verifier contains ':' that text() would read as binds.
        conn.exec_driver_sql(
            f"{verb} ROLE {quoted} LOGIN NOCREATEDB NOCREATEROLE {powers}PASSWORD {verifier}"
        )
    except DBAPIError as exc:
        # Re-raised without the statement, which carries the password verifier.
        raise MigrationError(f"could not {verb.lower()} role {role}: {exc.orig}") from None
    bypasses = _scalar(
        conn,
        "SELECT rolsuper OR rolreplication OR rolbypassrls FROM pg_roles WHERE rolname = :r",
        r=role,
    )
    if bypasses:
        raise MigrationError(
            f"role {role} (DATABASE_URL) is a superuser or has REPLICATION or BYPASSRLS: "
            "row-level security would not confine it; remove those attributes"
        )
    database = _scalar(conn, "SELECT quote_ident(current_database())")
    for statement in (
        f"GRANT CONNECT ON DATABASE {database} TO {quoted}",
        f"GRANT USAGE ON SCHEMA public TO {quoted}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {quoted}",
        f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quoted}",
        # The application must not be able to fake or rewind the schema version.
        f"REVOKE ALL ON alembic_version FROM {quoted}",
        # Tables from later revisions get the same grants without a new step.
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {quoted}",
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {quoted}",
    ):
        conn.exec_driver_sql(statement)


def _unprotected_tenant_tables(conn: Connection) -> list[str]:
    rows = conn.execute(
        text(
            """
        SELECT c.relname
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
        WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
          AND NOT (c.relrowsecurity AND c.relforcerowsecurity
                   AND EXISTS (SELECT 1 FROM pg_policy p WHERE p.polrelid = c.oid))
        ORDER BY c.relname
        """
        )
    )
    return [row[0] for row in rows]


def _migrate_sync(conn: Connection, *, revision: str, role: str, password: str) -> MigrationResult:
    conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": ADVISORY_LOCK_KEY})
    before = _current_revision(conn)
    _upgrade(conn, revision)
    _ensure_app_role(conn, role, password)
    unprotected = _unprotected_tenant_tables(conn)
    if unprotected:
        raise MigrationError(
            "tables with tenant_id lack forced row-level security and a policy: "
            + ", ".join(unprotected)
        )
    return MigrationResult(before, _current_revision(conn), role)


async def migrate(settings: CommonSettings, *, revision: str = "head") -> MigrationResult:
    """Upgrade to ``revision`` and create/update the application role (see module doc)."""
    if not revision.strip():
        # alembic fails an assertion on an empty revision instead of saying so.
        raise MigrationError("the revision is empty: give one (head, or a revision id)")
    if settings.migration_database_url is None:
        raise MigrationError("MIGRATION_DATABASE_URL is not set: migrations run as the owner role")
    owner_dsn = settings.migration_database_url.get_secret_value()
    owner, _ = _credentials(owner_dsn, "MIGRATION_DATABASE_URL")
    role, password = _credentials(settings.database_url.get_secret_value(), "DATABASE_URL")
    if role == owner:
        raise MigrationError(
            "DATABASE_URL and MIGRATION_DATABASE_URL use the same role; the application "
            "role must be a separate role without table ownership or BYPASSRLS"
        )
    if not password:
        raise MigrationError("DATABASE_URL has no password for the application role")
    engine = migration_engine(owner_dsn)
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(
                lambda sync: _migrate_sync(sync, revision=revision, role=role, password=password)
            )
    finally:
        await engine.dispose()
