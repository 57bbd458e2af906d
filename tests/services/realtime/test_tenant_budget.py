"""Each tenant's ingest budget (REALTIME_TENANT_EVENT_RATE), counted across replicas."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr

from localrun.servers import RedisServer
from services.common.database import Database
from services.common.redis import close_redis, create_redis
from services.common.scoring import LeadFeatures
from services.common.settings import SettingsError
from services.realtime.budget import WINDOW_SECONDS, IngestBudget
from services.realtime.config import RealtimeSettings
from tests.services.realtime.conftest import Replica, event_body

pytestmark = pytest.mark.integration

#: 10 events/s over the 10 s window: one full batch (REALTIME_MAX_BATCH_EVENTS) per window.
RATE = 10
WINDOW_EVENTS = 100


def _budgeted(settings: RealtimeSettings, **update: Any) -> RealtimeSettings:
    return settings.model_copy(update={"realtime_tenant_event_rate": RATE, **update})


def _post(
    http: httpx.AsyncClient,
    replica: Replica,
    token: str,
    leads: list[LeadFeatures],
    count: int,
) -> Any:
    events = [event_body(leads[i % len(leads)], lead_id=f"lead-{i}") for i in range(count)]
    return http.post(
        f"{replica.http}/v1/leads/events/batch",
        content=orjson.dumps({"events": events}),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )


async def _stored(owner_db: Database, tenant_id: str) -> int:
    async with owner_db.unscoped() as conn:
        count: int = await conn.fetchval(
            "SELECT count(*) FROM realtime_intelligence_events WHERE tenant_id = $1", tenant_id
        )
        return count


def _rejected(replica: Replica, reason: str) -> float:
    value = replica.registry.get_sample_value("realtime_events_rejected_total", {"reason": reason})
    return value or 0.0


async def test_a_tenant_over_its_budget_gets_429_and_other_tenants_are_served(
    replicas: Callable[..., Awaitable[Replica]],
    realtime_settings: RealtimeSettings,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
    owner_db: Database,
) -> None:
    replica = await replicas(_budgeted(realtime_settings))
    flooding, neighbour = make_token("tenant-a"), make_token("tenant-b")

    assert (await _post(http, replica, flooding, sample_leads, WINDOW_EVENTS)).status_code == 202
    refused = await _post(http, replica, flooding, sample_leads, 1)
    served = await _post(http, replica, neighbour, sample_leads, 5)

    assert refused.status_code == 429, refused.text
    assert refused.json()["reason"] == "tenant_rate_limited"
    assert "REALTIME_TENANT_EVENT_RATE" in refused.json()["detail"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 10
    assert served.status_code == 202, served.text
    assert await _stored(owner_db, "tenant-a") == WINDOW_EVENTS
    assert await _stored(owner_db, "tenant-b") == 5
    assert _rejected(replica, "rate_limited") == 1


async def test_the_budget_is_one_across_replicas(
    replicas: Callable[..., Awaitable[Replica]],
    realtime_settings: RealtimeSettings,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
    owner_db: Database,
) -> None:
    settings = _budgeted(realtime_settings)
    first, second = await replicas(settings), await replicas(settings)
    token = make_token("tenant-a")

    taken = await _post(http, first, token, sample_leads, 60)
    refused = await _post(http, second, token, sample_leads, 60)

    assert taken.status_code == 202
    assert refused.status_code == 429, refused.text
    # A refused batch takes nothing: what is left of the window still passes.
    assert (await _post(http, second, token, sample_leads, 40)).status_code == 202
    assert await _stored(owner_db, "tenant-a") == WINDOW_EVENTS


async def test_a_refused_batch_is_told_to_wait_long_enough_for_all_its_events(
    replicas: Callable[..., Awaitable[Replica]],
    realtime_settings: RealtimeSettings,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
) -> None:
    replica = await replicas(_budgeted(realtime_settings))
    token = make_token("tenant-a")
    assert (await _post(http, replica, token, sample_leads, WINDOW_EVENTS)).status_code == 202
    # Once the full window is the previous one, one event frees up every
    # 1/RATE s: the first slot is a fraction of a second away, 60 are 6 s away.
    await asyncio.sleep(WINDOW_SECONDS + 0.5)
    refused = await _post(http, replica, token, sample_leads, 60)
    assert refused.status_code == 429, refused.text
    assert int(refused.headers["Retry-After"]) >= 60 // RATE


async def test_without_redis_the_budget_lets_events_through_to_postgres(
    replicas: Callable[..., Awaitable[Replica]],
    realtime_settings: RealtimeSettings,
    private_redis: RedisServer,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
    owner_db: Database,
) -> None:
    replica = await replicas(_budgeted(realtime_settings, redis_url=SecretStr(private_redis.url)))
    private_redis.stop()
    token = make_token("tenant-a")

    answers = [await _post(http, replica, token, sample_leads, WINDOW_EVENTS) for _ in range(2)]

    assert [a.status_code for a in answers] == [202, 202], answers[-1].text
    assert {ack["delivery"] for a in answers for ack in a.json()["events"]} == {"deferred"}
    assert await _stored(owner_db, "tenant-a") == 2 * WINDOW_EVENTS


def test_a_budget_smaller_than_a_batch_is_refused_at_start(
    realtime_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REALTIME_TENANT_EVENT_RATE", "5")
    with pytest.raises(SettingsError, match="REALTIME_MAX_BATCH_EVENTS"):
        RealtimeSettings.from_env()
    monkeypatch.setenv("REALTIME_TENANT_EVENT_RATE", "0")
    assert RealtimeSettings.from_env().realtime_tenant_event_rate == 0


async def test_a_hung_redis_is_asked_once_then_skipped_for_the_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A Redis that accepts and never answers: without the backoff every
    # request would wait the whole timeout before going on.
    accepted: list[asyncio.StreamWriter] = []

    async def never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        await reader.read()

    server = await asyncio.start_server(never_answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    redis = create_redis(f"redis://127.0.0.1:{port}/0", max_connections=4, socket_timeout=5)
    budget = IngestBudget(redis, events_per_second=RATE, timeout=0.2)
    try:
        with caplog.at_level(logging.WARNING, logger="services.realtime.budget"):
            answers = [await budget.take("tenant-a", 1) for _ in range(3)]
    finally:
        await close_redis(redis)
        for writer in accepted:
            writer.close()
            await writer.wait_closed()
        server.close()
        await server.wait_closed()
    assert answers == [None, None, None]
    assert [r.getMessage() for r in caplog.records] == ["ingest budget not checked: TimeoutError"]
