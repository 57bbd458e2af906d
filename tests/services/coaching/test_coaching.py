"""coaching-engine end to end: the real ``anthropic`` client against the stand-in,
the session's Postgres, the app's real lifespan."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio
from fastapi import FastAPI

from localrun.servers import free_port
from localrun.standins.anthropic import AnthropicStandIn, Case
from services.coaching.config import CoachingSettings
from services.coaching.conversation import compute_metrics
from services.coaching.main import create_app
from services.coaching.prompt import system_blocks
from services.coaching.schemas import TranscriptMessage
from services.common.claude.ledger import totals
from services.common.database import Database
from services.common.flags import FlagState, write_flag
from services.common.metrics import new_registry
from services.common.redis import Redis
from services.common.scopes import (
    COACHING_ANALYZE,
    CRM_INGEST,
    DASHBOARDS_VIEW,
    FEED_READ,
    LEADS_SCORE,
    VISION_ANALYZE,
)
from tests.flags import tenants_around
from tests.services.openapi_fuzz import fuzz_operations
from tests.services.request_work import count_request_work

AppClient = Callable[[FastAPI], AbstractAsyncContextManager[httpx.AsyncClient]]
_ID = re.compile(r"^\[([^\]]+)\] (agent|lead) ", re.MULTILINE)
START = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


def coaching_answer(body: dict[str, Any], *, cite: str | None = None) -> str:
    """A valid coaching answer citing the first message ids of the request."""
    ids = _ID.findall(body["messages"][0]["content"])
    first = cite or ids[0][0]
    insight = {"title": "Fast reply", "detail": "You answered quickly.", "message_ids": [first]}
    return orjson.dumps(
        {
            "strengths": [insight],
            "improvement_areas": [{**insight, "title": "Ask about budget"}],
            "next_best_actions": [{**insight, "title": "Call back today"}],
            "summary": "Good start.",
        }
    ).decode()


def transcript(n: int = 4, *, words: int = 5, agent: str = "agent-7") -> dict[str, Any]:
    messages = []
    for index in range(n):
        speaker = "lead" if index % 2 == 0 else "agent"
        text = " ".join(["word"] * words)
        if speaker == "lead" and index == 2:
            text = "Honestly it looks too expensive for us."
        if speaker == "agent":
            text += " What budget do you have in mind?"
        messages.append(
            {
                "id": f"m{index + 1}",
                "speaker": speaker,
                "text": text,
                "timestamp": (START + timedelta(minutes=index * 2)).isoformat(),
            }
        )
    return {"agent_id": agent, "conversation_id": "conv-1", "messages": messages}


@pytest.fixture
def coaching_settings(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch, anthropic_api: AnthropicStandIn
) -> Callable[..., CoachingSettings]:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", anthropic_api.url)
    monkeypatch.setenv("CLAUDE_BACKOFF_BASE_SECONDS", "0.01")
    anthropic_api.responder = coaching_answer

    def make(**overrides: Any) -> CoachingSettings:
        return CoachingSettings.from_env(**overrides)

    return make


@pytest_asyncio.fixture
async def client(
    coaching_settings: Callable[..., CoachingSettings], app_client: AppClient
) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(create_app(coaching_settings(), registry=new_registry())) as http:
        yield http


async def _claims_left(db: Database) -> int:
    """Claims of tenant-a still held (none once every copy has its answer or gave up)."""
    async with db.tenant("tenant-a") as conn:
        count: int = await conn.fetchval("SELECT count(*) FROM coaching_claims")
    return count


def _auth(make_token: Callable[..., str], tenant: str = "tenant-a") -> dict[str, str]:
    return {"Authorization": f"Bearer {make_token(tenant)}"}


async def test_analysis_is_stored_with_metrics_and_cost(
    client: httpx.AsyncClient, anthropic_api: AnthropicStandIn, make_token: Callable[..., str]
) -> None:
    response = await client.post(
        "/v1/coaching/sessions", json=transcript(), headers=_auth(make_token)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["metrics"]["objections"][0]["kind"] == "price"
    assert body["metrics"]["objections"][0]["answered"] is True
    assert body["insights"]["strengths"][0]["message_ids"] == ["m1"]
    assert body["improvement_areas"] == ["Ask about budget"]
    assert body["cost_micro_usd"] > 0
    assert anthropic_api.billable == 1
    again = await client.post("/v1/coaching/sessions", json=transcript(), headers=_auth(make_token))
    assert again.json()["cached"] is True
    assert anthropic_api.billable == 1
    listed = await client.get("/v1/coaching/sessions?agent_id=agent-7", headers=_auth(make_token))
    assert [s["session_id"] for s in listed.json()["sessions"]] == [body["session_id"]]
    other = _auth(make_token, "tenant-b")
    assert (await client.get("/v1/coaching/sessions?agent_id=agent-7", headers=other)).json()[
        "sessions"
    ] == []
    missing = await client.get(f"/v1/coaching/sessions/{body['session_id']}", headers=other)
    assert missing.status_code == 404
    # The id in its one written form: braces, a urn prefix or no hyphens are refused
    # (UUID() read them, and the route answered for them).
    session_id, mine = body["session_id"], _auth(make_token)
    for other_form in (f"{{{session_id}}}", session_id.replace("-", ""), f"urn:uuid:{session_id}"):
        refused = await client.get(f"/v1/coaching/sessions/{other_form}", headers=mine)
        assert (refused.status_code, refused.json()["reason"]) == (422, "validation_error")
    found = await client.get(f"/v1/coaching/sessions/{session_id.upper()}", headers=mine)
    assert found.status_code == 200


async def test_a_session_is_stored_with_its_cost_and_a_repeat_is_one_read(
    client: httpx.AsyncClient,
    anthropic_api: AnthropicStandIn,
    make_token: Callable[..., str],
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    work = count_request_work(monkeypatch)
    first = await client.post("/v1/coaching/sessions", json=transcript(), headers=_auth(make_token))
    assert first.status_code == 200, first.text
    # The hit check that takes the claim (with a second look), then the session
    # with its ledger row (and the claim's release).
    assert work.transactions == ["CoachingEngine._find_or_claim", "CoachingEngine._store"]
    [cost] = await totals(db, "tenant-a")
    assert (cost["calls"], cost["cost_micro_usd"]) == (1, first.json()["cost_micro_usd"])
    work.clear()
    again = await client.post("/v1/coaching/sessions", json=transcript(), headers=_auth(make_token))
    assert again.json()["cached"] is True
    assert work.transactions == ["CoachingEngine._find_or_claim"]
    assert work.thread_calls == []
    assert anthropic_api.billable == 1


async def test_the_repeat_lookup_is_one_index_descent(db: Database) -> None:
    from services.coaching.analysis import FIND_SESSION, PROMPT_VERSION

    async with db.tenant("tenant-a") as conn:
        # Sessions of other transcripts, as a tenant accumulates them.
        await conn.execute(
            "INSERT INTO coaching_sessions (agent_id, conversation_id, analysis_data, "
            "coaching_insights, transcript_sha256, model, prompt_version) "
            "SELECT 'agent-1', 'conv-' || i, '{}', '{}', md5(i::text) || md5(i::text), "
            "'claude-sonnet-4-5', $1 FROM generate_series(1, 2000) AS i",
            PROMPT_VERSION,
        )
        await conn.execute("ANALYZE coaching_sessions")
        plan = await conn.fetchval(
            f"EXPLAIN (FORMAT JSON, ANALYZE, BUFFERS) {FIND_SESSION}",
            "f" * 64,
            "claude-sonnet-4-5",
            PROMPT_VERSION,
        )
    scan = plan[0]["Plan"]["Plans"][0]
    assert scan["Index Name"] == "idx_coaching_tenant_transcript"
    # A miss reads a handful of index pages, not the tenant's 2,000 sessions.
    assert scan["Shared Hit Blocks"] + scan.get("Shared Read Blocks", 0) < 10


async def test_second_analysis_reads_the_prompt_cache(
    client: httpx.AsyncClient, anthropic_api: AnthropicStandIn, make_token: Callable[..., str]
) -> None:
    first = await client.post(
        "/v1/coaching/sessions", json=transcript(4), headers=_auth(make_token)
    )
    second = await client.post(
        "/v1/coaching/sessions", json=transcript(6, agent="agent-8"), headers=_auth(make_token)
    )
    assert first.json()["cache_write_tokens"] > 1024
    assert first.json()["cache_read_tokens"] == 0
    assert second.json()["cache_read_tokens"] == first.json()["cache_write_tokens"]
    assert second.json()["cache_write_tokens"] == 0
    assert second.json()["cost_micro_usd"] < first.json()["cost_micro_usd"]
    # The breakpoint is on the system prompt; the transcript only comes after it.
    request = anthropic_api.requests[-1]
    assert request["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert request["system"] == system_blocks()
    assert "What budget do you have in mind?" in request["messages"][0]["content"]


async def test_citation_of_a_missing_message_is_repaired_once_then_502(
    client: httpx.AsyncClient, anthropic_api: AnthropicStandIn, make_token: Callable[..., str]
) -> None:
    bad = coaching_answer({"messages": [{"content": "[m99] lead x"}]})
    anthropic_api.script(Case.valid(bad))
    ok = await client.post("/v1/coaching/sessions", json=transcript(), headers=_auth(make_token))
    assert ok.status_code == 200
    assert anthropic_api.billable == 2
    assert "m99" in anthropic_api.requests[-1]["messages"][-1]["content"]
    anthropic_api.script(Case.valid(bad), Case.valid(bad))
    failed = await client.post(
        "/v1/coaching/sessions", json=transcript(6), headers=_auth(make_token)
    )
    assert failed.status_code == 502
    assert failed.json()["reason"] == "claude_schema"


async def _post_together(
    app_client: AppClient,
    settings: CoachingSettings,
    make_token: Callable[..., str],
    bodies: list[dict[str, Any]],
) -> list[httpx.Response]:
    """``bodies`` posted at once to one replica built from ``settings``."""
    async with app_client(create_app(settings, registry=new_registry())) as http:
        return await asyncio.gather(
            *[
                http.post("/v1/coaching/sessions", json=body, headers=_auth(make_token))
                for body in bodies
            ]
        )


async def test_an_answer_holding_a_nul_is_stored_once_not_refused_as_the_clients_input(
    client: httpx.AsyncClient, anthropic_api: AnthropicStandIn, make_token: Callable[..., str]
) -> None:
    # Postgres jsonb refuses \u0000: the billed answer was refused at the
    # insert as the caller's 422 unstorable_input, and each retry paid again.
    def with_nul(body: dict[str, Any]) -> str:
        answer = orjson.loads(coaching_answer(body))
        answer["summary"] = "Good\x00 start."
        return orjson.dumps(answer).decode()

    anthropic_api.responder = with_nul
    first = await client.post("/v1/coaching/sessions", json=transcript(), headers=_auth(make_token))
    again = await client.post("/v1/coaching/sessions", json=transcript(), headers=_auth(make_token))
    assert first.status_code == again.status_code == 200, first.text
    assert first.json()["insights"]["summary"] == "Good\ufffd start."
    assert again.json()["cached"] is True
    assert anthropic_api.billable == 1


async def test_beyond_max_concurrent_is_429_with_retry_after(
    coaching_settings: Callable[..., CoachingSettings],
    app_client: AppClient,
    anthropic_api: AnthropicStandIn,
    make_token: Callable[..., str],
) -> None:
    anthropic_api.latency = 0.5
    settings = coaching_settings(coaching_max_concurrent_analyses=2)
    bodies = [transcript(4, agent=f"agent-{i}") for i in range(3)]
    responses = await _post_together(app_client, settings, make_token, bodies)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 200, 429]
    busy = next(r for r in responses if r.status_code == 429)
    assert busy.headers["Retry-After"] == "2"
    assert busy.json()["reason"] == "too_many_analyses"


async def test_one_tenants_burst_leaves_a_slot_to_another_tenant(
    coaching_settings: Callable[..., CoachingSettings],
    app_client: AppClient,
    anthropic_api: AnthropicStandIn,
    make_token: Callable[..., str],
) -> None:
    # The replica's slots were shared first come, first served: one tenant's
    # burst of analyses took all of them and every other tenant got 429.
    anthropic_api.latency = 1.0
    settings = coaching_settings(
        coaching_max_concurrent_analyses=2, coaching_max_concurrent_analyses_per_tenant=1
    )
    app = create_app(settings, registry=new_registry())
    async with app_client(app) as http:

        def post(body: dict[str, Any], tenant: str) -> Any:
            headers = _auth(make_token, tenant)
            return http.post("/v1/coaching/sessions", json=body, headers=headers)

        burst = [
            asyncio.ensure_future(post(transcript(4, agent=f"agent-{i}"), "tenant-a"))
            for i in range(2)
        ]

        def settled() -> int:
            """Copies of the burst answered or holding a slot."""
            active: int = app.state.coaching.active
            return sum(task.done() for task in burst) + active

        async with asyncio.timeout(10):
            while settled() < len(burst):  # noqa: ASYNC110 - polls a plain predicate
                await asyncio.sleep(0.01)
        other = await post(transcript(4, agent="agent-7"), "tenant-b")
        answered = await asyncio.gather(*burst)
    assert other.status_code == 200, other.text
    assert sorted(r.status_code for r in answered) == [200, 429]
    busy = next(r for r in answered if r.status_code == 429)
    assert busy.json() == {
        "detail": "1 analyses of this tenant are running; retry shortly",
        "reason": "too_many_analyses",
    }
    assert busy.headers["Retry-After"] == "2"


async def test_copies_waiting_for_one_analysis_take_no_slot_from_other_transcripts(
    coaching_settings: Callable[..., CoachingSettings],
    app_client: AppClient,
    anthropic_api: AnthropicStandIn,
    make_token: Callable[..., str],
) -> None:
    # Copies of one transcript wait for its one call; each used to hold a slot
    # of COACHING_MAX_CONCURRENT_ANALYSES while it waited, so one client's
    # retries (free: one call is billed) answered every other transcript 429.
    anthropic_api.latency = 0.5
    settings = coaching_settings(coaching_max_concurrent_analyses=2)
    bodies = [transcript()] * 4 + [transcript(agent="agent-8")]
    responses = await _post_together(app_client, settings, make_token, bodies)
    assert [r.status_code for r in responses] == [200] * 5, [r.text for r in responses]
    assert anthropic_api.billable == 2


async def test_copies_of_one_request_arriving_together_make_one_call(
    coaching_settings: Callable[..., CoachingSettings],
    app_client: AppClient,
    anthropic_api: AnthropicStandIn,
    make_token: Callable[..., str],
    db: Database,
) -> None:
    # A CRM retrying after its own timeout, on two replicas: each copy used to
    # miss the repeat lookup, call Claude and store a session of its own.
    anthropic_api.latency = 0.5
    settings = coaching_settings()
    async with (
        app_client(create_app(settings, registry=new_registry())) as one,
        app_client(create_app(settings, registry=new_registry())) as two,
    ):
        responses = await asyncio.gather(
            *[
                replica.post("/v1/coaching/sessions", json=transcript(), headers=_auth(make_token))
                for replica in (one, two, one, two)
            ]
        )
    assert [r.status_code for r in responses] == [200] * 4, [r.text for r in responses]
    assert len({r.json()["session_id"] for r in responses}) == 1
    assert sorted(r.json()["cached"] for r in responses) == [False, True, True, True]
    assert anthropic_api.billable == 1
    [cost] = await totals(db, "tenant-a")
    assert cost["calls"] == 1
    async with db.tenant("tenant-a") as conn:
        assert await conn.fetchval("SELECT count(*) FROM coaching_sessions") == 1
    assert await _claims_left(db) == 0


async def test_a_failed_analysis_gives_its_claim_back_for_the_next_copy(
    client: httpx.AsyncClient,
    anthropic_api: AnthropicStandIn,
    make_token: Callable[..., str],
    db: Database,
) -> None:
    anthropic_api.script(Case.refusal(), Case.refusal())
    failed = await client.post(
        "/v1/coaching/sessions", json=transcript(), headers=_auth(make_token)
    )
    assert failed.status_code == 502, failed.text
    assert await _claims_left(db) == 0
    retried = await client.post(
        "/v1/coaching/sessions", json=transcript(), headers=_auth(make_token)
    )
    assert retried.status_code == 200, retried.text
    assert retried.json()["cached"] is False


async def test_an_answer_stored_after_the_timeout_keeps_its_claim_until_it_is_in(
    coaching_settings: Callable[..., CoachingSettings],
    app_client: AppClient,
    anthropic_api: AnthropicStandIn,
    make_token: Callable[..., str],
    db: Database,
    owner_db: Database,
) -> None:
    # COACHING_SESSION_TIMEOUT fires while the billed answer is being stored
    # (here: held behind a lock). The claim used to be given back at once, so
    # a copy arriving before the store committed won it and paid a second call.
    anthropic_api.latency = 0.2
    settings = coaching_settings(coaching_session_timeout=1.0)
    async with app_client(create_app(settings, registry=new_registry())) as http:
        async with owner_db.tenant("tenant-a") as lock:
            await lock.execute("LOCK TABLE coaching_sessions IN SHARE MODE")
            first = await http.post(
                "/v1/coaching/sessions", json=transcript(), headers=_auth(make_token)
            )
            assert first.status_code == 504, first.text
            copy = asyncio.create_task(
                http.post("/v1/coaching/sessions", json=transcript(), headers=_auth(make_token))
            )
            await asyncio.sleep(0.4)  # time for a second call, had the claim been free
        retried = await copy
    assert retried.status_code == 200, retried.text
    assert retried.json()["cached"] is True
    assert anthropic_api.billable == 1
    async with db.tenant("tenant-a") as conn:
        assert await conn.fetchval("SELECT count(*) FROM coaching_sessions") == 1
    assert await _claims_left(db) == 0


async def test_a_waiting_copy_that_times_out_while_taking_the_claim_gives_it_back(
    coaching_settings: Callable[..., CoachingSettings],
    app_client: AppClient,
    anthropic_api: AnthropicStandIn,
    make_token: Callable[..., str],
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Another copy holds the claim; this one polls. When the holder gives it
    # up, this copy's poll takes it, and COACHING_SESSION_TIMEOUT fires before
    # the poll returns (here: held after its commit). The claim used to stay
    # with nobody to run it, and every copy waited 330 s for it to go stale.
    from services.coaching.analysis import PROMPT_VERSION, CoachingEngine, transcript_sha256
    from services.coaching.schemas import CoachingSessionCreate

    settings = coaching_settings(coaching_session_timeout=0.5)
    body = transcript()
    key = (transcript_sha256(CoachingSessionCreate(**body)), settings.claude_model, PROMPT_VERSION)
    async with db.tenant("tenant-a") as conn:
        await conn.execute(
            "INSERT INTO coaching_claims (transcript_sha256, model, prompt_version) "
            "VALUES ($1, $2, $3)",
            *key,
        )
    original = CoachingEngine._find_or_claim
    calls = 0

    async def holder_leaves_then_commit_is_slow(self: Any, *args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            return await original(self, *args)
        async with db.tenant("tenant-a") as conn:
            await conn.execute("DELETE FROM coaching_claims")
        result = await original(self, *args)
        await asyncio.sleep(1.0)
        return result

    monkeypatch.setattr(CoachingEngine, "_find_or_claim", holder_leaves_then_commit_is_slow)
    async with app_client(create_app(settings, registry=new_registry())) as http:
        response = await http.post("/v1/coaching/sessions", json=body, headers=_auth(make_token))
    assert response.status_code == 504, response.text
    assert calls == 2
    assert await _claims_left(db) == 0
    assert anthropic_api.billable == 0


async def test_busy_gives_back_the_claim_it_took(
    coaching_settings: Callable[..., CoachingSettings],
    app_client: AppClient,
    anthropic_api: AnthropicStandIn,
    make_token: Callable[..., str],
) -> None:
    anthropic_api.latency = 0.5
    settings = coaching_settings(coaching_max_concurrent_analyses=1, coaching_session_timeout=3)
    async with app_client(create_app(settings, registry=new_registry())) as http:
        running = asyncio.create_task(
            http.post("/v1/coaching/sessions", json=transcript(), headers=_auth(make_token))
        )
        await asyncio.sleep(0.2)
        other = transcript(agent="agent-8")
        busy = await http.post("/v1/coaching/sessions", json=other, headers=_auth(make_token))
        assert busy.status_code == 429
        assert (await running).status_code == 200
        # The refused transcript's claim was given back: its retry analyses at once.
        retried = await http.post("/v1/coaching/sessions", json=other, headers=_auth(make_token))
    assert retried.status_code == 200, retried.text
    assert retried.json()["cached"] is False


async def test_session_timeout_is_504(
    coaching_settings: Callable[..., CoachingSettings],
    app_client: AppClient,
    anthropic_api: AnthropicStandIn,
    make_token: Callable[..., str],
    db: Database,
) -> None:
    anthropic_api.latency = 1.0
    settings = coaching_settings(coaching_session_timeout=0.3)
    async with app_client(create_app(settings, registry=new_registry())) as http:
        response = await http.post(
            "/v1/coaching/sessions", json=transcript(), headers=_auth(make_token)
        )
        assert response.status_code == 504
        assert response.json()["reason"] == "coaching_timeout"
        health = (await http.get("/health/coaching")).json()
        assert health["active_sessions"] == 0
    # The call was in flight when the session gave up: it may have been billed,
    # so it is in the ledger at its upper bound, marked as such.
    [cost] = await totals(db, "tenant-a")
    assert (cost["calls"], cost["unanswered_calls"]) == (1, 1)
    assert cost["estimated_cost_micro_usd"] == cost["cost_micro_usd"] > 0
    assert cost["output_tokens"] == 0


async def test_transcript_over_budget_is_422_before_any_billable_call(
    coaching_settings: Callable[..., CoachingSettings],
    app_client: AppClient,
    anthropic_api: AnthropicStandIn,
    make_token: Callable[..., str],
) -> None:
    settings = coaching_settings(coaching_max_input_tokens=1000)
    async with app_client(create_app(settings, registry=new_registry())) as http:
        response = await http.post(
            "/v1/coaching/sessions", json=transcript(40, words=60), headers=_auth(make_token)
        )
    assert response.status_code == 422
    assert response.json()["reason"] == "transcript_too_long"
    assert anthropic_api.count_token_calls == 1
    assert anthropic_api.billable == 0


@pytest.mark.parametrize(
    "mutate",
    [
        lambda t: t["messages"].append(dict(t["messages"][0])),  # duplicate id
        lambda t: t["messages"][0].update(text="a\x00b"),
        lambda t: t["messages"][0].update(id="m1\n"),
        lambda t: t["messages"][0].update(timestamp="2026-12-03T10:00:00"),
        lambda t: t.update(agent_id="../x"),
        lambda t: t.update(messages=[]),
    ],
)
async def test_bad_transcripts_are_422(
    client: httpx.AsyncClient,
    anthropic_api: AnthropicStandIn,
    make_token: Callable[..., str],
    mutate: Callable[[dict[str, Any]], None],
) -> None:
    body = transcript()
    mutate(body)
    response = await client.post("/v1/coaching/sessions", json=body, headers=_auth(make_token))
    assert response.status_code == 422
    assert response.json()["reason"] == "validation_error"
    assert anthropic_api.requests == []


async def test_unauthenticated_is_401(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/coaching/sessions", json=transcript())
    assert response.status_code == 401


async def test_without_a_key_answers_503_and_health_says_so(
    coaching_settings: Callable[..., CoachingSettings],
    app_client: AppClient,
    make_token: Callable[..., str],
) -> None:
    settings = coaching_settings(anthropic_api_key="")
    async with app_client(create_app(settings, registry=new_registry())) as http:
        response = await http.post(
            "/v1/coaching/sessions", json=transcript(), headers=_auth(make_token)
        )
        assert response.status_code == 503
        assert response.json()["reason"] == "claude_not_configured"
        assert "ANTHROPIC_API_KEY" in response.json()["detail"]
        health = await http.get("/health/coaching")
        assert health.status_code == 200
        assert health.json()["status"] == "degraded"
        assert health.json()["claude"]["configured"] is False


async def test_tenant_outside_the_rollout_is_403_before_any_call(
    coaching_settings: Callable[..., CoachingSettings],
    app_client: AppClient,
    make_token: Callable[..., str],
    redis_client: Redis,
    anthropic_api: AnthropicStandIn,
) -> None:
    inside, outside = tenants_around("ai_coaching", 25)
    await write_flag(redis_client, "ai_coaching", FlagState(enabled=True, rollout_percentage=25))
    async with app_client(create_app(coaching_settings(), registry=new_registry())) as http:
        refused = await http.post(
            "/v1/coaching/sessions", json=transcript(), headers=_auth(make_token, outside)
        )
        listed = await http.get(
            "/v1/coaching/sessions?agent_id=agent-7", headers=_auth(make_token, outside)
        )
        allowed = await http.post(
            "/v1/coaching/sessions", json=transcript(), headers=_auth(make_token, inside)
        )
    assert refused.status_code == listed.status_code == 403
    assert refused.json()["reason"] == "feature_disabled"
    assert "ai_coaching" in refused.json()["detail"]
    assert allowed.status_code == 200, allowed.text
    assert anthropic_api.billable == 1


async def test_the_scope_and_the_rollout_are_checked_before_the_body_is_read(
    coaching_settings: Callable[..., CoachingSettings],
    app_client: AppClient,
    make_token: Callable[..., str],
    redis_client: Redis,
) -> None:
    # The body was a FastAPI body parameter, read and validated before any
    # dependency: a tenant outside the rollout, or a token without the scope,
    # got the 422 of a malformed body (its parse included) instead of the 403.
    inside, outside = tenants_around("ai_coaching", 25)
    await write_flag(redis_client, "ai_coaching", FlagState(enabled=True, rollout_percentage=25))
    feed_token = make_token(inside, scopes=(FEED_READ,))
    refusals = [
        (_auth(make_token, outside), "feature_disabled"),
        ({"Authorization": f"Bearer {feed_token}"}, "insufficient_scope"),
    ]
    async with app_client(create_app(coaching_settings(), registry=new_registry())) as http:
        for headers, reason in refusals:
            for body in (b"{not json", b'{"agent_id": 1}', b"[" * 100_000):
                response = await http.post(
                    "/v1/coaching/sessions",
                    content=body,
                    headers={**headers, "Content-Type": "application/json"},
                )
                assert (response.status_code, response.json()["reason"]) == (403, reason)


async def test_only_a_coaching_token_analyses_or_reads_and_the_scope_comes_first(
    coaching_settings: Callable[..., CoachingSettings],
    app_client: AppClient,
    make_token: Callable[..., str],
    redis_client: Redis,
    anthropic_api: AnthropicStandIn,
) -> None:
    # An agent's feed token must not read a colleague's coaching nor spend
    # Claude money; without the scope a token learns nothing about the rollout.
    inside, outside = tenants_around("ai_coaching", 25)
    await write_flag(redis_client, "ai_coaching", FlagState(enabled=True, rollout_percentage=25))

    def bearer(tenant: str, *scopes: str, subject: str = "agent-1") -> dict[str, str]:
        return {"Authorization": f"Bearer {make_token(tenant, subject=subject, scopes=scopes)}"}

    coach = bearer(inside, COACHING_ANALYZE, subject="call-recorder")
    agent = bearer(inside, FEED_READ, CRM_INGEST, LEADS_SCORE, VISION_ANALYZE, DASHBOARDS_VIEW)
    async with app_client(create_app(coaching_settings(), registry=new_registry())) as http:
        stored = await http.post("/v1/coaching/sessions", json=transcript(), headers=coach)
        assert stored.status_code == 200, stored.text
        session = f"/v1/coaching/sessions/{stored.json()['session_id']}"
        refused = [
            await http.post("/v1/coaching/sessions", json=transcript(), headers=agent),
            await http.get("/v1/coaching/sessions?agent_id=agent-7", headers=agent),
            await http.get(session, headers=agent),
            await http.get(
                "/v1/coaching/sessions?agent_id=agent-7", headers=bearer(outside, FEED_READ)
            ),
        ]
        listed = await http.get("/v1/coaching/sessions?agent_id=agent-7", headers=coach)
    assert [(r.status_code, r.json()["reason"]) for r in refused] == [
        (403, "insufficient_scope")
    ] * 4
    assert len(listed.json()["sessions"]) == 1
    assert anthropic_api.billable == 1


async def test_redis_outage_is_reported_but_not_required(
    coaching_settings: Callable[..., CoachingSettings], app_client: AppClient
) -> None:
    # Redis only holds the flags, whose cache keeps the last known state through
    # an outage: the pods must stay in the Service.
    settings = coaching_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    async with app_client(create_app(settings, registry=new_registry())) as http:
        health = await http.get("/health/coaching")
    assert health.status_code == 200, health.text
    assert health.json()["dependencies"]["redis"]["status"] == "down"
    assert health.json()["dependencies"]["postgres"]["status"] == "up"


def test_metrics_are_deterministic() -> None:
    messages = [
        TranscriptMessage(id="a", speaker="lead", text="Hi, we are not ready yet", timestamp=START),
        TranscriptMessage(
            id="b",
            speaker="agent",
            text="No problem! When would suit you? Spring?",
            timestamp=START + timedelta(seconds=90),
        ),
        TranscriptMessage(
            id="c",
            speaker="lead",
            text="We are already working with another agent.",
            timestamp=START + timedelta(seconds=200),
        ),
    ]
    metrics = compute_metrics(list(reversed(messages)))
    assert metrics == compute_metrics(messages)
    assert metrics["questions_asked"] == 2
    assert metrics["talk_listen_ratio"] == round(7 / 13, 3)
    assert metrics["response_delays_seconds"]["max"] == 90.0
    assert [(o["kind"], o["answered"], o["answered_by"]) for o in metrics["objections"]] == [
        ("timing", True, "b"),
        ("competition", False, None),
    ]
    assert metrics["objections_unanswered"] == 1


async def test_no_request_the_document_describes_gets_a_server_error(
    client: httpx.AsyncClient, make_token: Callable[..., str]
) -> None:
    """Valid and invalid requests generated from the coaching document: each
    answered below 500, every refusal in the ``{detail, reason}`` shape."""
    openapi = (await client.get("/openapi.json")).json()
    report = await fuzz_operations(client, openapi, token=make_token("tenant-a"))
    assert report.findings == []
    for operation in ("POST /v1/coaching/sessions", "GET /v1/coaching/sessions"):
        assert report.answered(operation, 2) > 0, report.statuses  # handlers reached
        assert report.answered(operation, 4) > 0, report.statuses
