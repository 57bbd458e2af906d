"""The ingest's storage path: tenant transactions in three round trips, group commit.

Both are throughput changes (W1); these tests pin what must not change with
them: every acknowledged event stored once for its own tenant, the tenant
scope ending with its transaction, and a failed block leaving nothing behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from services.common.database import Database
from services.common.scoring import LeadFeatures
from services.realtime import store
from tests.services.realtime.conftest import Replica, event_body, post_event

pytestmark = pytest.mark.integration

INSERT = (
    "INSERT INTO realtime_intelligence_events (lead_id, event_type, intelligence_data) "
    "VALUES ($1, 'lead_scored', $2)"
)
# As the ingest stores events: not yet published.
UNPUBLISHED_INSERT = (
    "INSERT INTO realtime_intelligence_events "
    "(lead_id, event_type, intelligence_data, published_at) "
    "VALUES ($1, 'lead_scored', '{}', NULL) RETURNING event_id::text"
)
CURRENT_TENANT = "SELECT current_setting('app.tenant_id', true)"


async def test_tenant_transaction_is_three_round_trips_and_leaves_no_scope(
    app_database_url: str,
) -> None:
    single = await Database.open(app_database_url, max_size=1)
    sent: list[str] = []
    try:
        async with single.tenant("tenant-a") as conn:
            conn.add_query_logger(lambda logged: sent.append(logged.query))
        sent.clear()
        async with single.tenant("tenant-a") as conn:
            assert await conn.fetchval(CURRENT_TENANT) == "tenant-a"
        # BEGIN + scope, the statement, COMMIT + session reset; no reset on release.
        assert len(sent) == 3
        assert sent[0].startswith("BEGIN;")
        assert sent[1] == CURRENT_TENANT
        assert sent[2].startswith("COMMIT;")
        sent.clear()
        async with single.unscoped() as conn:  # the same pooled connection
            assert await conn.fetchval(CURRENT_TENANT) in (None, "")
            assert await conn.fetchval("SELECT count(*) FROM realtime_intelligence_events") == 0
    finally:
        await single.close()


async def test_session_settings_do_not_outlive_a_tenant_transaction(
    app_database_url: str,
) -> None:
    single = await Database.open(app_database_url, max_size=1)
    try:
        async with single.tenant("tenant-a") as conn:
            default = await conn.fetchval("SHOW statement_timeout")
            # Session-level, not transaction-local: only the reset undoes it.
            await conn.execute("SET SESSION statement_timeout = '1234ms'")
            await conn.execute("SELECT set_config('app.tenant_id', 'tenant-b', false)")
        async with single.unscoped() as conn:
            assert await conn.fetchval("SHOW statement_timeout") == default
            assert await conn.fetchval(CURRENT_TENANT) in (None, "")
    finally:
        await single.close()


async def _insert_then_fail(db: Database) -> None:
    async with db.tenant("tenant-a") as conn:
        await conn.execute(INSERT, "lead-rolled-back", {"score": 0.1})
        raise RuntimeError("boom")


async def test_failed_tenant_block_rolls_back_and_the_connection_is_reusable(
    app_database_url: str,
) -> None:
    single = await Database.open(app_database_url, max_size=1)
    try:
        with pytest.raises(RuntimeError, match="boom"):
            await _insert_then_fail(single)
        async with single.tenant("tenant-a") as conn:
            assert await conn.fetchval("SELECT count(*) FROM realtime_intelligence_events") == 0
            await conn.execute(INSERT, "lead-kept", {"score": 0.2})
        async with single.tenant("tenant-a") as conn:
            rows = await conn.fetch("SELECT lead_id FROM realtime_intelligence_events")
        assert [row["lead_id"] for row in rows] == ["lead-kept"]
    finally:
        await single.close()


async def test_concurrent_events_are_grouped_and_each_stored_once_for_its_tenant(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
    db: Database,
) -> None:
    tokens = {tenant: make_token(tenant) for tenant in ("tenant-a", "tenant-b")}
    bodies = [
        (tenant, event_body(sample_leads[i % len(sample_leads)], lead_id=f"{tenant}-{i}"))
        for i in range(60)
        for tenant in ("tenant-a", "tenant-b")
    ]
    acks: list[dict[str, Any]] = await asyncio.gather(
        *(post_event(http, replica, tokens[tenant], body) for tenant, body in bodies)
    )
    assert all(ack["delivery"] == "published" for ack in acks)
    # Stream ids are per tenant stream: unique within each tenant.
    ids = {(tenant, ack["stream_id"]) for (tenant, _), ack in zip(bodies, acks, strict=True)}
    assert len(ids) == len(acks)
    for tenant in tokens:
        async with db.tenant(tenant) as conn:
            rows = await conn.fetch(
                "SELECT lead_id, xmin::text AS xid FROM realtime_intelligence_events"
            )
        lead_ids = sorted(row["lead_id"] for row in rows)
        assert lead_ids == sorted(f"{tenant}-{i}" for i in range(60))
        # Rows of one group share their inserting transaction; concurrent
        # requests formed fewer transactions than events.
        assert len({row["xid"] for row in rows}) < len(rows)


async def test_marks_and_latencies_are_written_together_with_the_old_rules(db: Database) -> None:
    ids = {}
    async with db.tenant("tenant-a") as conn:
        for lead in ("both", "latency-only", "mark-only", "published-before"):
            ids[lead] = await conn.fetchval(UNPUBLISHED_INSERT, lead)
        await conn.execute(
            "UPDATE realtime_intelligence_events SET stream_id = '1-0', published_at = now(), "
            "websocket_latency_seconds = 0.5 WHERE event_id = $1::uuid",
            ids["published-before"],
        )
    async with db.tenant("tenant-a") as conn:
        await store.mark_and_record(
            conn,
            {ids["both"]: "5-0", ids["mark-only"]: "6-0", ids["published-before"]: "7-0"},
            {ids["both"]: 0.004, ids["latency-only"]: -0.001, ids["published-before"]: 0.2},
        )
        # A slower first delivery from another replica does not replace the faster one.
        await store.mark_and_record(conn, {}, {ids["both"]: 0.009})
        rows = await conn.fetch(
            "SELECT lead_id, stream_id, published_at IS NOT NULL AS published, "
            "websocket_latency_seconds AS s FROM realtime_intelligence_events"
        )
    got = {row["lead_id"]: (row["stream_id"], row["published"], row["s"]) for row in rows}
    assert got == {
        "both": ("5-0", True, 0.004),
        "latency-only": (None, False, 0.0),
        "mark-only": ("6-0", True, None),
        # An earlier mark is never overwritten; the latency keeps the minimum.
        "published-before": ("1-0", True, 0.2),
    }


def _index_names(plan: Any) -> set[str]:
    """Every index a JSON EXPLAIN plan reads."""
    if isinstance(plan, dict):
        found = {plan["Index Name"]} if "Index Name" in plan else set()
        for value in plan.values():
            found |= _index_names(value)
        return found
    if isinstance(plan, list):
        return set().union(*(_index_names(item) for item in plan)) if plan else set()
    return set()


async def test_marking_a_few_events_reads_them_by_key_whatever_the_backlog(
    db: Database, owner_db: Database
) -> None:
    # Statistics taken while nothing was waiting say "the outbox is empty";
    # then a backlog builds up (a Redis outage). Marking ten events must stay
    # ten key lookups, not a pass over the tenant's backlog.
    backlog = (
        "INSERT INTO realtime_intelligence_events "
        "(lead_id, event_type, intelligence_data, published_at) "
        "SELECT 'lead-' || i, 'lead_scored', '{{}}', {published} "
        "FROM generate_series(1, $1) AS i"
    )
    async with db.tenant("tenant-a") as conn:
        await conn.execute(backlog.format(published="now()"), 2000)
    async with owner_db.unscoped() as conn:
        await conn.execute("ANALYZE realtime_intelligence_events")
    async with db.tenant("tenant-a") as conn:
        await conn.execute(backlog.format(published="NULL"), 3000)
        ids = await conn.fetch(
            "SELECT event_id::text FROM realtime_intelligence_events "
            "WHERE published_at IS NULL LIMIT 10"
        )
        event_ids = sorted(row["event_id"] for row in ids)
        # Once first, so the logged calls below are not type introspection.
        nobody = "00000000-0000-0000-0000-000000000000"
        await store.mark_and_record(conn, {nobody: "1-0"}, {nobody: 0.1})
        sent: list[Any] = []
        conn.add_query_logger(sent.append)
        await store.mark_published(
            conn, {event_id: f"9-{i}" for i, event_id in enumerate(event_ids)}
        )
        await store.record_latencies(conn, dict.fromkeys(event_ids, 0.002))
        await store.mark_and_record(conn, {event_ids[0]: "9-0"}, {event_ids[1]: 0.001})
        await asyncio.sleep(0)  # loggers are called soon after, not during, the query
        conn.remove_query_logger(sent.append)
        updates = [logged for logged in sent if logged.query.lstrip().startswith("UPDATE")]
        assert len(updates) == 3
        # As planned for these values, and as the generic plan Postgres
        # switches a pooled connection's prepared statement to after five
        # executions.
        for mode in ("force_custom_plan", "force_generic_plan"):
            await conn.execute(f"SET LOCAL plan_cache_mode = {mode}")
            for logged in updates:
                plan = await conn.fetchval("EXPLAIN (FORMAT JSON) " + logged.query, *logged.args)
                assert _index_names(plan) == {"realtime_intelligence_events_pkey"}, mode
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM realtime_intelligence_events WHERE published_at IS NULL"
            )
            == 2990
        )
