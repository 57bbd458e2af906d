"""Row-level security: a tenant cannot read or write another tenant's rows.

Every query here omits a tenant WHERE clause on purpose; only the policy on
the tables keeps tenants apart.
"""

from __future__ import annotations

import asyncpg
import pytest

from services.common.database import Database
from services.common.tenancy import InvalidTenantId

INSERT = (
    "INSERT INTO realtime_intelligence_events (lead_id, event_type, intelligence_data) "
    "VALUES ($1, 'lead_scored', $2)"
)


async def insert_for(db: Database, tenant: str, lead: str = "lead-1") -> None:
    async with db.tenant(tenant) as conn:
        await conn.execute(INSERT, lead, {"score": 0.9})


async def test_tenant_reads_only_its_own_rows(db: Database) -> None:
    await insert_for(db, "tenant-a")
    await insert_for(db, "tenant-b")
    async with db.tenant("tenant-b") as conn:
        tenants = await conn.fetch("SELECT tenant_id FROM realtime_intelligence_events")
    assert [row["tenant_id"] for row in tenants] == ["tenant-b"]


async def test_tenant_column_defaults_to_the_transaction_tenant(db: Database) -> None:
    await insert_for(db, "tenant-a")
    async with db.tenant("tenant-a") as conn:
        assert await conn.fetchval("SELECT tenant_id FROM realtime_intelligence_events") == (
            "tenant-a"
        )


async def test_jsonb_round_trips_as_python_objects(db: Database) -> None:
    await insert_for(db, "tenant-a")
    async with db.tenant("tenant-a") as conn:
        data = await conn.fetchval("SELECT intelligence_data FROM realtime_intelligence_events")
    assert data == {"score": 0.9}


async def test_tenant_cannot_insert_a_row_for_another_tenant(db: Database) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="row-level security"):
        async with db.tenant("tenant-b") as conn:
            await conn.execute(
                "INSERT INTO realtime_intelligence_events "
                "(tenant_id, lead_id, event_type, intelligence_data) "
                "VALUES ('tenant-a', 'lead-1', 'forged', '{}')"
            )


async def test_tenant_cannot_update_another_tenants_rows(db: Database, owner_db: Database) -> None:
    await insert_for(db, "tenant-a")
    async with db.tenant("tenant-b") as conn:
        status = await conn.execute("UPDATE realtime_intelligence_events SET event_type = 'x'")
    assert status == "UPDATE 0"
    async with owner_db.unscoped() as conn:
        assert await conn.fetchval("SELECT event_type FROM realtime_intelligence_events") == (
            "lead_scored"
        )


async def test_tenant_cannot_move_its_row_to_another_tenant(db: Database) -> None:
    await insert_for(db, "tenant-a")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with db.tenant("tenant-a") as conn:
            await conn.execute("UPDATE realtime_intelligence_events SET tenant_id = 'tenant-b'")


async def test_tenant_cannot_delete_another_tenants_rows(db: Database, owner_db: Database) -> None:
    await insert_for(db, "tenant-a")
    async with db.tenant("tenant-b") as conn:
        assert await conn.execute("DELETE FROM realtime_intelligence_events") == "DELETE 0"
    async with owner_db.unscoped() as conn:
        assert await conn.fetchval("SELECT count(*) FROM realtime_intelligence_events") == 1


async def test_application_role_without_tenant_sees_nothing(db: Database) -> None:
    await insert_for(db, "tenant-a")
    async with db.unscoped() as conn:
        assert await conn.fetchval("SELECT count(*) FROM realtime_intelligence_events") == 0


async def test_tenant_scope_does_not_outlive_its_transaction(app_database_url: str) -> None:
    # One pooled connection: the next user of it must not inherit tenant-a.
    single = await Database.open(app_database_url, max_size=1)
    try:
        await insert_for(single, "tenant-a")
        async with single.unscoped() as conn:
            assert await conn.fetchval("SELECT current_setting('app.tenant_id', true)") in (
                None,
                "",
            )
            assert await conn.fetchval("SELECT count(*) FROM realtime_intelligence_events") == 0
    finally:
        await single.close()


async def test_application_role_cannot_switch_row_security_off(db: Database) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="must be owner"):
        async with db.unscoped() as conn:
            await conn.execute(
                "ALTER TABLE realtime_intelligence_events DISABLE ROW LEVEL SECURITY"
            )


@pytest.mark.parametrize(
    "table",
    [
        "realtime_intelligence_events",
        "churn_interventions",
        "coaching_sessions",
        "property_vision_analyses",
        "phase3_business_metrics",
        "ab_test_assignments",
    ],
)
async def test_every_seed_table_forces_row_level_security(owner_db: Database, table: str) -> None:
    async with owner_db.unscoped() as conn:
        row = await conn.fetchrow(
            "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = $1", table
        )
    assert (row["relrowsecurity"], row["relforcerowsecurity"]) == (True, True)


async def test_malformed_tenant_id_is_refused_before_any_query(db: Database) -> None:
    with pytest.raises(InvalidTenantId):
        async with db.tenant("a' OR '1'='1"):
            pass
