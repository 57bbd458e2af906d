"""Undos claimed and never finished: the gauge an alert reads (real Postgres and Redis).

A handler killed between its PATCH and recording the outcome is simulated as in
test_undo_deployments: the statement that records the outcome fails, so the
incident row keeps its claim and no outcome, exactly what a crash leaves.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.common.database import Database
from services.common.redis import Redis
from services.rollback import procedure
from services.rollback.main import create_app
from services.rollback.undo_claims import refresh_undo_claims
from tests.services.rollback.kubernetes_api import KubernetesApiStandIn
from tests.services.rollback.test_undo_deployments import BAD, GOOD, _all_on, _post
from tests.services.rollback.test_webhook import STARTS, _alert, _notification

GAUGE = "rollback_deployment_undo_oldest_claim_age_seconds"


async def _gauge(client: Any) -> float:
    text = (await client.get("/metrics")).text
    (family,) = [f for f in text_string_to_metric_families(text) if f.name == GAUGE]
    (sample,) = family.samples
    return float(sample.value)


async def _refreshed_gauge(app: Any, client: Any) -> float:
    await refresh_undo_claims(app.state.db, app.state.rollback_metrics)
    return await _gauge(client)


async def _kill_after_claim(
    app_client: Any, monkeypatch: pytest.MonkeyPatch, body: dict[str, Any]
) -> None:
    record_undo = procedure.RECORD_UNDO
    monkeypatch.setattr(
        procedure, "RECORD_UNDO", "SELECT $1::text, $2::jsonb FROM the_pod_was_killed_here"
    )
    with pytest.raises(asyncpg.UndefinedTableError):
        await _post(create_app(), app_client, body)
    monkeypatch.setattr(procedure, "RECORD_UNDO", record_undo)


async def _claimed_ago(owner_db: Database, feature: str, ago: timedelta) -> None:
    """Time passing: the claim of ``feature``'s incident was taken ``ago``."""
    async with owner_db.unscoped() as conn:
        await conn.execute(
            "UPDATE rollback_incidents SET deployments_claimed_at = now() - $2::interval "
            "WHERE feature_name = $1",
            feature,
            ago,
        )


async def test_a_claim_left_unfinished_shows_its_age(
    undoing: KubernetesApiStandIn,
    app_client: Any,
    redis_client: Redis,
    owner_db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    undoing.add_deployment("ml-services", [GOOD, BAD])
    await _all_on(redis_client)
    await _kill_after_claim(app_client, monkeypatch, _notification(_alert()))
    await _claimed_ago(owner_db, "property_vision", timedelta(hours=1))
    app = create_app()
    async with app_client(app) as client:
        age = await _refreshed_gauge(app, client)
    assert 3600 <= age < 3600 + 300


async def test_a_finished_undo_does_not_count(
    undoing: KubernetesApiStandIn,
    app_client: Any,
    redis_client: Redis,
    owner_db: Database,
) -> None:
    undoing.add_deployment("ml-services", [GOOD, BAD])
    await _all_on(redis_client)
    (answer,) = await _post(create_app(), app_client, _notification(_alert()))
    (undone,) = answer["handled"][0]["deployments_undone"]
    assert undone["rolled_back"] is True
    await _claimed_ago(owner_db, "property_vision", timedelta(hours=1))
    app = create_app()
    async with app_client(app) as client:
        assert await _refreshed_gauge(app, client) == 0


async def test_only_the_unfinished_claim_is_measured_beside_a_finished_one(
    undoing: KubernetesApiStandIn,
    app_client: Any,
    redis_client: Redis,
    owner_db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    undoing.add_deployment("ml-services", [GOOD, BAD])
    undoing.add_deployment("coaching-engine", [GOOD, BAD])
    await _all_on(redis_client)
    # Finished long ago (older claim), then one stuck for ten minutes.
    await _post(create_app(), app_client, _notification(_alert()))
    await _claimed_ago(owner_db, "property_vision", timedelta(days=1))
    coaching = _alert(
        feature="ai_coaching",
        fingerprint="0f1e2d3c4b5a6978",
        starts=STARTS + timedelta(hours=1),
    )
    await _kill_after_claim(app_client, monkeypatch, _notification(coaching))
    await _claimed_ago(owner_db, "ai_coaching", timedelta(minutes=10))
    app = create_app()
    async with app_client(app) as client:
        age = await _refreshed_gauge(app, client)
    assert 600 <= age < 600 + 300


async def test_the_running_handler_refreshes_the_gauge_by_itself(
    undoing: KubernetesApiStandIn,
    app_client: Any,
    redis_client: Redis,
    owner_db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    undoing.add_deployment("ml-services", [GOOD, BAD])
    await _all_on(redis_client)
    await _kill_after_claim(app_client, monkeypatch, _notification(_alert()))
    await _claimed_ago(owner_db, "property_vision", timedelta(hours=1))
    # No explicit refresh: the watcher started with the app reads Postgres at once.
    async with app_client(create_app()) as client:
        for _ in range(200):
            if await _gauge(client) > 0:
                break
            await asyncio.sleep(0.05)
        assert await _gauge(client) >= 3600
