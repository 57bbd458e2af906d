"""Feature flag records: created disabled at 0%, never overwritten."""

from __future__ import annotations

import asyncio

import pytest

from services.cli import main
from services.common.flags import FEATURES, FlagState, InvalidFlag, get_flag, init_flags
from services.common.redis import Redis


async def test_init_creates_every_seed_feature_disabled(redis_client: Redis) -> None:
    await init_flags(redis_client)
    states = [await get_flag(redis_client, feature) for feature in FEATURES]
    assert states == [FlagState(enabled=False, rollout_percentage=0)] * 4


async def test_init_never_overwrites_an_existing_flag(redis_client: Redis) -> None:
    await redis_client.set("feature_flag:ai_coaching", b'{"enabled":true,"rollout_percentage":25}')
    await init_flags(redis_client)
    assert await get_flag(redis_client, "ai_coaching") == FlagState(
        enabled=True, rollout_percentage=25
    )


async def test_init_reports_what_it_created(redis_client: Redis) -> None:
    await init_flags(redis_client)
    assert set((await init_flags(redis_client)).values()) == {False}


async def test_missing_flag_reads_as_none(redis_client: Redis) -> None:
    assert await get_flag(redis_client, "property_vision") is None


async def test_unknown_feature_is_rejected(redis_client: Redis) -> None:
    with pytest.raises(InvalidFlag, match="realtime_intelligence"):
        await get_flag(redis_client, "teleportation")


async def test_out_of_range_rollout_is_reported(redis_client: Redis) -> None:
    await redis_client.set("feature_flag:ai_coaching", b'{"enabled":true,"rollout_percentage":150}')
    with pytest.raises(InvalidFlag):
        await get_flag(redis_client, "ai_coaching")


async def test_cli_flags_init_prints_each_feature(
    settings_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    # In a thread: the CLI runs its own event loop.
    assert await asyncio.to_thread(main, ["flags", "init"]) == 0
    assert "churn_prevention: created (disabled, 0%)" in capsys.readouterr().out
