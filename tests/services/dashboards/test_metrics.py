"""The dashboards' Prometheus metrics: on a port of their own, never the app's.

The public Gateway routes every path of the dashboards' hostnames to the app's
port; Prometheus scrapes ``DASHBOARDS_METRICS_PORT``, which nothing routes.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from services.common.metrics import new_registry
from services.common.revocation import Revocations
from services.common.settings import SettingsError
from services.dashboards import process
from services.dashboards.config import DashboardSettings
from services.dashboards.metrics import register_dashboards_metrics, serve_metrics
from tests.revocations import eventually
from tests.services.dashboards.conftest import ServedDashboards, serve_dashboards

#: The revocation list is re-read this often in the served process.
REFRESH_SECONDS = 1


@pytest_asyncio.fixture
async def served(settings_env: dict[str, str], tmp_path: Path) -> AsyncIterator[ServedDashboards]:
    """``enterprisehub serve dashboards`` re-reading its revocations every second."""
    env = {**settings_env, "AUTH_REVOCATION_REFRESH_SECONDS": str(REFRESH_SECONDS)}
    async with serve_dashboards(env, tmp_path) as dashboards:
        yield dashboards


async def _samples(url: str) -> dict[str, float]:
    """``name{labels}`` -> value of one scrape (labels as Prometheus prints them)."""
    async with httpx.AsyncClient(timeout=5) as client:
        answer = await client.get(url)
    assert answer.status_code == 200, answer.text[:200]
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


async def test_the_metrics_port_shows_the_revocation_age_and_the_open_sessions(
    served: ServedDashboards,
) -> None:
    """No browser has opened a page: the process reads its revocations from the
    start all the same (before, a replica nobody visited never read them, and
    had no metrics to say so)."""
    from websockets.asyncio.client import connect

    await asyncio.sleep(3 * REFRESH_SECONDS)
    samples = await _samples(served.metrics_url)
    # Re-read every second: a list never read would be as old as the process.
    assert samples["auth_revocations_age_seconds"] < 2 * REFRESH_SECONDS, samples
    assert samples["dashboards_sessions_active"] == 0
    assert any(
        name.startswith("enterprisehub_build_info{") and 'service="dashboards"' in name
        for name in samples
    ), samples

    async def sessions(expected: float) -> bool:
        return (await _samples(served.metrics_url))["dashboards_sessions_active"] == expected

    ws_url = served.url.replace("http://", "ws://") + "/_stcore/stream"
    async with connect(ws_url, origin=served.url):
        # Open before any sign-in: a tab holds a session (and memory) either way.
        await eventually(lambda: sessions(1))
    await eventually(lambda: sessions(0))


@pytest.mark.parametrize("path", ["/metrics", "/_stcore/metrics"])
async def test_the_app_port_serves_no_metrics(served: ServedDashboards, path: str) -> None:
    """The public Gateway sends every path of the app's hosts to this port."""
    async with httpx.AsyncClient(base_url=served.url, timeout=10) as client:
        answer = await client.get(path)
    assert answer.status_code == 404, answer.text[:200]
    assert "auth_revocations_age_seconds" not in answer.text
    assert "session" not in answer.text


async def test_a_taken_metrics_port_stops_the_start_with_one_line(
    settings_env: dict[str, str], tmp_path: Path
) -> None:
    """Before uvicorn runs, naming the address, rather than a server without metrics."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(OSError, match=rf"cannot serve /metrics on 127\.0\.0\.1:{port}"):
            serve_metrics(new_registry(), host="127.0.0.1", port=port)


def test_the_apps_port_is_refused_as_the_metrics_port(settings_env: dict[str, str]) -> None:
    """The Gateway routes the app's port whole: metrics there would be public."""
    settings = DashboardSettings.from_env()
    port = settings.dashboards_metrics_port
    with pytest.raises(SettingsError, match=rf"DASHBOARDS_METRICS_PORT: {port} is the app's port"):
        process.start(settings, host="127.0.0.1", app_port=port)
    assert process.started(process.fingerprint(settings)) is None


def test_the_sessions_gauge_reads_its_source_at_each_scrape() -> None:
    registry = new_registry()
    open_now = [3]
    register_dashboards_metrics(registry, Revocations(), sessions=lambda: open_now[0])
    assert registry.get_sample_value("dashboards_sessions_active") == 3
    open_now[0] = 1
    assert registry.get_sample_value("dashboards_sessions_active") == 1
