"""Fixtures for ml-services: a real trained artifact, built once per session.

Training on 20,000 generated rows takes about a second, so every test uses a
real model and real artifact files rather than stand-ins.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_asyncio

from services.common.flags import FlagState, write_flag
from services.common.redis import Redis
from services.common.scoring import LeadFeatures, LeadScorer
from services.ml import datagen
from services.ml.training import train_to_file

TEST_ROWS = 20_000
TEST_SEED = 7


@pytest.fixture(scope="session")
def training_params() -> dict[str, int]:
    """The rows and seed the session's artifact was trained with."""
    return {"rows": TEST_ROWS, "seed": TEST_SEED}


@pytest.fixture(scope="session")
def artifact_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained model file (and its ``.json`` sidecar); treat as read-only."""
    path = tmp_path_factory.mktemp("model") / "lead_scoring.joblib"
    train_to_file(out=path, rows=TEST_ROWS, seed=TEST_SEED)
    return path


@pytest.fixture
def artifact_copy(artifact_path: Path, tmp_path: Path) -> Path:
    """A private copy of the artifact that a test may corrupt."""
    copy = tmp_path / "lead_scoring.joblib"
    copy.write_bytes(artifact_path.read_bytes())
    Path(str(copy) + ".json").write_bytes(Path(str(artifact_path) + ".json").read_bytes())
    return copy


@pytest.fixture(scope="session")
def leads() -> list[LeadFeatures]:
    """100 generated leads (a different seed from the training data)."""
    return datagen.generate_leads(100, seed=99)


@pytest.fixture
def scorer(artifact_path: Path) -> LeadScorer:
    """A scorer with a small cache, fresh per test."""
    return LeadScorer.load(str(artifact_path), cache_size=10, batch_size=8)


@pytest_asyncio.fixture
async def property_vision_on(redis_client: Redis) -> None:
    """property_vision on for every tenant (the session's FLUSHALL wipes flags per test)."""
    await write_flag(
        redis_client, "property_vision", FlagState(enabled=True, rollout_percentage=100)
    )


@pytest.fixture(autouse=True)
def _property_vision_for_store_tests(request: pytest.FixtureRequest) -> None:
    # Autouse fixtures run first, so the flag is in Redis before any app starts;
    # tests that never touch the session's stores (most of scoring) stay store-free.
    if "_clean_state" in request.fixturenames:
        request.getfixturevalue("property_vision_on")


# The Anthropic Messages API stand-in for the Claude client tests.
from tests.standins import _anthropic_server, anthropic_api  # noqa: E402, F401
