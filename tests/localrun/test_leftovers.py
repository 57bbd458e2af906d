"""``make run`` recovers from an earlier run that was killed outright."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from alerts.routing import local_config
from localrun.leftovers import leftover_pids, stop_leftovers
from localrun.servers import start_alertmanager, start_postgres, start_prometheus, start_redis


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


@pytest.mark.integration
def test_prometheus_and_alertmanager_of_a_killed_run_are_stopped(state_dir: Path) -> None:
    # Neither dies with the run (they are not its children's process group).
    token = state_dir / "token"
    token.write_text("x" * 64)
    config = local_config(
        rollback_url="http://127.0.0.1:9/v1/alertmanager/webhook",
        token_file=token,
        slack_url_file=None,
    )
    alertmanager = start_alertmanager(state_dir, config)
    prometheus = start_prometheus(state_dir, alertmanager=alertmanager.address)
    other = start_prometheus(state_dir / "elsewhere")
    try:
        assert leftover_pids(state_dir) == {
            "prometheus": prometheus.process.pid,
            "alertmanager": alertmanager.process.pid,
        }
        assert sorted(stop_leftovers(state_dir)) == ["alertmanager", "prometheus"]
        assert prometheus.process.wait(timeout=10) is not None
        assert alertmanager.process.wait(timeout=10) is not None
        assert leftover_pids(state_dir) == {}
        assert other.process.poll() is None
    finally:
        other.stop()
        prometheus.stop()
        alertmanager.stop()


def test_an_empty_state_dir_has_no_leftovers(tmp_path: Path) -> None:
    assert stop_leftovers(tmp_path) == []
