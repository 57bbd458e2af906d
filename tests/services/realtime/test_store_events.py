"""Storing a group of events in one round trip (``realtime_store_events``).

The function scopes its own transaction to the tenant before inserting, so
row-level security applies exactly as in ``Database.tenant()``; these tests
try to cross the tenant line through it and check that no scope survives
the call on a pooled connection.
"""

from __future__ import annotations

import time

import asyncpg
import pytest

from services.common.database import Database
from services.common.tenancy import InvalidTenantId
from services.realtime import store
from services.realtime.event_ids import new_event_id


def _event(lead_id: str = "lead-1", agent_id: str | None = "agent-1") -> store.NewEvent:
    return store.NewEvent(
        event_id=new_event_id(),
        lead_id=lead_id,
        event_type="lead_scored",
        agent_id=agent_id,
        document={"score": 0.42, "model_version": "test", "lead": {}, "data": {"n": 1}},
        accepted_at=round(time.time(), 6),
    )


async def _rows(db: Database, tenant: str) -> list[asyncpg.Record]:
    async with db.tenant(tenant) as conn:
        return list(
            await conn.fetch(
                "SELECT event_id::text AS event_id, tenant_id, lead_id, agent_id, "
                "intelligence_data, published_at, stream_id, xmin::text AS xid "
                "FROM realtime_intelligence_events ORDER BY event_id"
            )
        )


async def test_a_group_is_stored_for_its_tenant_unpublished_in_one_transaction(
    db: Database,
) -> None:
    events = [_event("lead-1"), _event("lead-2", agent_id=None), _event("lead-3")]
    await store.insert_events(db, tenant_id="tenant-a", rows=events)

    rows = await _rows(db, "tenant-a")
    assert [row["event_id"] for row in rows] == [event.event_id for event in events]
    assert {row["tenant_id"] for row in rows} == {"tenant-a"}
    assert [row["agent_id"] for row in rows] == ["agent-1", None, "agent-1"]
    assert rows[0]["intelligence_data"] == events[0].document
    # The outbox: not published until the ingest's mark arrives.
    assert all(row["published_at"] is None and row["stream_id"] is None for row in rows)
    assert len({row["xid"] for row in rows}) == 1


async def test_created_at_is_the_acceptance_time(db: Database) -> None:
    event = _event()
    await store.insert_events(db, tenant_id="tenant-a", rows=[event])
    async with db.tenant("tenant-a") as conn:
        created = await conn.fetchval(
            "SELECT extract(epoch FROM created_at)::float8 FROM realtime_intelligence_events"
        )
    assert created == pytest.approx(event.accepted_at, abs=1e-6)


async def test_another_tenant_sees_none_of_the_stored_events(db: Database) -> None:
    await store.insert_events(db, tenant_id="tenant-a", rows=[_event()])
    assert await _rows(db, "tenant-b") == []


async def test_the_call_leaves_no_tenant_scope_on_the_pooled_connection(
    app_database_url: str,
) -> None:
    single = await Database.open(app_database_url, max_size=1)
    try:
        await store.insert_events(single, tenant_id="tenant-a", rows=[_event()])
        async with single.unscoped() as conn:
            assert await conn.fetchval("SELECT current_setting('app.tenant_id', true)") in (
                None,
                "",
            )
            assert await conn.fetchval("SELECT count(*) FROM realtime_intelligence_events") == 0
    finally:
        await single.close()


async def test_it_refuses_to_switch_a_transaction_scoped_to_another_tenant(
    db: Database,
) -> None:
    event = _event()
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="another tenant"):
        async with db.tenant("tenant-a") as conn:
            await conn.fetchval(
                "SELECT realtime_store_events($1, $2, $3, $4, $5, $6, $7)",
                "tenant-b",
                [event.event_id],
                [event.lead_id],
                [event.event_type],
                [event.agent_id],
                ["{}"],
                [event.accepted_at],
            )
    assert await _rows(db, "tenant-b") == []


async def test_it_refuses_arrays_of_different_lengths(db: Database) -> None:
    event = _event()
    with pytest.raises(asyncpg.InvalidParameterValueError, match="differ in length"):
        await db.tenant_call(
            "tenant-a",
            store.STORE_EVENTS_FUNCTION,
            [event.event_id],
            [event.lead_id, "lead-extra"],
            [event.event_type],
            [event.agent_id],
            ["{}"],
            [event.accepted_at],
        )
    assert await _rows(db, "tenant-a") == []


async def test_a_failing_group_stores_nothing(db: Database) -> None:
    first, second = _event("lead-1"), _event("lead-2")
    duplicate = store.NewEvent(
        event_id=first.event_id,
        lead_id="lead-3",
        event_type="lead_scored",
        agent_id=None,
        document={},
        accepted_at=first.accepted_at,
    )
    with pytest.raises(asyncpg.UniqueViolationError):
        await store.insert_events(db, tenant_id="tenant-a", rows=[first, second, duplicate])
    assert await _rows(db, "tenant-a") == []


async def test_a_malformed_tenant_id_is_refused_before_any_query(db: Database) -> None:
    with pytest.raises(InvalidTenantId):
        await store.insert_events(db, tenant_id="a' OR '1'='1", rows=[_event()])


async def test_tenant_call_takes_only_a_function_name(db: Database) -> None:
    with pytest.raises(ValueError, match="not a SQL function name"):
        await db.tenant_call("tenant-a", "pg_sleep(1); SELECT 1")
