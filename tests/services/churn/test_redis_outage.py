"""churn-orchestrator through a Redis outage: it keeps working, and its health says so.

Redis holds only the feature flags, whose in-process copy keeps the last known
state (issue 18); everything else is Postgres. A real redis-server of this
test's own is stopped mid-test (the session's Redis stays up for the others).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from localrun.servers import free_port, start_redis
from services.churn.config import ChurnSettings
from services.churn.main import create_app
from services.common.database import Database
from services.common.flags import FlagState, write_flag
from services.common.redis import close_redis, create_redis

AppClient = Callable[[FastAPI], AbstractAsyncContextManager[httpx.AsyncClient]]


def _churn_app(monkeypatch: pytest.MonkeyPatch, redis_url: str) -> FastAPI:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("CHURN_WORKER_ENABLED", "false")
    monkeypatch.setenv("CHURN_SCHEDULER_ENABLED", "false")
    return create_app(ChurnSettings.from_env(), registry=CollectorRegistry())


async def _health_until(
    client: httpx.AsyncClient, done: Callable[[dict[str, Any]], bool], limit: float = 15.0
) -> httpx.Response:
    deadline = time.monotonic() + limit
    while True:
        response = await client.get("/health/churn")
        if done(response.json()) or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.1)


async def test_a_redis_outage_degrades_but_keeps_the_service_working(
    churn_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    app_client: AppClient,
    make_token: Callable[..., str],
    owner_db: Database,
    tmp_path: Path,
) -> None:
    server = start_redis(tmp_path)
    try:
        flags = create_redis(server.url, max_connections=2)
        await write_flag(flags, "churn_prevention", FlagState(enabled=True, rollout_percentage=100))
        await close_redis(flags)
        auth = {"Authorization": f"Bearer {make_token('t-outage')}"}
        async with app_client(_churn_app(monkeypatch, server.url)) as client:
            before = await client.get("/health/churn")
            assert before.status_code == 200, before.text
            assert before.json()["status"] == "healthy"
            assert before.json()["feature_flags"] == {"synced": True, "stale": False}

            server.stop()
            during = await _health_until(client, lambda body: body["feature_flags"]["stale"])
            body = during.json()
            # Reported, degraded (flag changes cannot arrive), but still ready: 200.
            assert during.status_code == 200, during.text
            assert body["status"] == "degraded"
            assert body["dependencies"]["redis"]["status"] == "down"
            assert body["dependencies"]["postgres"]["status"] == "up"
            assert body["model_loaded"] is True
            assert (await client.get("/health/detailed")).status_code == 200

            # The work goes on: the tenant is still inside the rollout (last known
            # state), its leads and signals are stored and detection is queued.
            leads = await client.put(
                "/v1/churn/leads",
                json={"leads": [{"lead_id": "lead-1", "timezone": "UTC"}]},
                headers=auth,
            )
            assert leads.status_code == 200, leads.text
            signal = {
                "signal_id": str(uuid.uuid4()),
                "lead_id": "lead-1",
                "type": "message_received",
                "occurred_at": datetime.now(UTC).isoformat(),
            }
            stored = await client.post(
                "/v1/churn/signals", json={"signals": [signal]}, headers=auth
            )
            assert stored.status_code == 202, stored.text
            assert stored.json()["stored"] == 1
    finally:
        server.stop()
    async with owner_db.unscoped() as conn:
        signals = await conn.fetchval(
            "SELECT count(*) FROM churn_signals WHERE tenant_id = 't-outage'"
        )
        detections = await conn.fetchval(
            "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'churn.detect'"
        )
    assert (signals, detections) == (1, 1)


async def test_a_replica_that_never_read_the_flags_is_not_ready(
    churn_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, app_client: AppClient
) -> None:
    # Every tenant would be outside the rollout for it: it must not take traffic.
    unreachable = f"redis://127.0.0.1:{free_port()}/0"
    async with app_client(_churn_app(monkeypatch, unreachable)) as client:
        health = await client.get("/health/churn")
    assert health.status_code == 503, health.text
    assert health.json()["feature_flags"] == {"synced": False, "stale": True}
    assert health.json()["dependencies"]["postgres"]["status"] == "up"
