"""Fixtures of the coaching tests: the Anthropic Messages API stand-in, the flag."""

import pytest
import pytest_asyncio

from services.common.flags import FlagState, write_flag
from services.common.redis import Redis
from tests.standins import _anthropic_server, anthropic_api  # noqa: F401


@pytest_asyncio.fixture
async def ai_coaching_on(redis_client: Redis) -> None:
    """ai_coaching on for every tenant (the session's FLUSHALL wipes flags per test)."""
    await write_flag(redis_client, "ai_coaching", FlagState(enabled=True, rollout_percentage=100))


@pytest.fixture(autouse=True)
def _ai_coaching_for_store_tests(request: pytest.FixtureRequest) -> None:
    # Autouse fixtures run first, so the flag is in Redis before any app starts;
    # tests that never touch the session's stores stay store-free.
    if "_clean_state" in request.fixturenames:
        request.getfixturevalue("ai_coaching_on")
