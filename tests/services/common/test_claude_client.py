"""The shared Claude client: the real ``anthropic`` SDK against the local stand-in.

Each scripted case of the issue is played and the stand-in's counters show
how many requests were sent and how many were billable.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry
from pydantic import BaseModel, Field

from localrun.standins.anthropic import AnthropicStandIn, Case, _blocks, estimate_tokens
from services.common.claude import (
    ClaudeBadOutput,
    ClaudeClient,
    ClaudeMetrics,
    ClaudeSettings,
    ClaudeTimeout,
    ClaudeUnavailable,
)
from services.common.claude.client import build_anthropic
from services.common.claude.estimate import (
    API_OVERHEAD_TOKENS,
    IMAGE_TOKEN_BOUND,
    input_token_bound,
    upper_bound_usage,
)
from services.common.claude.ledger import Pricing, UnpricedModel, Usage, record, totals
from services.common.database import Database

TENANT = "tenant-a"
VALID = '{"score": 0.5, "label": "ok"}'


class Answer(BaseModel):
    score: float = Field(ge=0, le=1)
    label: str


def _settings(url: str, **overrides: Any) -> ClaudeSettings:
    values: dict[str, Any] = {
        "anthropic_api_key": "sk-test-key",
        "anthropic_base_url": url,
        "anthropic_timeout_seconds": 1.0,
        "claude_backoff_base_seconds": 0.01,
        "claude_backoff_max_seconds": 0.05,
        "claude_max_retry_wait_seconds": 2.0,
        **overrides,
    }
    return ClaudeSettings(**values)


@pytest_asyncio.fixture
async def make_client(
    db: Database,
) -> AsyncIterator[Callable[..., ClaudeClient]]:
    made: list[ClaudeClient] = []

    def make(url: str, **overrides: Any) -> ClaudeClient:
        settings = _settings(url, **overrides)
        api = build_anthropic(settings)
        assert api is not None
        client = ClaudeClient(
            api, settings=settings, metrics=ClaudeMetrics(CollectorRegistry()), db=db
        )
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


def _request() -> dict[str, Any]:
    return {"max_tokens": 256, "messages": [{"role": "user", "content": "rate this"}]}


async def _structured(client: ClaudeClient) -> Any:
    return await client.structured(
        tenant_id=TENANT, feature="property_vision", output_format=Answer, **_request()
    )


async def test_valid_answer_is_parsed_and_costed(
    anthropic_api: AnthropicStandIn, make_client: Callable[..., ClaudeClient], db: Database
) -> None:
    anthropic_api.script(Case.valid(VALID))
    result = await _structured(make_client(anthropic_api.url))
    assert result.output == Answer(score=0.5, label="ok")
    assert result.attempts == 1
    assert anthropic_api.billable == 1
    # claude-sonnet-4-5: $3/MTok input, $15/MTok output = micro-dollars per token.
    expected = result.usage.input_tokens * 3 + result.usage.output_tokens * 15
    assert result.cost_micro_usd == expected > 0
    [row] = await totals(db, TENANT)
    assert (row["feature"], row["calls"], row["cost_micro_usd"]) == ("property_vision", 1, expected)
    # The API answers the alias with the snapshot it resolved to; that is the
    # model the ledger records, at the alias's price.
    assert (result.model, row["model"]) == ("claude-sonnet-4-5-20250929",) * 2
    assert await totals(db, "tenant-b") == []


@pytest.mark.parametrize(
    ("model", "priced_as"),
    [
        ("claude-sonnet-4-5", "claude-sonnet-4-5"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-haiku-4-5@20251001", "claude-haiku-4-5"),
        ("claude-opus-4-5-20251101", "claude-opus-4-5"),
    ],
)
def test_a_dated_snapshot_costs_what_its_alias_costs(model: str, priced_as: str) -> None:
    pricing = Pricing(ClaudeSettings().claude_prices)
    usage = Usage(input_tokens=1000, output_tokens=100, cache_read_tokens=10)
    assert pricing.cost_micro_usd(model, usage) == pricing.cost_micro_usd(priced_as, usage)


@pytest.mark.parametrize("model", ["claude-sonnet-9-9-20300101", "claude-sonnet-4-5-2025", "x"])
def test_a_model_without_a_price_is_refused(model: str) -> None:
    with pytest.raises(UnpricedModel):
        Pricing(ClaudeSettings().claude_prices).cost_micro_usd(model, Usage(input_tokens=1))


async def test_deferred_ledger_is_left_to_the_caller_unless_the_call_fails(
    anthropic_api: AnthropicStandIn, make_client: Callable[..., ClaudeClient], db: Database
) -> None:
    client = make_client(anthropic_api.url)
    anthropic_api.script(Case.valid(VALID))
    result = await client.structured(
        tenant_id=TENANT,
        feature="property_vision",
        output_format=Answer,
        defer_ledger=True,
        **_request(),
    )
    [entry] = result.ledger
    assert entry.cost_micro_usd == result.cost_micro_usd > 0
    # Nothing booked yet: the caller stores the entry with its result.
    assert await totals(db, TENANT) == []
    await client.book(result.ledger)
    [row] = await totals(db, TENANT)
    assert (row["calls"], row["cost_micro_usd"]) == (1, result.cost_micro_usd)
    # Without a result to store them with, the billed calls are booked by the client.
    anthropic_api.script(Case.refusal(), Case.refusal())
    with pytest.raises(ClaudeBadOutput):
        await client.structured(
            tenant_id=TENANT,
            feature="property_vision",
            output_format=Answer,
            defer_ledger=True,
            **_request(),
        )
    [row] = await totals(db, TENANT)
    assert row["calls"] == 3


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (Case.valid('{"score": 7, "label": "too high"}'), "claude_schema"),
        (Case.valid("not json"), "claude_schema"),
        (Case.refusal(), "claude_refusal"),
        (Case.max_tokens(), "claude_max_tokens"),
    ],
)
async def test_unusable_answer_is_repaired_once_then_502(
    anthropic_api: AnthropicStandIn,
    make_client: Callable[..., ClaudeClient],
    bad: Case,
    reason: str,
) -> None:
    client = make_client(anthropic_api.url)
    anthropic_api.script(bad, Case.valid(VALID))
    result = await _structured(client)
    assert result.attempts == 2
    assert result.output.label == "ok"
    assert anthropic_api.billable == 2
    repair = anthropic_api.requests[-1]
    if bad.stop_reason == "max_tokens":
        assert repair["max_tokens"] == 512
    else:
        assert "could not be used" in repair["messages"][-1]["content"]

    anthropic_api.reset()
    anthropic_api.script(bad, bad)
    with pytest.raises(ClaudeBadOutput) as caught:
        await _structured(client)
    assert caught.value.reason == reason
    assert caught.value.status_code == 502
    assert anthropic_api.billable == 2


async def test_short_retry_after_is_waited_for(
    anthropic_api: AnthropicStandIn, make_client: Callable[..., ClaudeClient]
) -> None:
    client = make_client(anthropic_api.url)
    anthropic_api.script(Case.rate_limited(0.05), Case.valid(VALID))
    result = await _structured(client)
    assert result.output.label == "ok"
    assert len(anthropic_api.requests) == 2
    assert anthropic_api.billable == 1


async def test_long_retry_after_answers_503_with_the_wait(
    anthropic_api: AnthropicStandIn, make_client: Callable[..., ClaudeClient]
) -> None:
    client = make_client(anthropic_api.url)
    anthropic_api.script(Case.rate_limited(120))
    with pytest.raises(ClaudeUnavailable) as caught:
        await _structured(client)
    assert caught.value.reason == "claude_rate_limited"
    assert caught.value.headers == {"Retry-After": "120"}
    assert len(anthropic_api.requests) == 1


async def test_spend_limit_is_never_retried_and_opens_the_circuit(
    anthropic_api: AnthropicStandIn, make_client: Callable[..., ClaudeClient]
) -> None:
    client = make_client(anthropic_api.url)
    anthropic_api.script(Case.spend_limit(), Case.valid(VALID))
    with pytest.raises(ClaudeUnavailable) as caught:
        await _structured(client)
    assert caught.value.reason == "claude_spend_limit"
    assert len(anthropic_api.requests) == 1
    assert client.health()["circuit"] == "open"
    with pytest.raises(ClaudeUnavailable) as again:
        await _structured(client)
    assert again.value.reason == "claude_circuit_open"
    assert len(anthropic_api.requests) == 1


async def test_overloaded_is_retried_with_backoff(
    anthropic_api: AnthropicStandIn, make_client: Callable[..., ClaudeClient]
) -> None:
    client = make_client(anthropic_api.url)
    anthropic_api.script(Case.overloaded(), Case.overloaded(), Case.valid(VALID))
    result = await _structured(client)
    assert result.output.label == "ok"
    assert anthropic_api.count(529) == 2
    assert anthropic_api.billable == 1
    text = client.metrics.retries.labels("property_vision", "overloaded")._value.get()
    assert text == 2


async def test_server_error_with_should_retry_false_is_not_retried(
    anthropic_api: AnthropicStandIn, make_client: Callable[..., ClaudeClient]
) -> None:
    client = make_client(anthropic_api.url)
    anthropic_api.script(Case.server_error(should_retry=False), Case.valid(VALID))
    with pytest.raises(ClaudeUnavailable) as caught:
        await _structured(client)
    assert caught.value.reason == "claude_server_error"
    assert len(anthropic_api.requests) == 1


async def test_plain_server_error_is_retried(
    anthropic_api: AnthropicStandIn, make_client: Callable[..., ClaudeClient]
) -> None:
    client = make_client(anthropic_api.url)
    anthropic_api.script(Case.server_error(), Case.valid(VALID))
    assert (await _structured(client)).output.label == "ok"
    assert len(anthropic_api.requests) == 2


async def test_timeout_after_billing_is_not_called_twice(
    anthropic_api: AnthropicStandIn, make_client: Callable[..., ClaudeClient]
) -> None:
    client = make_client(anthropic_api.url, anthropic_timeout_seconds=0.3)
    anthropic_api.script(Case.slow(1.0, VALID), Case.valid(VALID))
    with pytest.raises(ClaudeTimeout) as caught:
        await _structured(client)
    assert caught.value.status_code == 504
    assert anthropic_api.billable == 1
    await asyncio.sleep(0.8)  # let the held answer finish server-side
    assert len(anthropic_api.requests) == 1


async def _ledger_rows(db: Database) -> list[dict[str, Any]]:
    async with db.tenant(TENANT) as conn:
        rows = await conn.fetch(
            "SELECT outcome, input_tokens, output_tokens, cache_write_tokens, cache_read_tokens, "
            "input_tokens_bound, output_tokens_bound, cost_micro_usd, request_id, call_id "
            "FROM claude_cost_ledger ORDER BY entry_id"
        )
    return [dict(row) for row in rows]


async def test_a_timed_out_call_is_booked_once_at_an_upper_bound(
    anthropic_api: AnthropicStandIn, make_client: Callable[..., ClaudeClient], db: Database
) -> None:
    client = make_client(anthropic_api.url, anthropic_timeout_seconds=0.3)
    anthropic_api.script(Case.slow(1.0, VALID), Case.valid(VALID))
    with pytest.raises(ClaudeTimeout):
        await _structured(client)
    assert anthropic_api.billable == 1
    [row] = await _ledger_rows(db)
    # The API may have billed it; what for is unknown: no token counts, and a
    # cost priced from the API's count of the request plus all of max_tokens.
    counted = estimate_tokens(_blocks(anthropic_api.requests[0]))
    assert anthropic_api.count_token_calls == 1
    assert row["outcome"] == "timeout"
    assert [row[k] for k in ("input_tokens", "output_tokens", "cache_write_tokens")] == [None] * 3
    assert (row["input_tokens_bound"], row["output_tokens_bound"]) == (counted, 256)
    estimate = counted * 3 + 256 * 15  # claude-sonnet-4-5 at $3 and $15 per MTok
    assert row["cost_micro_usd"] == estimate
    assert row["request_id"] is None
    # The estimate is counted apart from billed cost.
    labels = ("property_vision", "claude-sonnet-4-5", "timeout")
    assert client.metrics.estimated_cost.labels(*labels)._value.get() == estimate / 1_000_000
    assert client.metrics.cost.labels("property_vision", "claude-sonnet-4-5")._value.get() == 0

    # The caller tries again and is answered: that second billed call is booked
    # with what it cost, and the first is not booked again.
    result = await _structured(client)
    assert anthropic_api.billable == 2
    await asyncio.sleep(0.8)  # the held answer of the first call finishes server-side
    timed_out, answered = await _ledger_rows(db)
    assert timed_out == row
    assert answered["outcome"] == "answered"
    assert answered["cost_micro_usd"] == result.cost_micro_usd
    assert (answered["input_tokens_bound"], answered["output_tokens_bound"]) == (None, None)
    # The unanswered call is filed under the model it asked for (no answer
    # named the snapshot), the answered one under the snapshot.
    asked, snapshot = await totals(db, TENANT)
    assert (asked["model"], snapshot["model"]) == ("claude-sonnet-4-5", result.model)
    assert (asked["calls"], asked["unanswered_calls"], snapshot["unanswered_calls"]) == (1, 1, 0)
    assert (asked["cost_micro_usd"], asked["estimated_cost_micro_usd"]) == (estimate, estimate)
    assert snapshot["cost_micro_usd"] == result.cost_micro_usd
    assert snapshot["estimated_cost_micro_usd"] == 0
    assert (asked["input_tokens"], snapshot["input_tokens"]) == (0, result.usage.input_tokens)


async def test_a_timed_out_repair_is_booked_by_the_client_with_the_deferred_first_call(
    anthropic_api: AnthropicStandIn, make_client: Callable[..., ClaudeClient], db: Database
) -> None:
    client = make_client(anthropic_api.url, anthropic_timeout_seconds=0.3)
    anthropic_api.script(Case.refusal(), Case.slow(1.0, VALID))
    with pytest.raises(ClaudeTimeout):
        await client.structured(
            tenant_id=TENANT,
            feature="property_vision",
            output_format=Answer,
            defer_ledger=True,
            **_request(),
        )
    # No result came back to carry the entries: the client booked both, once.
    assert anthropic_api.billable == 2
    rows = {row["outcome"]: row for row in await _ledger_rows(db)}
    assert len(rows) == 2
    assert rows["answered"]["request_id"] is not None
    assert rows["timeout"]["input_tokens"] is None
    await asyncio.sleep(0.8)


async def test_a_call_its_caller_stopped_waiting_for_is_booked_as_cancelled(
    anthropic_api: AnthropicStandIn, make_client: Callable[..., ClaudeClient], db: Database
) -> None:
    client = make_client(anthropic_api.url, anthropic_timeout_seconds=10)
    anthropic_api.script(Case.slow(1.0, VALID))
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await _structured(client)
    [row] = await _ledger_rows(db)
    assert row["outcome"] == "cancelled"
    assert row["input_tokens"] is None
    assert row["output_tokens_bound"] == 256
    await asyncio.sleep(0.8)


async def test_a_call_whose_answer_was_cut_off_is_booked_as_dropped_and_not_retried(
    anthropic_api: AnthropicStandIn, make_client: Callable[..., ClaudeClient], db: Database
) -> None:
    client = make_client(anthropic_api.url)
    anthropic_api.script(Case.dropped(), Case.valid(VALID))
    with pytest.raises(ClaudeUnavailable) as caught:
        await _structured(client)
    assert caught.value.reason == "claude_unreachable"
    # The API processed and billed it: not sent again, and booked at its bound.
    assert (anthropic_api.billable, len(anthropic_api.requests)) == (1, 1)
    [row] = await _ledger_rows(db)
    assert row["outcome"] == "dropped"
    assert row["input_tokens"] is None
    counted = estimate_tokens(_blocks(anthropic_api.requests[0]))
    assert (row["input_tokens_bound"], row["output_tokens_bound"]) == (counted, 256)


async def test_an_uncountable_request_is_estimated_with_the_local_bound(
    anthropic_api: AnthropicStandIn, make_client: Callable[..., ClaudeClient], db: Database
) -> None:
    client = make_client(anthropic_api.url, anthropic_timeout_seconds=0.3)
    anthropic_api.count_tokens_status = 529
    anthropic_api.script(Case.slow(1.0, VALID))
    with pytest.raises(ClaudeTimeout):
        await _structured(client)
    [row] = await _ledger_rows(db)
    bound = input_token_bound({"model": "claude-sonnet-4-5", **_request()}, Answer)
    assert row["input_tokens_bound"] == bound
    assert bound > estimate_tokens(_blocks(anthropic_api.requests[0]))
    assert row["cost_micro_usd"] == bound * 3 + 256 * 15
    await asyncio.sleep(0.8)


def test_the_local_bound_counts_bytes_and_a_fixed_cost_per_image() -> None:
    text = "é" * 100  # two UTF-8 bytes each
    image = {"type": "image", "source": {"type": "base64", "data": "A" * 1_000_000}}
    request = {"max_tokens": 64, "messages": [{"role": "user", "content": [image, text]}]}
    bound = input_token_bound(request, None)
    assert API_OVERHEAD_TOKENS + IMAGE_TOKEN_BOUND + 200 < bound < API_OVERHEAD_TOKENS + 2_000
    # A cache breakpoint may have been written: the input is priced as cache writes.
    cached = {**request, "system": [{"type": "text", "text": "x", "cache_control": {}}]}
    assert upper_bound_usage(bound, cached) == Usage(cache_write_tokens=bound, output_tokens=64)
    assert upper_bound_usage(bound, request) == Usage(input_tokens=bound, output_tokens=64)


@pytest.fixture
def unaccepting_url() -> Iterator[str]:
    """A loopback port whose accept queue is full: a new connection's SYN goes
    unanswered, so a connect times out (the API never saw the request)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))  # in progress, or queued
        fillers.append(filler)
    yield f"http://127.0.0.1:{port}"
    for each in (*fillers, server):
        each.close()


async def test_a_connect_timeout_is_not_booked(
    unaccepting_url: str, make_client: Callable[..., ClaudeClient], db: Database
) -> None:
    client = make_client(unaccepting_url, claude_connect_timeout_seconds=0.2)
    with pytest.raises(ClaudeTimeout):
        await _structured(client)
    # Nothing was sent, so nothing can have been billed.
    assert await _ledger_rows(db) == []


async def test_booking_a_call_again_adds_nothing(
    anthropic_api: AnthropicStandIn, make_client: Callable[..., ClaudeClient], db: Database
) -> None:
    client = make_client(anthropic_api.url)
    anthropic_api.script(Case.valid(VALID))
    result = await client.structured(
        tenant_id=TENANT,
        feature="property_vision",
        output_format=Answer,
        defer_ledger=True,
        **_request(),
    )
    # A caller whose commit's answer was lost books the entries as a fallback.
    await record(db, *result.ledger)
    await client.book(result.ledger)
    [row] = await _ledger_rows(db)
    assert row["call_id"] == result.ledger[0].call_id


async def test_a_batch_result_collected_again_is_booked_once(
    anthropic_api: AnthropicStandIn, make_client: Callable[..., ClaudeClient], db: Database
) -> None:
    client = make_client(anthropic_api.url)
    usage = Usage(input_tokens=1_000, output_tokens=100)
    for message_id in ("msg_01", "msg_01", "msg_02"):
        await client.account_batch(
            tenant_id=TENANT,
            feature="property_vision",
            model="claude-sonnet-4-5",
            usage=usage,
            request_id=message_id,
        )
    [row] = await totals(db, TENANT)
    assert (row["calls"], row["cost_micro_usd"]) == (2, 2 * (1_000 * 3 + 100 * 15) // 2)


async def test_consecutive_failures_open_the_circuit(
    anthropic_api: AnthropicStandIn, make_client: Callable[..., ClaudeClient]
) -> None:
    client = make_client(
        anthropic_api.url, claude_breaker_failures=2, claude_breaker_open_seconds=60
    )
    anthropic_api.script(*[Case.server_error(should_retry=False)] * 2)
    for _ in range(2):
        with pytest.raises(ClaudeUnavailable):
            await _structured(client)
    with pytest.raises(ClaudeUnavailable) as caught:
        await _structured(client)
    assert caught.value.reason == "claude_circuit_open"
    assert 0 < (caught.value.retry_after or 0) <= 60
    assert len(anthropic_api.requests) == 2
    assert client.metrics.circuit.labels("open")._value.get() == 1


async def test_half_open_probe_closes_the_circuit(
    anthropic_api: AnthropicStandIn, make_client: Callable[..., ClaudeClient]
) -> None:
    client = make_client(
        anthropic_api.url, claude_breaker_failures=1, claude_breaker_open_seconds=0.1
    )
    anthropic_api.script(Case.server_error(should_retry=False), Case.valid(VALID))
    await _open_until_half_open(client)
    assert (await _structured(client)).output.label == "ok"
    assert client.health()["circuit"] == "closed"


async def _open_until_half_open(client: ClaudeClient) -> None:
    """A failure opens the circuit (one failure trips it); its 0.1 s open period ends."""
    with pytest.raises(ClaudeUnavailable):
        await _structured(client)
    await asyncio.sleep(0.15)  # the next call is the half-open probe


async def test_a_probe_whose_caller_gives_up_does_not_keep_the_circuit_half_open(
    anthropic_api: AnthropicStandIn, make_client: Callable[..., ClaudeClient]
) -> None:
    """The probe's caller hits its own deadline (a route's analysis timeout): the
    probe was never given back, and every later call, of every tenant, was
    refused as circuit_open until a restart."""
    client = make_client(
        anthropic_api.url,
        anthropic_timeout_seconds=10.0,
        claude_breaker_failures=1,
        claude_breaker_open_seconds=0.1,
    )
    anthropic_api.script(
        Case.server_error(should_retry=False), Case.slow(1.0, VALID), Case.valid(VALID)
    )
    await _open_until_half_open(client)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await _structured(client)
    assert (await _structured(client)).output.label == "ok"
    assert client.health()["circuit"] == "closed"


async def test_a_probe_cancelled_while_the_limiter_holds_it_gives_back_both(
    anthropic_api: AnthropicStandIn, make_client: Callable[..., ClaudeClient]
) -> None:
    """Cancelled in the limiter's wait, before sending: nothing is booked, and the
    limiter's slot and the probe are given back (both leaked)."""
    client = make_client(
        anthropic_api.url, claude_breaker_failures=1, claude_breaker_open_seconds=0.1
    )
    anthropic_api.script(Case.server_error(should_retry=False), Case.valid(VALID))
    await _open_until_half_open(client)
    in_flight = client.limiter._in_flight
    # A known limit with no token left: the next call waits about a second.
    limiter = client.limiter
    limiter._limit, limiter._rate, limiter._tokens = 10.0, 1.0, -0.2
    limiter._stamp = time.monotonic()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await _structured(client)
    assert client.limiter._in_flight == in_flight
    assert len(anthropic_api.requests) == 1
    limiter._tokens = 5.0
    assert (await _structured(client)).output.label == "ok"
    assert client.health()["circuit"] == "closed"


async def _fire(client: ClaudeClient, n: int, interval: float) -> list[BaseException | None]:
    async def one() -> BaseException | None:
        try:
            await client.parse(
                tenant_id=TENANT, feature="property_vision", output_format=Answer, **_request()
            )
        except Exception as exc:
            return exc
        return None

    tasks = []
    for _ in range(n):
        tasks.append(asyncio.create_task(one()))
        await asyncio.sleep(interval)
    return list(await asyncio.gather(*tasks))


async def test_limiter_at_twice_the_rate_gets_almost_no_429(
    make_client: Callable[..., ClaudeClient],
) -> None:
    # 4 requests per second allowed (bucket of 4), 8 per second offered.
    with AnthropicStandIn(rate_limit=(4, 1.0), responder=lambda _b: VALID) as limited:
        paced = make_client(
            limited.url,
            anthropic_max_retries=0,
            claude_max_retry_wait_seconds=10,
            anthropic_timeout_seconds=10,
        )
        await _fire(paced, 24, 0.125)
        paced_429 = limited.count(429)
        assert limited.count(200) >= 21
    with AnthropicStandIn(rate_limit=(4, 1.0), responder=lambda _b: VALID) as unpaced:
        # The control: the same load from a client whose limiter learns nothing.
        blind = make_client(unpaced.url, anthropic_max_retries=0, anthropic_timeout_seconds=10)
        blind.limiter.update = lambda _headers: None  # type: ignore[method-assign,assignment]
        await _fire(blind, 24, 0.125)
        unpaced_429 = unpaced.count(429)
    # A shared, loaded machine delays some sends into bursts: allow a few.
    assert paced_429 <= 3
    assert unpaced_429 >= 8
