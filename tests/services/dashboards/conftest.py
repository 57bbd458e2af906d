"""Fixtures for the dashboards: a running websocket-manager to read the feed from.

The realtime fixtures (a trained model, the service's environment, replicas
under uvicorn, an HTTP client) are the websocket-manager's own, reused here so
the hub is tested against the real ingest and feed.
"""

from __future__ import annotations

import pytest

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
