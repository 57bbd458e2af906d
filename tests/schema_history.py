"""Take the test database's schema back to an older revision (for data-migration tests).

A test stores rows as the service stored them before a revision, then runs
``services.migrations.runner.migrate`` to come back to head and checks what
the revision did with them.
"""

from __future__ import annotations

from alembic import command
from sqlalchemy import Connection

from services.common.database import migration_engine
from services.common.settings import CommonSettings
from services.migrations.runner import alembic_config


async def downgrade_to(settings: CommonSettings, revision: str) -> None:
    """Downgrade the schema to ``revision`` as the owner (MIGRATION_DATABASE_URL)."""
    assert settings.migration_database_url is not None

    def downgrade(conn: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = conn
        command.downgrade(config, revision)

    engine = migration_engine(settings.migration_database_url.get_secret_value())
    try:
        async with engine.begin() as conn:
            await conn.run_sync(downgrade)
    finally:
        await engine.dispose()
