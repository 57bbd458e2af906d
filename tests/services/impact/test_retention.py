"""``retention prune`` against real Postgres: old events and aggregates go, tenant by
tenant, in batches; recent rows and state stay; another tenant is untouched when scoped."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from services.cli import main
from services.common.database import Database
from services.impact.retention import PURGES, Cutoffs, prune

#: The command prunes from its own clock: the rows are placed around it, a day clear
#: of either cutoff (the defaults, RETENTION_EVENT_DAYS 30 and _METRIC_DAYS 365).
NOW = datetime.now(UTC)
CUTOFFS = Cutoffs.of(NOW, event_days=30, metric_days=365)
OLD, RECENT = NOW - timedelta(days=31), NOW - timedelta(days=29)
OLD_DAY, RECENT_DAY = NOW.date() - timedelta(days=367), NOW.date() - timedelta(days=363)
TENANTS = ("tenant-a", "tenant-b", "tenant-c")
#: Per table, what each tenant holds: (old rows that go, rows that stay).
EVENT_TABLES = (
    "realtime_intelligence_events",
    "churn_signals",
    "coaching_sessions",
    "claude_cost_ledger",
    "phase3_business_metrics",
    "auth_token_revocations",
)


async def _seed(owner_db: Database, tenant: str) -> None:
    """Three old and one recent row per event table; interventions old and recent, open
    and closed; aggregates older and younger than a year."""
    async with owner_db.unscoped() as conn:
        await conn.execute("INSERT INTO churn_tenants (tenant_id) VALUES ($1)", tenant)
        await conn.execute(
            "INSERT INTO churn_leads (tenant_id, lead_id, crm_contact_id) VALUES ($1, 'l1', 'c1')",
            tenant,
        )
        for at in (OLD, OLD - timedelta(days=3), OLD - timedelta(days=90), RECENT):
            await conn.execute(
                "INSERT INTO realtime_intelligence_events (tenant_id, lead_id, event_type, "
                "intelligence_data, created_at) VALUES ($1, 'l1', 'lead.created', '{}', $2)",
                tenant,
                at,
            )
            await conn.execute(
                "INSERT INTO churn_signals (tenant_id, signal_id, lead_id, signal_type, "
                "occurred_at, received_at) VALUES ($1, $2, 'l1', 'reply', $3, $3)",
                tenant,
                uuid.uuid4(),
                at,
            )
            await conn.execute(
                "INSERT INTO coaching_sessions (tenant_id, agent_id, analysis_data, "
                "coaching_insights, created_at) VALUES ($1, 'agent-1', '{}', '[]', $2)",
                tenant,
                at,
            )
            await conn.execute(
                "INSERT INTO claude_cost_ledger (tenant_id, feature, model, created_at) "
                "VALUES ($1, 'ai_coaching', 'claude-sonnet-4-5', $2)",
                tenant,
                at,
            )
            # Kept 30 days after the revocation: the three old ones have passed it.
            await conn.execute(
                "INSERT INTO auth_token_revocations (tenant_id, jti, revoked_at, keep_until, "
                "actor, reason) "
                "VALUES ($1, $2, $3, $3::timestamptz + interval '30 days', 'ops', 'leaked')",
                tenant,
                uuid.uuid4().hex,
                at,
            )
        for day in (OLD_DAY, OLD_DAY - timedelta(days=1), OLD_DAY - timedelta(days=40), RECENT_DAY):
            await conn.execute(
                "INSERT INTO phase3_business_metrics (tenant_id, metric_date, feature_name) "
                "VALUES ($1, $2, 'ai_coaching')",
                tenant,
                day,
            )
        # Interventions: (stage, status, created_at, outbox status or None).
        for stage, status, at, outbox in (
            ("closed-old", "delivered", OLD, "delivered"),
            ("suppressed-old", "suppressed", OLD, None),
            ("closed-recent", "delivered", RECENT, "delivered"),
            ("pending-old", "pending", OLD, "pending"),
            ("dead-letter-old", "dead_letter", OLD, "dead_letter"),
            # Closed, but one channel's send is a dead letter an operator may retry.
            ("mixed-old", "delivered", OLD, "dead_letter"),
        ):
            intervention = await conn.fetchval(
                "INSERT INTO churn_interventions (tenant_id, lead_id, churn_probability, "
                "intervention_stage, status, created_at, window_start) "
                "VALUES ($1, 'l1', 0.5, $2, $3, $4, $4) RETURNING intervention_id",
                tenant,
                stage,
                status,
                at,
            )
            if outbox is not None:
                await conn.execute(
                    "INSERT INTO churn_outbox (tenant_id, intervention_id, lead_id, channel, "
                    "idempotency_key, status) VALUES ($1, $2, 'l1', 'sms', $3, $4)",
                    tenant,
                    intervention,
                    f"{stage}-sms",
                    outbox,
                )


async def _counts(owner_db: Database, tenant: str) -> dict[str, int]:
    async with owner_db.unscoped() as conn:
        counts = {
            table: await conn.fetchval(
                f"SELECT count(*) FROM {table} WHERE tenant_id = $1",  # noqa: S608 - constants
                tenant,
            )
            for table in (*EVENT_TABLES, "churn_outbox", "churn_leads")
        }
        stages = await conn.fetch(
            "SELECT intervention_stage FROM churn_interventions WHERE tenant_id = $1", tenant
        )
    counts["interventions"] = len(stages)
    return counts | {f"stage:{row['intervention_stage']}": 1 for row in stages}


SEEDED = {
    **dict.fromkeys(EVENT_TABLES, 4),
    "churn_outbox": 5,
    "churn_leads": 1,
    "interventions": 6,
    **{
        f"stage:{stage}": 1
        for stage in (
            "closed-old",
            "suppressed-old",
            "closed-recent",
            "pending-old",
            "dead-letter-old",
            "mixed-old",
        )
    },
}
PRUNED = {
    **dict.fromkeys(EVENT_TABLES, 1),
    # The closed old intervention's outbox row went with it (the cascade).
    "churn_outbox": 4,
    "churn_leads": 1,
    "interventions": 4,
    **{
        f"stage:{stage}": 1
        for stage in ("closed-recent", "pending-old", "dead-letter-old", "mixed-old")
    },
}


@pytest.fixture
async def seeded(owner_db: Database) -> Database:
    for tenant in TENANTS:
        await _seed(owner_db, tenant)
    return owner_db


async def test_scoped_prune_deletes_old_rows_of_its_tenants_in_batches(
    seeded: Database, db: Database
) -> None:
    pruned = await prune(db, CUTOFFS, batch_size=2, tenants=["tenant-a", "tenant-b"])
    by_table = {total.table: total for total in pruned}
    assert set(by_table) == {purge.table for purge in PURGES}
    for table in EVENT_TABLES:
        # Three old rows each, in batches of two: 2 + 1.
        assert (by_table[table].rows, by_table[table].tenants) == (6, 2), table
    assert by_table["churn_interventions"].rows == 4
    for tenant in ("tenant-a", "tenant-b"):
        assert await _counts(seeded, tenant) == PRUNED, tenant
    # Not in scope: untouched, old rows included.
    assert await _counts(seeded, "tenant-c") == SEEDED


async def test_prune_of_every_tenant_is_idempotent_and_keeps_state(
    seeded: Database,
    settings_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RETENTION_BATCH_SIZE", "2")
    monkeypatch.setenv("RETENTION_EVENT_DAYS", "30")  # the seed's, the default
    assert await asyncio.to_thread(main, ["retention", "prune"]) == 0
    out = capsys.readouterr().out
    assert "realtime_intelligence_events: 9 row(s) before " in out
    assert "for 3 tenant(s)" in out
    assert "churn_interventions: 6 row(s)" in out
    for tenant in TENANTS:
        assert await _counts(seeded, tenant) == PRUNED, tenant
    # Twice: nothing more to delete.
    assert await asyncio.to_thread(main, ["retention", "prune"]) == 0
    assert all(" 0 row(s) " in line for line in capsys.readouterr().out.splitlines())


async def test_two_runs_at_once_share_the_work(seeded: Database, db: Database) -> None:
    first, second = await asyncio.gather(
        prune(db, CUTOFFS, batch_size=1), prune(db, CUTOFFS, batch_size=1)
    )
    for one, other in zip(first, second, strict=True):
        expected = 6 if one.table == "churn_interventions" else 9
        assert one.rows + other.rows == expected, one.table
    for tenant in TENANTS:
        assert await _counts(seeded, tenant) == PRUNED, tenant


async def test_each_batch_walks_a_tenant_time_index(seeded: Database, db: Database) -> None:
    # A batch is a range scan of an index leading with (tenant_id, <time>), not a
    # scan of the table, whatever its size (the planner is told scans are dear).
    for purge in PURGES:
        async with db.tenant("tenant-a") as conn:
            await conn.execute("SET LOCAL enable_seqscan = off")
            plan = "\n".join(
                row[0]
                for row in await conn.fetch(
                    f"EXPLAIN {purge.statement}", CUTOFFS.of_purge(purge), 2
                )
            )
        conditions = [line for line in plan.splitlines() if "Index Cond" in line]
        assert any(f"{purge.column} < " in line for line in conditions), (purge.table, plan)
        assert "Seq Scan" not in plan, (purge.table, plan)


async def test_aggregate_refuses_days_whose_events_may_be_pruned(
    settings_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("RETENTION_EVENT_DAYS", "30")
    day = (datetime.now(UTC) - timedelta(days=20)).date().isoformat()
    code = await asyncio.to_thread(main, ["impact", "aggregate", "--date", day, "--days", "15"])
    assert code == 2
    assert "restating it would erase its stored row" in capsys.readouterr().err


async def test_a_tenant_that_fails_stops_neither_the_others_nor_the_exit_code(
    seeded: Database,
    settings_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A directory row no scope accepts (written by hand, or by an old bug):
    # every table's prune of it fails; every other tenant is still pruned.
    async with seeded.unscoped() as conn:
        await conn.execute("INSERT INTO churn_tenants (tenant_id) VALUES ('bad tenant!')")
    monkeypatch.setenv("RETENTION_BATCH_SIZE", "2")
    monkeypatch.setenv("RETENTION_EVENT_DAYS", "30")
    assert await asyncio.to_thread(main, ["retention", "prune"]) == 1
    out = capsys.readouterr().out
    assert all("; 1 tenant(s) failed" in line for line in out.splitlines()), out
    for tenant in TENANTS:
        assert await _counts(seeded, tenant) == PRUNED, tenant
    assert "retention: realtime_intelligence_events of tenant bad tenant! not pruned" in caplog.text
