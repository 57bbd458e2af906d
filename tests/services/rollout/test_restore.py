"""Flags Redis has lost come back from their last state recorded in Postgres (real both)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from services.common.database import Database
from services.common.flags import (
    FEATURES,
    FlagState,
    FlagWriteConflict,
    flag_key,
    get_flags,
    read_flags,
    write_flag,
)
from services.common.redis import Redis
from services.rollback.procedure import RollbackRequest, roll_back
from services.rollout.operations import (
    AUDIT_TRAIL,
    RECORDED_STATES,
    RESTORE_COMMAND,
    STAGE_STARTED_AT,
    FlagChangedMeanwhile,
    apply_changes,
    audit_trail,
    lock_flag_changes,
    plan_changes,
    record_change,
    recorded_states,
    stage_started_at,
)
from services.rollout.restore import (
    Outcome,
    Restored,
    restore_if_missing,
    restore_missing,
    revert_if_stale,
)
from tests.services.realtime.test_group_commit import _index_names
from tests.services.rollback.test_webhook import _waiting_on_locks
from tests.services.rollout.test_cli import _audit, _cli

SEED = '{"property_vision": {"enabled": true, "rolloutPercentage": 10}, "ai_coaching": true}'
ON_10 = FlagState(enabled=True, rollout_percentage=10)
OFF_10 = FlagState(enabled=False, rollout_percentage=10)


Row = tuple[str, str, str, bool, float, str, str]


async def _record(owner_db: Database, *rows: Row) -> None:
    """Audit rows ``(environment, feature, actor, to_enabled, to_percentage, reason, command)``."""
    async with owner_db.unscoped() as conn:
        await conn.executemany(
            "INSERT INTO flag_audit (environment, feature_name, actor, to_enabled, "
            "to_percentage, reason, command) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            rows,
        )


def _request(feature: str, key: str = "alertmanager:vision-latency") -> RollbackRequest:
    return RollbackRequest(
        key=key,
        source="alertmanager",
        alertname="VisionLatencyRollback",
        feature=feature,
        features=(feature,),
        environment="local",
        actor="alertmanager",
        reason="vision p95 above 3 s",
        starts_at=datetime(2026, 12, 4, 7, 0, tzinfo=UTC),
    )


async def _set(feature: str, percentage: str, reason: str) -> None:
    code = await _cli(
        "rollout", "set", "--feature", feature, "--percentage", percentage,
        "--environment", "local", "--reason", reason, "--yes",
    )  # fmt: skip
    assert code == 0


async def test_flags_init_after_redis_lost_everything_restores_the_last_state_not_the_seed(
    settings_env: dict[str, str],
    redis_client: Redis,
    db: Database,
    owner_db: Database,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await _cli("flags", "init", "--seed", SEED) == 0
    await _set("churn_prevention", "50", "week 3")
    # The handler turned vision off (10% kept); an operator took coaching to 25%.
    await roll_back(db=db, redis=redis_client, request=_request("property_vision"))
    await _set("ai_coaching", "25", "back to week 2")
    before = await get_flags(redis_client)
    capsys.readouterr()

    await redis_client.flushdb()  # a restart without persistence, an empty replica
    assert await _cli("flags", "init", "--seed", SEED) == 0

    assert await get_flags(redis_client) == before
    assert before["property_vision"] == OFF_10  # the seed says on: it must stay off
    out = capsys.readouterr().out
    assert "property_vision: restored from its last recorded state (off (10% kept))" in out
    restores = [r for r in await _audit(owner_db) if r["command"] == "flags restore"]
    assert len(restores) == 4
    assert {r["actor"] for r in restores} == {"flags-init"}
    # Present flags are never touched: a second run changes and records nothing.
    assert await _cli("flags", "init", "--seed", SEED) == 0
    assert capsys.readouterr().out.count("exists, unchanged") == 4
    assert len([r for r in await _audit(owner_db) if r["command"] == "flags restore"]) == 4


async def test_only_a_flag_never_recorded_falls_back_to_the_seed(
    settings_env: dict[str, str], redis_client: Redis, owner_db: Database
) -> None:
    # An operator's direct write (no record) is present: left as it is.
    await write_flag(redis_client, "ai_coaching", FlagState(enabled=True, rollout_percentage=5))
    await _record(
        owner_db,
        ("local", "churn_prevention", "ops", False, 50, "rolled back", "rollback:cli"),
        # Another environment's record is not this one's state.
        ("staging", "property_vision", "ops", False, 0, "off", "rollout set"),
    )
    async with owner_db.unscoped() as conn:
        results = await restore_missing(
            conn,
            redis_client,
            environment="local",
            actor="flags-init",
            seed={"churn_prevention": FlagState(enabled=True, rollout_percentage=100),
                  "property_vision": ON_10},
        )  # fmt: skip
    outcomes = {r.feature: r.outcome for r in results}
    assert outcomes == {
        "realtime_intelligence": Outcome.SEEDED,
        "property_vision": Outcome.SEEDED,
        "churn_prevention": Outcome.RESTORED,
        "ai_coaching": Outcome.PRESENT,
    }
    assert await get_flags(redis_client) == {
        "realtime_intelligence": FlagState(),
        "property_vision": ON_10,
        "churn_prevention": FlagState(enabled=False, rollout_percentage=50),
        "ai_coaching": FlagState(enabled=True, rollout_percentage=5),
    }


async def test_without_a_seed_a_flag_never_recorded_stays_missing(
    settings_env: dict[str, str], redis_client: Redis, db: Database, owner_db: Database
) -> None:
    await _record(owner_db, ("local", "ai_coaching", "ops", True, 25, "week 2", "rollout set"))
    restored = await restore_if_missing(
        db=db, redis=redis_client, environment="local", actor="rollback-handler"
    )
    assert [(r.feature, r.state) for r in restored] == [
        ("ai_coaching", FlagState(enabled=True, rollout_percentage=25))
    ]
    flags = await get_flags(redis_client)
    assert [f for f, state in flags.items() if state is None] == [
        "realtime_intelligence",
        "property_vision",
        "churn_prevention",
    ]
    # Nothing missing that has a record: nothing more is done or recorded.
    assert (
        await restore_if_missing(
            db=db, redis=redis_client, environment="local", actor="rollback-handler"
        )
        == []
    )
    assert len(await _audit(owner_db)) == 2


async def test_a_change_planned_while_the_flag_was_missing_is_refused_after_a_restore(
    settings_env: dict[str, str], redis_client: Redis, db: Database, owner_db: Database
) -> None:
    # Recorded off by a rollback; Redis lost it. An operator plans "on at 50%"
    # from "missing" while the keeper restores it: the operator's write must not
    # land on a state it never saw (it says so; the operator looks and decides).
    await _record(
        owner_db, ("local", "property_vision", "alertmanager", False, 10, "p95", "rollback:am")
    )
    planned = await plan_changes(
        redis_client, ("property_vision",), lambda _: FlagState(enabled=True, rollout_percentage=50)
    )
    assert planned[0].before is None
    await restore_if_missing(db=db, redis=redis_client, environment="local", actor="keeper")
    with pytest.raises(FlagChangedMeanwhile, match="property_vision is now off"):
        await apply_changes(
            redis=redis_client,
            db=db,
            environment="local",
            changes=planned,
            actor="ops",
            reason="resume",
            command="rollout set",
        )
    assert (await get_flags(redis_client))["property_vision"] == OFF_10


async def test_a_rollback_after_redis_lost_the_flags_keeps_the_percentage_and_restores(
    settings_env: dict[str, str], redis_client: Redis, db: Database, owner_db: Database
) -> None:
    assert await _cli("flags", "init", "--seed", SEED) == 0
    await redis_client.flushdb()
    outcome = await roll_back(db=db, redis=redis_client, request=_request("property_vision"))
    assert outcome.changed_features == ["property_vision"]
    flags = await get_flags(redis_client)
    # Off with the recorded 10% kept (not "off at 0%"), so `rollout set` resumes
    # the same step; the other flags are back as recorded.
    assert flags["property_vision"] == OFF_10
    assert flags["ai_coaching"] == FlagState(enabled=True, rollout_percentage=100)
    last = (await _audit(owner_db))[-1]
    assert (last["feature_name"], last["from_enabled"], last["to_enabled"]) == (
        "property_vision",
        True,
        False,
    )

    # Lost again: a second incident finds it already off (no change, no undo).
    await redis_client.flushdb()
    again = await roll_back(db=db, redis=redis_client, request=_request("property_vision", "k2"))
    assert again.changed_features == []
    assert (await get_flags(redis_client))["property_vision"] == OFF_10

    # A failover to a copy that missed the rollback has it on again: the next
    # incident reverts the copy under its lock before planning, so it too finds
    # the feature off (no second notice, no Deployment undone twice).
    await write_flag(redis_client, "property_vision", ON_10)
    third = await roll_back(db=db, redis=redis_client, request=_request("property_vision", "k3"))
    assert third.changed_features == []
    assert (await get_flags(redis_client))["property_vision"] == OFF_10


async def test_a_rollback_retried_after_a_lost_commit_records_the_off_state_it_finds(
    settings_env: dict[str, str], redis_client: Redis, db: Database, owner_db: Database
) -> None:
    assert await _cli("flags", "init", "--seed", SEED) == 0
    # The handler's first try wrote "off" to Redis, then its commit failed: the
    # flag is off, the record still says on. Its retry finds nothing to change.
    await write_flag(redis_client, "property_vision", OFF_10)
    outcome = await roll_back(db=db, redis=redis_client, request=_request("property_vision"))
    assert outcome.changed_features == []
    last = (await _audit(owner_db))[-1]
    assert (last["feature_name"], last["from_enabled"], last["to_enabled"]) == (
        "property_vision",
        True,
        False,
    )
    assert "the record lacked" in str(last["reason"])
    # So losing Redis now brings the feature back off, not on.
    await redis_client.flushdb()
    await restore_if_missing(db=db, redis=redis_client, environment="local", actor="keeper")
    assert (await get_flags(redis_client))["property_vision"] == OFF_10


async def test_the_audit_reads_in_write_order_not_transaction_start_order(
    owner_db: Database,
) -> None:
    # changed_at is when a writer's transaction began: of overlapping writers,
    # one that began first can write later (under the lock).
    def at(second: int) -> datetime:
        return datetime(2026, 12, 4, 9, 0, second, tzinfo=UTC)

    writes = ((at(5), 5.0, 25.0), (at(0), 25.0, 10.0), (at(2), 10.0, 25.0))
    async with owner_db.unscoped() as conn:
        for changed_at, before, after in writes:
            await conn.execute(
                "INSERT INTO flag_audit (environment, feature_name, actor, from_enabled, "
                "from_percentage, to_enabled, to_percentage, reason, command, changed_at) "
                "VALUES ('local', 'ai_coaching', 'ops', true, $1, true, $2, 'step', "
                "'rollout set', $3)",
                before,
                after,
                changed_at,
            )
    trail = await audit_trail(owner_db, "local", "ai_coaching")
    assert [row["to_percentage"] for row in trail] == [25, 10, 25]
    # The current 25% stage began with the last write, not the first.
    current = FlagState(enabled=True, rollout_percentage=25)
    assert await stage_started_at(owner_db, "local", "ai_coaching", current) == at(2)


async def test_the_audit_of_another_environment_is_not_this_ones(owner_db: Database) -> None:
    # Environments may share a database (their rows carry the environment): a
    # staging move to 25% must neither restart production's 25% stage (the
    # advance would wait again) nor show as its last change.
    started = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
    rows = (
        ("production", started, "production step"),
        ("staging", started + timedelta(days=2), "staging step"),
    )
    async with owner_db.unscoped() as conn:
        for environment, changed_at, reason in rows:
            await conn.execute(
                "INSERT INTO flag_audit (environment, feature_name, actor, from_enabled, "
                "from_percentage, to_enabled, to_percentage, reason, command, changed_at) "
                "VALUES ($1, 'ai_coaching', 'ops', true, 10, true, 25, $2, 'rollout set', $3)",
                environment,
                reason,
                changed_at,
            )
    at_25 = FlagState(enabled=True, rollout_percentage=25)
    assert await stage_started_at(owner_db, "production", "ai_coaching", at_25) == started
    trail = await audit_trail(owner_db, "production", "ai_coaching")
    assert [row["reason"] for row in trail] == ["production step"]


async def test_the_audit_reads_descend_the_index_whatever_the_history(
    owner_db: Database,
) -> None:
    # The keeper reads every feature's record every few seconds, and the table
    # only grows: each read must cost a few index pages, not the history (here
    # production's rows are old, and another environment's thousands came since).
    async with owner_db.unscoped() as conn:
        for environment, changes in (("production", 50), ("staging", 5000)):
            await conn.execute(
                "INSERT INTO flag_audit (environment, feature_name, actor, from_enabled, "
                "from_percentage, to_enabled, to_percentage, reason, command) "
                "SELECT $1, feature, 'ops', true, 10, true, (i % 2) * 15 + 10, 'step', "
                "'rollout set' FROM generate_series(1, $3::int) AS i, "
                "unnest($2::text[]) AS feature",
                environment,
                list(FEATURES),
                changes,
            )
        await conn.execute("ANALYZE flag_audit")
        reads = {
            RECORDED_STATES: ("production", list(FEATURES)),
            AUDIT_TRAIL: ("production", "ai_coaching", 1),
            STAGE_STARTED_AT: ("production", "ai_coaching", True, 25, RESTORE_COMMAND),
        }
        for query, args in reads.items():
            plan = await conn.fetchval(f"EXPLAIN (FORMAT JSON, ANALYZE, BUFFERS) {query}", *args)
            assert _index_names(plan) == {"idx_flag_audit_environment_feature"}, query
            top = plan[0]["Plan"]
            # 20,000 rows fill about 250 pages; four descents read a dozen.
            assert top["Shared Hit Blocks"] + top.get("Shared Read Blocks", 0) < 40, query
        recorded = await recorded_states(conn, "production")
    assert recorded == {f: FlagState(enabled=True, rollout_percentage=10) for f in FEATURES}


async def _reconcile(db: Database, redis: Redis) -> list[Restored]:
    restored = await restore_if_missing(db=db, redis=redis, environment="local", actor="keeper")
    return restored + await revert_if_stale(db=db, redis=redis, environment="local", actor="keeper")


async def test_a_stale_copy_that_lost_a_rollback_is_turned_off_again(
    settings_env: dict[str, str], redis_client: Redis, db: Database, owner_db: Database
) -> None:
    """A failover to a replica that missed the rollback's write brings the feature
    back on; the record says off, so the keeper writes off back, with its row."""
    assert await _cli("flags", "init", "--seed", SEED) == 0
    await roll_back(db=db, redis=redis_client, request=_request("property_vision"))
    await write_flag(redis_client, "property_vision", ON_10)  # the stale replica's copy
    rows = len(await _audit(owner_db))

    results = await _reconcile(db, redis_client)

    assert results == [Restored("property_vision", Outcome.REVERTED, OFF_10)]
    assert (await get_flags(redis_client))["property_vision"] == OFF_10
    audit = await _audit(owner_db)
    assert len(audit) == rows + 1
    last = audit[-1]
    assert (last["from_enabled"], last["to_enabled"], last["command"]) == (
        True,
        False,
        "flags restore",
    )
    assert "no recorded change wrote" in str(last["reason"])
    assert await _reconcile(db, redis_client) == []  # as recorded now: nothing to do


async def test_a_copy_behind_its_record_is_left_for_an_operator(
    settings_env: dict[str, str],
    redis_client: Redis,
    db: Database,
    owner_db: Database,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A stale copy that lost an advance is less exposed than the record: the
    keeper never raises a feature's exposure by itself, it reports it."""
    assert await _cli("flags", "init", "--seed", SEED) == 0
    await _set("property_vision", "50", "next step")
    await write_flag(redis_client, "property_vision", ON_10)
    rows = len(await _audit(owner_db))

    assert await _reconcile(db, redis_client) == [
        Restored("property_vision", Outcome.BEHIND, ON_10)
    ]
    assert (await get_flags(redis_client))["property_vision"] == ON_10
    assert len(await _audit(owner_db)) == rows
    # What the runbook (FeatureFlagBehindRecord) reads first.
    capsys.readouterr()
    assert await _cli("rollout", "status", "--environment", "local") == 0
    assert "differs from its record: on at 50%" in capsys.readouterr().out
    # The operator accepts the lower state: `rollout set` to what Redis holds
    # changes no flag but records it, and the flag is no longer behind.
    await _set("property_vision", "10", "keep 10% after the failover")
    assert (await get_flags(redis_client))["property_vision"] == ON_10
    assert await _reconcile(db, redis_client) == []


async def test_a_change_being_written_is_waited_for_not_reverted(
    settings_env: dict[str, str], redis_client: Redis, db: Database, owner_db: Database
) -> None:
    """A change writes Redis before its audit row commits, under the lock; the
    keeper sees Redis ahead of the record but waits for the lock, then finds
    them equal, and leaves the change alone."""
    assert await _cli("flags", "init", "--seed", SEED) == 0
    async with owner_db.unscoped() as conn:
        await lock_flag_changes(conn)
        await record_change(
            conn,
            environment="local",
            feature="property_vision",
            actor="ops",
            before=ON_10,
            after=FlagState(enabled=True, rollout_percentage=20),
            reason="step",
            command="rollout set",
        )
        await write_flag(
            redis_client, "property_vision", FlagState(enabled=True, rollout_percentage=20)
        )
        keeper = asyncio.create_task(_reconcile(db, redis_client))
        await asyncio.sleep(0.5)
        assert not keeper.done()  # waiting for the lock, not reverting the change
    assert await asyncio.wait_for(keeper, 30) == []
    assert (await get_flags(redis_client))["property_vision"] == FlagState(
        enabled=True, rollout_percentage=20
    )


async def test_an_invalid_record_gets_its_record_back_and_blocks_no_other_flag(
    settings_env: dict[str, str],
    redis_client: Redis,
    db: Database,
    owner_db: Database,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A hand edit left a key that is no flag record while another flag was lost:
    one check restores the lost one and writes the edited one's record back
    (before, the edit made every check fail and the lost flag stayed off)."""
    assert await _cli("flags", "init", "--seed", SEED) == 0
    await redis_client.set(flag_key("property_vision"), b'{"enabled": "maybe"}')
    await redis_client.delete(flag_key("ai_coaching"))
    rows = len(await _audit(owner_db))
    capsys.readouterr()
    assert await _cli("rollout", "status", "--environment", "local") == 0
    status = capsys.readouterr().out
    assert "property_vision        invalid record" in status
    assert "differs from its record: on at 10%" in status

    results = await _reconcile(db, redis_client)

    on_100 = FlagState(enabled=True, rollout_percentage=100)
    assert sorted(results, key=lambda r: r.feature) == [
        Restored("ai_coaching", Outcome.RESTORED, on_100),
        Restored("property_vision", Outcome.REVERTED, ON_10),
    ]
    flags = await get_flags(redis_client)
    assert (flags["property_vision"], flags["ai_coaching"]) == (ON_10, on_100)
    audit = await _audit(owner_db)
    assert len(audit) == rows + 2
    assert audit[-1]["from_enabled"] is None
    assert "no valid record" in str(audit[-1]["reason"])
    assert await _reconcile(db, redis_client) == []


async def test_an_invalid_record_without_any_record_is_left_alone(
    redis_client: Redis, db: Database, owner_db: Database
) -> None:
    # Nothing to restore it from, and nothing may invent a state: readers keep
    # ignoring it (and count it), the other flags are still looked after.
    await redis_client.set(flag_key("property_vision"), b"not json")
    assert await _reconcile(db, redis_client) == []
    assert await redis_client.get(flag_key("property_vision")) == b"not json"
    assert await _audit(owner_db) == []


async def test_a_rollback_while_a_flag_holds_junk_restores_its_record_and_rolls_back(
    settings_env: dict[str, str], redis_client: Redis, db: Database, owner_db: Database
) -> None:
    """No flag missing, one holding junk (a hand edit) that has a record: the
    handler's restore step raised KeyError, so the alert's webhook answered 500
    until the keeper happened to revert the junk."""
    assert await _cli("flags", "init", "--seed", SEED) == 0
    await redis_client.set(flag_key("property_vision"), b"not json")
    outcome = await roll_back(db=db, redis=redis_client, request=_request("ai_coaching"))
    assert outcome.changed_features == ["ai_coaching"]
    flags = await get_flags(redis_client)
    assert (flags["property_vision"], flags["ai_coaching"]) == (
        ON_10,
        FlagState(rollout_percentage=100),
    )


async def test_an_invalid_record_without_a_record_blocks_no_other_features_rollback(
    settings_env: dict[str, str],
    redis_client: Redis,
    db: Database,
    owner_db: Database,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A hand edit left junk in one feature's key, which no audit row can restore:
    an alert about another feature still turns that one off (every plan and
    write read all four flags and raised InvalidFlag for the junk one: the
    webhook answered 500 to every retry and nothing was rolled back), and so
    do the operator's ``rollout set``, ``rollback feature`` and ``rollout advance``.
    (With a record to restore it from, nothing missing: the handler's restore
    step raised KeyError.)"""
    await redis_client.set(flag_key("churn_prevention"), b"not json")
    assert await _cli("flags", "init", "--seed", SEED) == 0  # SET NX: the junk stays
    outcome = await roll_back(db=db, redis=redis_client, request=_request("property_vision"))
    assert outcome.changed_features == ["property_vision"]
    await _set("ai_coaching", "50", "week 3")
    code = await _cli(
        "rollback", "feature", "ai_coaching", "--environment", "local",
        "--reason", "by hand", "--yes",
    )  # fmt: skip
    assert code == 0, capsys.readouterr()
    capsys.readouterr()
    code = await _cli(
        "rollout", "advance", "--feature", "ai_coaching", "--environment", "local",
        "--prometheus-url", "http://127.0.0.1:9",
    )  # fmt: skip
    assert (code, "was rolled back" in capsys.readouterr().err) == (1, True)  # its own answer
    assert await redis_client.get(flag_key("churn_prevention")) == b"not json"
    stored = await read_flags(redis_client)
    assert stored.states["property_vision"] == OFF_10
    assert stored.states["ai_coaching"] == FlagState(enabled=False, rollout_percentage=50)


async def test_a_rollback_of_a_feature_whose_key_holds_junk_turns_it_off(
    settings_env: dict[str, str], redis_client: Redis, db: Database, owner_db: Database
) -> None:
    """The kill switch works on the broken key itself: with no record to restore
    it from, the rollback writes "off" over the junk as over a missing flag
    (it raised InvalidFlag: a 500 to every retry, nothing turned off)."""
    await redis_client.set(flag_key("churn_prevention"), b"not json")
    outcome = await roll_back(db=db, redis=redis_client, request=_request("churn_prevention"))
    assert outcome.changed_features == ["churn_prevention"]
    assert (await get_flags(redis_client))["churn_prevention"] == FlagState()
    [row] = await _audit(owner_db)
    assert (row["from_enabled"], row["to_enabled"]) == (None, False)


async def test_a_flag_changed_outside_the_lock_meanwhile_is_not_overwritten(
    settings_env: dict[str, str], redis_client: Redis, db: Database, owner_db: Database
) -> None:
    """Between the keeper's read and its write, a writer that does not take the
    lock (a hand edit, a failover) changes the flag: the write is refused and
    its audit row rolled back, rather than overwriting what it never saw."""
    assert await _cli("flags", "init", "--seed", SEED) == 0
    await roll_back(db=db, redis=redis_client, request=_request("property_vision"))
    await write_flag(redis_client, "property_vision", ON_10)  # a stale copy: to revert
    rows = len(await _audit(owner_db))
    edited = FlagState(enabled=False, rollout_percentage=0)
    async with owner_db.unscoped() as gate:
        # Holds the keeper at its audit insert, after it read the flags.
        await gate.execute("LOCK TABLE flag_audit IN SHARE ROW EXCLUSIVE MODE")
        keeper = asyncio.create_task(_reconcile(db, redis_client))
        await _waiting_on_locks(owner_db, 1)
        await write_flag(redis_client, "property_vision", edited)
    with pytest.raises(FlagWriteConflict):
        await asyncio.wait_for(keeper, 30)
    assert (await get_flags(redis_client))["property_vision"] == edited
    assert len(await _audit(owner_db)) == rows


async def test_a_restore_does_not_restart_the_stage_clock(
    settings_env: dict[str, str], redis_client: Redis, db: Database, owner_db: Database
) -> None:
    """Putting the record back (a flag lost with Redis, a stale copy) is no new
    stage: `rollout advance` still counts the days from the operator's step."""
    assert await _cli("flags", "init", "--seed", SEED) == 0
    await _set("ai_coaching", "25", "week 2")
    stepped = datetime.now(UTC) - timedelta(days=8)
    async with owner_db.unscoped() as conn:
        await conn.execute("UPDATE flag_audit SET changed_at = $1 WHERE reason = 'week 2'", stepped)
    at_25 = FlagState(enabled=True, rollout_percentage=25)
    await redis_client.flushdb()  # Redis lost every flag
    await _reconcile(db, redis_client)
    await write_flag(redis_client, "ai_coaching", FlagState(enabled=True, rollout_percentage=50))
    assert await _reconcile(db, redis_client) == [Restored("ai_coaching", Outcome.REVERTED, at_25)]
    assert (await get_flags(redis_client))["ai_coaching"] == at_25
    assert await stage_started_at(owner_db, "local", "ai_coaching", at_25) == stepped
