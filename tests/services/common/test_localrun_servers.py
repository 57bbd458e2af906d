"""localrun.servers: a missing binary names its package and `make setup`; the servers start."""

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


def test_prometheus_names_pages_that_exist(tmp_path: Path) -> None:
    # `make run`'s banner linked {url}/targets, which Debian's Prometheus (the
    # classic UI only, under /classic) answers with 404.
    import httpx

    prometheus = servers.start_prometheus(tmp_path, ["127.0.0.1:9"])
    try:
        ui = prometheus.ui_url()
        for page in ("targets", "rules", "alerts"):
            assert httpx.get(f"{ui}/{page}", timeout=5).status_code == 200, f"{ui}/{page}"
    finally:
        prometheus.stop()
