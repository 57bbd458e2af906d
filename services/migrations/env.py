"""Alembic environment: raw-SQL revisions run over SQLAlchemy's asyncpg driver.

Two ways in:
- ``enterprisehub migrate`` (``services.migrations.runner``) opens the
  connection itself, inside a transaction holding the migration advisory lock,
  and hands it over in ``config.attributes["connection"]``;
- a developer's ``alembic -c services/migrations/alembic.ini ...`` has no
  connection, so one is opened here from MIGRATION_DATABASE_URL.
There is no SQLAlchemy model metadata: revisions are written SQL, so
autogenerate is not used.
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection

from services.common.database import migration_engine, sqlalchemy_url

config = context.config
if config.config_file_name is not None and config.attributes.get("connection") is None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url() -> str:
    url = os.environ.get("MIGRATION_DATABASE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set MIGRATION_DATABASE_URL (the owner role's DSN) to run migrations")
    return url


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=None, transaction_per_migration=False)
    with context.begin_transaction():
        context.run_migrations()


async def _run_with_own_engine() -> None:
    engine = migration_engine(_url())
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=sqlalchemy_url(_url()), target_metadata=None, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    given = config.attributes.get("connection")
    if given is not None:
        _run(given)
    else:
        asyncio.run(_run_with_own_engine())
