"""Who may call which churn route: scopes per route, checked before the body, per tenant.

The CRM integration (``crm:ingest``) posts leads, signals and outcomes;
operators (``operator``) list interventions and dead letters and retry one.
The dead letters and interventions here are real: a pass over leads the
LeadConnector stand-in always refuses, with no retries, in a served app.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from localrun.standins.leadconnector import Faults, StandinServer
from services.churn.config import ChurnSettings
from services.churn.main import create_app
from services.churn.queue import QUEUE, SingleDelivery, defer_delivery_jobs
from services.common.database import Database
from services.common.flags import FlagState, write_flag
from services.common.redis import Redis
from services.common.scopes import CRM_INGEST, FEED_READ, LEADS_SCORE, OPERATOR, SCOPES
from services.impact.aggregate import aggregate_tenant_day
from services.impact.assumptions import ASSUMPTIONS
from tests.flags import tenants_around
from tests.services.churn.conftest import STANDIN_KEY, drain, seed_leads

AppClient = Callable[[FastAPI], AbstractAsyncContextManager[httpx.AsyncClient]]

POISONED = "lead-0"


@dataclass(frozen=True)
class Route:
    """One churn route, the scope it needs, and a request a caller with that scope may send."""

    method: str
    path: str
    scope: str
    body: dict[str, Any] | None = None


def _routes(intervention_id: str, outbox_id: str) -> list[Route]:
    signal = {
        "signal_id": str(uuid.uuid4()),
        "lead_id": "lead-1",
        "type": "message_sent",
        "occurred_at": "2026-01-01T00:00:00+00:00",
    }
    return [
        Route("PUT", "/v1/churn/leads", CRM_INGEST, {"leads": [{"lead_id": "lead-9"}]}),
        Route("POST", "/v1/churn/signals", CRM_INGEST, {"signals": [signal]}),
        Route(
            "POST",
            f"/v1/churn/interventions/{intervention_id}/outcome",
            CRM_INGEST,
            {"outcome": "responded"},
        ),
        Route("GET", "/v1/churn/interventions", OPERATOR),
        Route("GET", "/v1/churn/dead-letters", OPERATOR),
        Route("POST", f"/v1/churn/dead-letters/{outbox_id}/retry", OPERATOR),
    ]


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _send(
    client: httpx.AsyncClient, route: Route, token: str, **kwargs: Any
) -> httpx.Response:
    if "content" not in kwargs and route.body is not None:
        kwargs["json"] = route.body
    return await client.request(route.method, route.path, headers=_bearer(token), **kwargs)


@dataclass
class Tenant:
    """A tenant's dead-lettered sends and their interventions, as stored."""

    tenant_id: str
    outbox_ids: list[str]
    intervention_ids: list[str]


async def _dead_letters(owner: Database, tenant_id: str) -> Tenant:
    async with owner.unscoped() as conn:
        rows = await conn.fetch(
            "SELECT outbox_id::text, intervention_id::text FROM churn_outbox "
            "WHERE tenant_id = $1 AND status = 'dead_letter' ORDER BY outbox_id",
            tenant_id,
        )
    return Tenant(
        tenant_id,
        [row["outbox_id"] for row in rows],
        sorted({row["intervention_id"] for row in rows}),
    )


async def _intervention(owner: Database, tenant_id: str, lead_id: str) -> Any:
    """The lead's one intervention (the pass stages one per at-risk lead)."""
    async with owner.unscoped() as conn:
        rows = await conn.fetch(
            "SELECT intervention_id::text, status, outcome, created_at FROM churn_interventions "
            "WHERE tenant_id = $1 AND lead_id = $2",
            tenant_id,
            lead_id,
        )
    assert len(rows) == 1, rows
    return rows[0]


def _successes(registry: CollectorRegistry) -> float:
    """``churn_intervention_successes_total`` over every stage."""
    return sum(
        sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == "churn_intervention_successes_total"
    )


def _counted(registry: CollectorRegistry, *outcomes: str) -> float:
    """``churn_interventions_total`` summed over ``outcomes``, every stage and channel."""
    return sum(
        sample.value
        for metric in registry.collect()
        for sample in metric.samples
        if sample.name == "churn_interventions_total" and sample.labels["outcome"] in outcomes
    )


@dataclass(frozen=True)
class SuccessCounts:
    """Tenant a's successes everywhere they are counted, after a pass and an aggregate."""

    health_rate: float
    health_delivered: int
    aggregate: int
    counter: float
    outcome_counter: float


async def _success_counts(
    app: FastAPI, client: httpx.AsyncClient, db: Database, owner: Database, day: Any
) -> SuccessCounts:
    await app.state.churn.run_pass()  # a pass refreshes /health/churn
    health = (await client.get("/health/churn")).json()
    await aggregate_tenant_day(db, "tenant-a", day, ASSUMPTIONS)
    async with owner.unscoped() as conn:
        success_count = await conn.fetchval(
            "SELECT success_count FROM phase3_business_metrics "
            "WHERE tenant_id = 'tenant-a' AND feature_name = 'churn_prevention' "
            "AND metric_date = $1",
            day,
        )
    registry: CollectorRegistry = app.state.registry
    return SuccessCounts(
        health["success_rate"],
        health["delivered_24h"],
        success_count,
        _successes(registry),
        _counted(registry, "responded", "re_engaged"),
    )


async def _stored(owner: Database) -> list[tuple[Any, ...]]:
    """Everything the routes may change, to show that a refused call changed nothing."""
    async with owner.unscoped() as conn:
        outbox = await conn.fetch(
            "SELECT tenant_id, outbox_id, status, attempts FROM churn_outbox ORDER BY outbox_id"
        )
        interventions = await conn.fetch(
            "SELECT tenant_id, intervention_id, status, outcome FROM churn_interventions "
            "ORDER BY intervention_id"
        )
        leads = await conn.fetch("SELECT tenant_id, lead_id, status FROM churn_leads ORDER BY 1, 2")
        signals = await conn.fetchval("SELECT count(*) FROM churn_signals")
    return [*map(tuple, outbox), *map(tuple, interventions), *map(tuple, leads), (signals,)]


@pytest.fixture
def poisoning_standin() -> Iterator[StandinServer]:
    """A LeadConnector stand-in that refuses every send to ``lead-0`` (500)."""
    with StandinServer(api_key=STANDIN_KEY, faults=Faults(poisoned_contacts=[POISONED])) as server:
        yield server


@pytest.fixture
def churn_app(
    served_app: Callable[[StandinServer], FastAPI], poisoning_standin: StandinServer
) -> FastAPI:
    """The served app, its worker and scheduler off (tests drive them), sending to the stand-in."""
    return served_app(poisoning_standin)


@pytest_asyncio.fixture
async def running(
    churn_app: FastAPI, app_client: AppClient, db: Database
) -> AsyncIterator[httpx.AsyncClient]:
    """The app serving, after a pass left tenants a and b each with lead-0's sends dead."""
    async with app_client(churn_app) as client:
        for tenant in ("tenant-a", "tenant-b"):
            await seed_leads(db, tenant, 2)
        runtime = churn_app.state.churn
        await runtime.run_pass()
        await drain(runtime)
        yield client


async def test_each_route_refuses_a_token_without_its_scope_and_serves_one_with_it(
    running: httpx.AsyncClient, make_token: Callable[..., str], owner_db: Database
) -> None:
    mine = await _dead_letters(owner_db, "tenant-a")
    assert mine.outbox_ids, "the pass should have dead-lettered lead-0's sends"
    routes = _routes(mine.intervention_ids[0], mine.outbox_ids[0])
    before = await _stored(owner_db)
    for route in routes:
        others = tuple(scope for scope in SCOPES if scope != route.scope)
        token = make_token("tenant-a", scopes=others)
        response = await _send(running, route, token)
        assert response.status_code == 403, (route, response.text)
        assert response.json()["reason"] == "insufficient_scope", route
        assert route.scope in response.json()["detail"]
        assert f'scope="{route.scope}"' in response.headers["www-authenticate"]
        # Refused before the body is read: garbage is not a 422.
        if route.method != "GET":
            garbage = await _send(running, route, token, content=b"{not json")
            assert (garbage.status_code, garbage.json()["reason"]) == (403, "insufficient_scope")
            anonymous = await running.request(route.method, route.path, content=b"{not json")
            assert anonymous.status_code == 401, route
    assert await _stored(owner_db) == before, "a refused call changed something"

    for route in routes:
        response = await _send(running, route, make_token("tenant-a", scopes=(route.scope,)))
        assert response.status_code in (200, 202), (route, response.text)
    async with owner_db.unscoped() as conn:
        retried = await conn.fetchrow(
            "SELECT status, attempts FROM churn_outbox WHERE outbox_id = $1::uuid",
            mine.outbox_ids[0],
        )
        outcome = await conn.fetchval(
            "SELECT outcome FROM churn_interventions WHERE intervention_id = $1::uuid",
            mine.intervention_ids[0],
        )
    assert (retried["status"], retried["attempts"]) == ("pending", 0)
    assert outcome == "responded"


async def test_an_operator_token_may_not_post_outcomes_nor_a_crm_token_manage_dead_letters(
    running: httpx.AsyncClient, make_token: Callable[..., str], owner_db: Database
) -> None:
    mine = await _dead_letters(owner_db, "tenant-a")
    before = await _stored(owner_db)
    operator = make_token("tenant-a", scopes=(OPERATOR,))
    crm = make_token("tenant-a", scopes=(CRM_INGEST, FEED_READ, LEADS_SCORE))
    outcome = await running.post(
        f"/v1/churn/interventions/{mine.intervention_ids[0]}/outcome",
        json={"outcome": "churned"},
        headers=_bearer(operator),
    )
    retry = await running.post(
        f"/v1/churn/dead-letters/{mine.outbox_ids[0]}/retry", headers=_bearer(crm)
    )
    for response in (outcome, retry):
        assert (response.status_code, response.json()["reason"]) == (403, "insufficient_scope")
    assert await _stored(owner_db) == before


async def test_a_retry_while_a_job_still_waits_for_the_row_is_queued_on_that_job(
    running: httpx.AsyncClient, make_token: Callable[..., str], owner_db: Database
) -> None:
    """A look-again job (queued when a send outlived its job) can still wait for a
    row that has since been dead-lettered: the retry's own job hit the row's
    queueing lock and the operator got a 500."""
    outbox_id = (await _dead_letters(owner_db, "tenant-a")).outbox_ids[0]
    later = datetime.now(UTC) + timedelta(hours=1)
    async with owner_db.unscoped() as conn:
        await defer_delivery_jobs(
            conn,
            tenant_id="tenant-a",
            jobs=[SingleDelivery(outbox_id=uuid.UUID(outbox_id), priority=0, not_before=later)],
        )
    retried = await running.post(
        f"/v1/churn/dead-letters/{outbox_id}/retry",
        headers=_bearer(make_token("tenant-a", scopes=(OPERATOR,))),
    )
    assert retried.status_code == 202, retried.text
    async with owner_db.unscoped() as conn:
        status = await conn.fetchval(
            "SELECT status FROM churn_outbox WHERE outbox_id = $1::uuid", outbox_id
        )
        jobs = await conn.fetchval(
            "SELECT count(*) FROM procrastinate_jobs WHERE queue_name = $1 "
            "AND queueing_lock = $2 AND status = 'todo'",
            QUEUE,
            outbox_id,
        )
    assert (status, jobs) == ("pending", 1)  # the waiting job sends it


async def test_a_tenant_never_sees_or_changes_another_tenants_dead_letters_or_interventions(
    running: httpx.AsyncClient, make_token: Callable[..., str], owner_db: Database
) -> None:
    a = await _dead_letters(owner_db, "tenant-a")
    b = await _dead_letters(owner_db, "tenant-b")
    assert a.outbox_ids
    assert b.outbox_ids
    b_operator = _bearer(make_token("tenant-b", scopes=(OPERATOR,)))
    b_crm = _bearer(make_token("tenant-b", scopes=(CRM_INGEST,)))

    listed = await running.get("/v1/churn/dead-letters", headers=b_operator)
    assert sorted(row["outbox_id"] for row in listed.json()) == b.outbox_ids
    interventions = await running.get("/v1/churn/interventions", headers=b_operator)
    assert interventions.status_code == 200
    async with owner_db.unscoped() as conn:
        b_interventions = await conn.fetch(
            "SELECT intervention_id::text FROM churn_interventions WHERE tenant_id = 'tenant-b'"
        )
    assert sorted(row["intervention_id"] for row in interventions.json()) == sorted(
        row["intervention_id"] for row in b_interventions
    )
    assert not set(a.intervention_ids) & {row["intervention_id"] for row in interventions.json()}

    before = await _stored(owner_db)
    retry = await running.post(
        f"/v1/churn/dead-letters/{a.outbox_ids[0]}/retry", headers=b_operator
    )
    assert (retry.status_code, retry.json()["reason"]) == (404, "unknown_dead_letter")
    for outcome in ("responded", "churned"):
        response = await running.post(
            f"/v1/churn/interventions/{a.intervention_ids[0]}/outcome",
            json={"outcome": outcome},
            headers=b_crm,
        )
        assert (response.status_code, response.json()["reason"]) == (404, "unknown_intervention")
    assert await _stored(owner_db) == before, "tenant b changed tenant a's rows"

    # Tenant a's own operator and CRM can.
    a_operator = _bearer(make_token("tenant-a", scopes=(OPERATOR,)))
    retried = await running.post(
        f"/v1/churn/dead-letters/{a.outbox_ids[0]}/retry", headers=a_operator
    )
    assert retried.status_code == 202
    churned = await running.post(
        f"/v1/churn/interventions/{a.intervention_ids[0]}/outcome",
        json={"outcome": "churned"},
        headers=_bearer(make_token("tenant-a", scopes=(CRM_INGEST,))),
    )
    assert churned.json()["outcome"] == "churned"
    async with owner_db.unscoped() as conn:
        rows = await conn.fetch(
            "SELECT tenant_id, status FROM churn_leads WHERE lead_id = $1", POISONED
        )
    statuses = {row["tenant_id"]: row["status"] for row in rows}
    assert statuses == {"tenant-a": "churned", "tenant-b": "active"}


async def test_the_scope_is_checked_before_the_rollout(
    churn_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    app_client: AppClient,
    make_token: Callable[..., str],
    redis_client: Redis,
) -> None:
    # A feed reader's token learns nothing about the churn rollout; the right
    # scope of a tenant outside it gets feature_disabled where the route acts
    # on leads (a dead letter's retry sends), and the others serve it.
    inside, outside = tenants_around("churn_prevention", 50)
    await write_flag(
        redis_client, "churn_prevention", FlagState(enabled=True, rollout_percentage=50)
    )
    monkeypatch.setenv("CHURN_WORKER_ENABLED", "false")
    monkeypatch.setenv("CHURN_SCHEDULER_ENABLED", "false")
    app = create_app(ChurnSettings.from_env(), registry=CollectorRegistry())
    async with app_client(app) as client:
        for route in _routes(str(uuid.uuid4()), str(uuid.uuid4())):
            for tenant in (inside, outside):
                reader = make_token(tenant, scopes=(FEED_READ,))
                response = await _send(client, route, reader)
                assert response.json()["reason"] == "insufficient_scope", (route, tenant)
            response = await _send(client, route, make_token(outside, scopes=(route.scope,)))
            if route.path.endswith("/retry"):
                assert response.json()["reason"] == "feature_disabled", route
            else:
                assert response.status_code != 403, (route, response.text)


async def test_a_repeated_outcome_is_stored_once_and_counted_once(
    churn_app: FastAPI,
    running: httpx.AsyncClient,
    make_token: Callable[..., str],
    owner_db: Database,
) -> None:
    # The CRM integration retries a report it got no answer to: the success
    # rate (responded|re_engaged over delivered) must not count it twice.
    delivered = await _intervention(owner_db, "tenant-a", "lead-1")
    assert delivered["status"] == "delivered"
    path = f"/v1/churn/interventions/{delivered['intervention_id']}/outcome"
    crm = _bearer(make_token("tenant-a", scopes=(CRM_INGEST,)))
    registry: CollectorRegistry = churn_app.state.registry

    def counted(outcome: str) -> float:
        return _counted(registry, outcome)

    answers = [await running.post(path, json={"outcome": "responded"}, headers=crm) for _ in "abc"]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert {a.json()["outcome"] for a in answers} == {"responded"}
    assert counted("responded") == 1
    assert _successes(registry) == 1
    async with owner_db.unscoped() as conn:
        first_at = await conn.fetchval(
            "SELECT outcome_at FROM churn_interventions WHERE intervention_id = $1::uuid",
            delivered["intervention_id"],
        )
    assert first_at is not None

    changed = await running.post(path, json={"outcome": "re_engaged"}, headers=crm)
    assert changed.json()["outcome"] == "re_engaged"
    assert (counted("responded"), counted("re_engaged")) == (1, 1)
    # Responded, then re-engaged: one intervention, one success on the dashboards.
    assert _successes(registry) == 1
    async with owner_db.unscoped() as conn:
        later_at = await conn.fetchval(
            "SELECT outcome_at FROM churn_interventions WHERE intervention_id = $1::uuid",
            delivered["intervention_id"],
        )
    assert later_at >= first_at


async def test_a_success_is_counted_once_even_when_the_lead_churns_and_answers_again(
    churn_app: FastAPI,
    running: httpx.AsyncClient,
    make_token: Callable[..., str],
    owner_db: Database,
    db: Database,
) -> None:
    # The CRM reports a reply, then the lead lost, then a reply again: one
    # intervention, one success, in the counter, /health/churn and the aggregate.
    delivered = await _intervention(owner_db, "tenant-a", "lead-1")
    path = f"/v1/churn/interventions/{delivered['intervention_id']}/outcome"
    crm = _bearer(make_token("tenant-a", scopes=(CRM_INGEST,)))
    day = delivered["created_at"].astimezone(UTC).date()

    for outcome in ("responded", "churned", "responded", "re_engaged"):
        answer = await running.post(path, json={"outcome": outcome}, headers=crm)
        assert (answer.status_code, answer.json()["outcome"]) == (200, outcome)
        # Tenants a and b have one delivered intervention each: a's succeeded.
        counts = await _success_counts(churn_app, running, db, owner_db, day)
        assert (counts.counter, counts.health_rate, counts.aggregate) == (1, 0.5, 1), outcome


async def test_only_an_outcome_of_a_delivered_intervention_counts_as_a_success(
    churn_app: FastAPI,
    running: httpx.AsyncClient,
    make_token: Callable[..., str],
    owner_db: Database,
    db: Database,
) -> None:
    # The stand-in poisons only lead-0: its intervention is dead-lettered, never
    # reached the lead; lead-1's was delivered. The CRM's outcome of the first is
    # stored (it is data) but is no success of ours, anywhere success is counted.
    undelivered = await _intervention(owner_db, "tenant-a", POISONED)
    delivered = await _intervention(owner_db, "tenant-a", "lead-1")
    assert (undelivered["status"], delivered["status"]) == ("dead_letter", "delivered")
    crm = _bearer(make_token("tenant-a", scopes=(CRM_INGEST,)))
    day = delivered["created_at"].astimezone(UTC).date()

    async def successes() -> tuple[float, float, int, float]:
        counts = await _success_counts(churn_app, running, db, owner_db, day)
        return counts.health_rate, counts.health_delivered, counts.aggregate, counts.outcome_counter

    # Tenants a and b each have one delivered intervention, no success yet.
    assert await successes() == (0.0, 2, 0, 0)

    for outcome in ("responded", "re_engaged"):
        stored = await running.post(
            f"/v1/churn/interventions/{undelivered['intervention_id']}/outcome",
            json={"outcome": outcome},
            headers=crm,
        )
        assert (stored.status_code, stored.json()["outcome"]) == (200, outcome)
    assert (await _intervention(owner_db, "tenant-a", POISONED))["outcome"] == "re_engaged"
    assert await successes() == (0.0, 2, 0, 0)

    answered = await running.post(
        f"/v1/churn/interventions/{delivered['intervention_id']}/outcome",
        json={"outcome": "responded"},
        headers=crm,
    )
    assert answered.status_code == 200
    assert await successes() == (0.5, 2, 1, 1)


async def test_a_reply_signal_counts_the_success_of_a_delivered_intervention_once(
    churn_app: FastAPI,
    running: httpx.AsyncClient,
    make_token: Callable[..., str],
    owner_db: Database,
) -> None:
    # Replies set ``responded`` on the lead's delivered interventions: the
    # counter the dashboards divide must see them as /health/churn does, once.
    registry: CollectorRegistry = churn_app.state.registry
    crm = _bearer(make_token("tenant-b", scopes=(CRM_INGEST,)))

    def reply(lead_id: str) -> dict[str, str]:
        return {
            "signal_id": str(uuid.uuid4()),
            "lead_id": lead_id,
            "type": "reply",
            "occurred_at": datetime.now(UTC).isoformat(),
        }

    batch = {"signals": [reply("lead-1"), reply(POISONED)]}
    for _ in "ab":  # the CRM retrying the batch: stored once, counted once
        accepted = await running.post("/v1/churn/signals", json=batch, headers=crm)
        assert accepted.status_code == 202, accepted.text
    later = await running.post(
        "/v1/churn/signals", json={"signals": [reply("lead-1")]}, headers=crm
    )
    assert later.status_code == 202
    delivered = await _intervention(owner_db, "tenant-b", "lead-1")
    undelivered = await _intervention(owner_db, "tenant-b", POISONED)
    assert (delivered["outcome"], undelivered["outcome"]) == ("responded", None)
    assert _counted(registry, "responded") == 1
    assert _successes(registry) == 1
    # The lead then books: re-engaged, still one success (the dashboards' rate).
    booked = {**reply("lead-1"), "type": "appointment_booked"}
    assert (
        await running.post("/v1/churn/signals", json={"signals": [booked]}, headers=crm)
    ).status_code == 202
    assert (await _intervention(owner_db, "tenant-b", "lead-1"))["outcome"] == "re_engaged"
    assert (_counted(registry, "re_engaged"), _successes(registry)) == (1, 1)
    await churn_app.state.churn.run_pass()
    health = (await running.get("/health/churn")).json()
    assert health["success_rate"] == 0.5
    # The seed's 65% intervention success, beside the rate.
    assert (health["success_rate_target"], health["success_rate_met"]) == (0.65, False)


async def test_a_bad_id_is_refused_after_the_token_and_its_scope_with_a_reason(
    running: httpx.AsyncClient, make_token: Callable[..., str]
) -> None:
    # Path parameters are validated after the route's guard: an anonymous or
    # out-of-scope caller learns nothing from the id's shape.
    for method, path, scope in (
        ("POST", "/v1/churn/interventions/{}/outcome", CRM_INGEST),
        ("POST", "/v1/churn/dead-letters/{}/retry", OPERATOR),
    ):
        for bad in ("not-a-uuid", "1" * 300, "%00"):
            url = path.format(bad)
            anonymous = await running.request(method, url, json={"outcome": "responded"})
            assert anonymous.status_code == 401, url
            reader = _bearer(make_token("tenant-a", scopes=(FEED_READ,)))
            other = await running.request(
                method, url, json={"outcome": "responded"}, headers=reader
            )
            assert (other.status_code, other.json()["reason"]) == (403, "insufficient_scope")
            allowed = _bearer(make_token("tenant-a", scopes=(scope,)))
            refused = await running.request(
                method, url, json={"outcome": "responded"}, headers=allowed
            )
            assert refused.status_code == 422, (url, refused.text)
            assert refused.json()["reason"] == "validation_error"
            assert bad not in refused.text
