"""rollback-handler puts back the flags Redis lost, from Postgres (real both, its lifespan)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from services.common.database import Database
from services.common.flags import FEATURES, FlagState, get_flags, write_flags
from services.common.redis import Redis
from services.rollback.main import create_app
from services.rollout.operations import apply_changes, plan_changes

RECORDED = {
    "realtime_intelligence": FlagState(enabled=True, rollout_percentage=100),
    "property_vision": FlagState(enabled=False, rollout_percentage=25),  # rolled back
    "churn_prevention": FlagState(enabled=True, rollout_percentage=50),
    "ai_coaching": FlagState(enabled=False, rollout_percentage=0),
}


async def _record(redis: Redis, db: Database) -> None:
    """Set RECORDED as every change is: an operator's changes, then the rollback of vision."""
    for feature, state in RECORDED.items():
        await apply_changes(
            redis=redis,
            db=db,
            environment="local",
            changes=await plan_changes(redis, (feature,), lambda _, s=state: s),
            actor="ops",
            reason="step",
            command="rollout set",
        )


async def _until_restored(redis: Redis) -> dict[str, FlagState | None]:
    """The flags once none is missing (a generous deadline, not a timing check)."""
    async with asyncio.timeout(30):
        while True:
            flags = await get_flags(redis)
            if all(state is not None for state in flags.values()):
                return flags
            await asyncio.sleep(0.05)


async def test_the_handler_restores_every_lost_flag_to_its_last_recorded_state(
    rollback_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    app_client: Any,
    redis_client: Redis,
    db: Database,
    owner_db: Database,
) -> None:
    monkeypatch.setenv("ROLLBACK_FLAG_CHECK_SECONDS", "0.2")
    await _record(redis_client, db)
    assert await get_flags(redis_client) == RECORDED

    app = create_app()
    async with app_client(app) as client:
        await redis_client.flushdb()  # Redis restarted empty while the handler runs
        assert await _until_restored(redis_client) == RECORDED
        # The keeper counts a step's restores once the step's writes are done:
        # a scrape between the two sees the flags back and the counters at 0.
        async with asyncio.timeout(30):
            while True:
                metrics = (await client.get("/metrics")).text
                if "feature_flags_restored_total{" in metrics and not any(
                    f'feature_flags_restored_total{{feature="{feature}"}} 0.0' in metrics
                    for feature in FEATURES
                ):
                    break
                await asyncio.sleep(0.05)
    for feature in FEATURES:
        assert f'feature_flags_restored_total{{feature="{feature}"}} 1.0' in metrics
    async with owner_db.unscoped() as conn:
        actors = await conn.fetch(
            "SELECT feature_name, actor FROM flag_audit WHERE command = 'flags restore'"
        )
    assert sorted((r["feature_name"], r["actor"]) for r in actors) == sorted(
        (feature, "rollback-handler") for feature in FEATURES
    )


async def test_the_handler_turns_off_again_a_feature_a_stale_copy_brought_back(
    rollback_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    app_client: Any,
    redis_client: Redis,
    db: Database,
    owner_db: Database,
) -> None:
    """After a failover to a replica that missed the last writes: the rollback of
    property_vision is lost (on again: reverted) and churn's advance to 50% too
    (at 10%: left, reported behind its record)."""
    monkeypatch.setenv("ROLLBACK_FLAG_CHECK_SECONDS", "0.2")
    await _record(redis_client, db)

    app = create_app()
    async with app_client(app) as client:
        await write_flags(
            redis_client,
            {
                "property_vision": FlagState(enabled=True, rollout_percentage=25),
                "churn_prevention": FlagState(enabled=True, rollout_percentage=10),
            },
        )
        async with asyncio.timeout(30):
            while True:
                metrics = (await client.get("/metrics")).text
                if 'feature_flag_behind_record{feature="churn_prevention"} 1.0' in metrics:
                    break
                await asyncio.sleep(0.05)
        flags = await get_flags(redis_client)
    assert flags["property_vision"] == RECORDED["property_vision"]
    assert flags["churn_prevention"] == FlagState(enabled=True, rollout_percentage=10)
    assert 'feature_flags_reverted_total{feature="property_vision"} 1.0' in metrics
    assert 'feature_flags_reverted_total{feature="churn_prevention"} 0.0' in metrics
    assert 'feature_flag_behind_record{feature="property_vision"} 0.0' in metrics
