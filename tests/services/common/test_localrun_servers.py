"""localrun.servers: a missing binary names its package and `make setup`."""

from __future__ import annotations

from pathlib import Path

import pytest

from localrun import servers


def test_missing_redis_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(servers.MissingBinary, match=r"redis-server is missing.*make setup"):
        servers.start_redis(tmp_path)


def test_missing_postgres_names_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(servers, "PG_BIN", tmp_path / "nowhere")
    with pytest.raises(servers.MissingBinary, match=r"postgresql-15 is missing.*make setup"):
        servers.start_postgres(tmp_path)


def test_redis_server_starts_and_stops(tmp_path: Path) -> None:
    redis = servers.start_redis(tmp_path)
    try:
        assert servers._redis_ready(redis.port)
    finally:
        redis.stop()
    assert not servers._redis_ready(redis.port)


def test_prometheus_starts_ready_and_stops(tmp_path: Path) -> None:
    import httpx

    prometheus = servers.start_prometheus(tmp_path, ["127.0.0.1:9"])
    try:
        config = httpx.get(f"{prometheus.url}/api/v1/status/config", timeout=5).json()
    finally:
        prometheus.stop()
    assert "127.0.0.1:9" in config["data"]["yaml"]
