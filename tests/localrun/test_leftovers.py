"""``make run`` recovers from an earlier run that was killed outright."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from localrun.leftovers import leftover_pids, stop_leftovers
from localrun.servers import start_postgres, start_redis


@pytest.fixture
def state_dir() -> Iterator[Path]:
    """A state directory the postgres user can traverse."""
    root = Path(tempfile.mkdtemp(prefix="localrun-leftovers-"))
    root.chmod(0o711)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.mark.integration
def test_daemons_of_a_killed_run_are_stopped_and_nothing_else(state_dir: Path) -> None:
    postgres = start_postgres(state_dir)
    redis = start_redis(state_dir)
    # A Redis of another state directory must survive.
    other_dir = state_dir / "elsewhere"
    other = start_redis(other_dir)
    try:
        assert set(leftover_pids(state_dir)) == {"redis"}
        assert sorted(stop_leftovers(state_dir)) == ["postgres", "redis"]
        assert not (postgres.data_dir / "postmaster.pid").exists()
        assert leftover_pids(state_dir) == {}
        assert set(leftover_pids(other_dir)) == {"redis"}
        assert stop_leftovers(state_dir) == []
    finally:
        other.stop()
        redis.stop()
        postgres.stop()


def test_an_empty_state_dir_has_no_leftovers(tmp_path: Path) -> None:
    assert stop_leftovers(tmp_path) == []
