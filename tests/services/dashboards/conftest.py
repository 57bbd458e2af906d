"""Fixtures for the dashboards: a running websocket-manager to read the feed from,
and the app served as in production (`serve_dashboards`).

The realtime fixtures (a trained model, the service's environment, replicas
under uvicorn, an HTTP client) are the websocket-manager's own, reused here so
the hub is tested against the real ingest and feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import streamlit as st

from localrun.servers import LocalServers, free_port

# Fixtures are found by name: importing them into this conftest registers them.
from tests.services.realtime.conftest import (  # noqa: F401
    Replica,
    feed_rolled_out,
    http,
    lead_model,
    realtime_env,
    realtime_settings,
    replica,
    replicas,
    sample_leads,
)


@pytest.fixture(scope="session", autouse=True)
def _runners_released(local_servers: LocalServers) -> Iterator[None]:
    """At the session's end, stop the runners AppTest sessions built (the cached
    resources' release), while the Postgres their refreshers read still runs."""
    yield
    st.cache_resource.clear()


@pytest.fixture
def dashboards_env(
    realtime_env: dict[str, str],  # noqa: F811 - the fixture imported above
    replica: Replica,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    """The environment the dashboards run with, their feed pointing at ``replica``."""
    env = {**realtime_env, "DASHBOARDS_FEED_URL": replica.ws}
    monkeypatch.setenv("DASHBOARDS_FEED_URL", replica.ws)
    return env


REPO = Path(__file__).resolve().parents[3]
START_TIMEOUT = 60.0


@dataclass(frozen=True)
class ServedDashboards:
    """``enterprisehub serve dashboards`` running in its own process."""

    #: The app (what the public Gateway routes to).
    url: str
    #: Prometheus's ``/metrics`` of the process, on its own port.
    metrics_url: str
    log: Path


@contextlib.asynccontextmanager
async def serve_dashboards(
    env: Mapping[str, str], tmp_path: Path
) -> AsyncIterator[ServedDashboards]:
    """The app served as in production, in its own process, on free ports; stopped on exit."""
    port, metrics_port = free_port(), free_port()
    log_path = tmp_path / "dashboards.log"
    log = log_path.open("wb")
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "services.cli", "serve", "dashboards"),
        *("--host", "127.0.0.1", "--port", str(port)),
        cwd=REPO,
        env={
            **os.environ,
            **env,
            "HOME": str(tmp_path),
            "DASHBOARDS_METRICS_PORT": str(metrics_port),
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(url, process, log_path)
        yield ServedDashboards(url, f"http://127.0.0.1:{metrics_port}/metrics", log_path)
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 20)
        log.close()


async def wait_healthy(url: str, process: asyncio.subprocess.Process, log: Path) -> None:
    """Wait until Streamlit at ``url`` answers its health check; raise with the
    log if ``process`` exits first or START_TIMEOUT passes."""
    async with httpx.AsyncClient(timeout=2) as client:
        for _ in range(int(START_TIMEOUT / 0.2)):
            if process.returncode is not None:
                raise RuntimeError(await asyncio.to_thread(log.read_text))
            try:
                if (await client.get(f"{url}/_stcore/health")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not start: " + await asyncio.to_thread(log.read_text))
