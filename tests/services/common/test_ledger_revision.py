"""Revision 0018: the cost ledger's unanswered calls (real Postgres).

At head a row is either answered (billed tokens, no bounds) or unanswered
(NULL tokens, bounds); the downgrade to 0017 drops the unanswered rows of
every tenant (the older schema cannot mark a cost as an estimate) and keeps
the billed ones.
"""

from __future__ import annotations

import asyncpg
import pytest

from services.common.database import Database
from services.common.settings import CommonSettings
from services.migrations.runner import migrate
from tests.schema_history import downgrade_to

BEFORE = "0017_rollback_notices"
_INSERT = (
    "INSERT INTO claude_cost_ledger (tenant_id, feature, model, cost_micro_usd, outcome, "
    "input_tokens, output_tokens, cache_write_tokens, cache_read_tokens, input_tokens_bound, "
    "output_tokens_bound) VALUES ($1, 'ai_coaching', 'claude-test', $2, $3, $4, $4, $4, $4, $5, $6)"
)


async def test_a_row_is_answered_with_tokens_or_unanswered_with_bounds(owner_db: Database) -> None:
    async with owner_db.unscoped() as conn:
        await conn.execute(_INSERT, "tenant-a", 10, "answered", 1, None, None)
        await conn.execute(_INSERT, "tenant-a", 20, "timeout", None, 100, 64)
        await conn.execute(_INSERT, "tenant-a", 30, "dropped", None, 100, 64)
        for outcome, tokens, bounds in (
            ("timeout", 1, (100, 64)),  # an estimate cannot claim billed tokens
            ("answered", None, (None, None)),  # a billed call has its tokens
            ("answered", 1, (100, 64)),  # and no bounds
            ("lost", None, (100, 64)),  # outcomes are a fixed set
        ):
            with pytest.raises(asyncpg.CheckViolationError):
                async with conn.transaction():  # a savepoint: the test's transaction goes on
                    await conn.execute(_INSERT, "tenant-a", 5, outcome, tokens, *bounds)
        assert await conn.fetchval("SELECT count(*) FROM claude_cost_ledger") == 3


async def test_the_downgrade_drops_unanswered_rows_of_every_tenant(
    settings: CommonSettings, owner_db: Database
) -> None:
    async with owner_db.unscoped() as conn:
        await conn.execute(_INSERT, "tenant-a", 10, "answered", 1, None, None)
        await conn.execute(_INSERT, "tenant-a", 20, "timeout", None, 100, 64)
        await conn.execute(_INSERT, "tenant-b", 30, "cancelled", None, 100, 64)
    await downgrade_to(settings, BEFORE)
    try:
        async with owner_db.unscoped() as conn:
            rows = await conn.fetch(
                "SELECT tenant_id, cost_micro_usd, input_tokens FROM claude_cost_ledger"
            )
            assert [tuple(row) for row in rows] == [("tenant-a", 10, 1)]
            with pytest.raises(asyncpg.NotNullViolationError):
                await conn.execute(
                    "INSERT INTO claude_cost_ledger (tenant_id, feature, model, input_tokens) "
                    "VALUES ('tenant-a', 'ai_coaching', 'claude-test', NULL)"
                )
    finally:
        await migrate(settings)
    async with owner_db.unscoped() as conn:
        assert await conn.fetchval("SELECT outcome FROM claude_cost_ledger") == "answered"
