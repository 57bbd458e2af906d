"""``ClaudeClient``: the one way the services call the Messages API.

It wraps ``anthropic.AsyncAnthropic`` (built with ``max_retries=0``: there is
one retry policy, this one, not the SDK's layered under ours) and adds, in
the order a call meets them:

1. the circuit breaker (an open circuit answers 503 at once);
2. the local rate limiter fed by ``anthropic-ratelimit-*`` headers (a slot
   further away than CLAUDE_MAX_RETRY_WAIT_SECONDS is a 503 with
   ``Retry-After``);
3. the call itself, bounded by CLAUDE_TIMEOUT_SECONDS, and the retry policy:

   ======================  ==============================================
   429 rate limit          wait ``retry-after`` if it is short, else 503
   429 spend limit         never retried; opens the circuit; 503
   529 overloaded          backoff with full jitter
   5xx                     backoff with full jitter, unless
                           ``x-should-retry: false``
   connect error           retried (nothing reached the API)
   connection lost after   not retried (it may have been processed and
   sending                 billed); booked at an estimate; 503
   read timeout            not retried: the API may have processed and
                           billed the request; booked at an estimate; 504
   other 4xx               not retried; 502 (our request is wrong)
   ======================  ==============================================

4. the ledger and metrics for every answered call (billable or not); a caller
   may store the ledger rows in its own transaction (``defer_ledger``). A
   ``messages`` request that was sent and got no answer (the read timeout, or
   the caller cancelled it in flight, or the connection was lost before the
   answer was read) may have been billed: it is booked at
   once, whatever ``defer_ledger`` says (no result will carry it), with
   outcome ``timeout``, ``cancelled`` or ``dropped`` and its upper-bound cost
   (``estimate.py``), so spend is never under-counted when the API is slow.

Structured output goes through ``messages.parse`` with a pydantic model.
``structured()`` adds the repair rule: an answer that fails validation, a
refusal or a ``max_tokens`` stop gets one repair call, then ``ClaudeBadOutput``
(502). Nothing is ever made up.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import anthropic
import httpx2
import orjson
from anthropic._response import async_to_raw_response_wrapper
from pydantic import BaseModel, ValidationError

from services.common.claude.breaker import CircuitBreaker, CircuitOpen
from services.common.claude.config import ClaudeSettings
from services.common.claude.errors import (
    ClaudeBadOutput,
    ClaudeError,
    ClaudeTimeout,
    ClaudeUnavailable,
)
from services.common.claude.estimate import (
    COUNT_TOKENS_KEYS,
    input_token_bound,
    upper_bound_usage,
)
from services.common.claude.ledger import LedgerEntry, Outcome, Pricing, Usage, record
from services.common.claude.limiter import RateLimited, RateLimiter
from services.common.claude.metrics import ClaudeMetrics
from services.common.database import Database

log = logging.getLogger(__name__)

T = TypeVar("T", bound=BaseModel)

#: Anthropic answers a 429 for an exhausted spend limit as well as for the
#: request rate; only the message tells them apart.
_SPEND_LIMIT = re.compile(r"spend limit|usage limit|credit balance|billing", re.IGNORECASE)
#: How long the estimate of an unanswered call waits for the API's token count
#: before it falls back to the local bound (the API is likely slow just then).
COUNT_FOR_ESTIMATE_TIMEOUT_SECONDS = 5.0
#: The namespace of the ledger's ``call_id`` of a Message Batches result, derived
#: from the result's message id: collecting a batch again books nothing twice.
_BATCH_RESULTS = uuid.UUID("0d6c3f0e-5b7a-4f43-9a57-6a0c3c1e2b18")
#: Timeouts before the request was fully sent: the API cannot have processed it.
_UNSENT_TIMEOUTS = (httpx2.ConnectTimeout, httpx2.PoolTimeout, httpx2.WriteTimeout)
#: Connection errors once the request was sent whole: the API may have processed
#: and billed it, and the answer was lost on the way back.
_ANSWER_LOST = (httpx2.ReadError, httpx2.RemoteProtocolError)
ENABLE_HINT = (
    "set ANTHROPIC_API_KEY (the key ANTHROPIC_API_KEY of the services' Kubernetes Secret, "
    "or the environment locally) and restart the service"
)


@dataclass(frozen=True, slots=True)
class CallResult(Generic[T]):
    """One answered call: the parsed output or why it is unusable, and what it cost."""

    parsed: T | None
    problem: str | None
    text: str
    stop_reason: str | None
    usage: Usage
    cost_micro_usd: int
    model: str
    request_id: str | None
    latency_seconds: float
    #: The call's ledger entry when the caller stores it (``defer_ledger``).
    ledger: tuple[LedgerEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class StructuredResult(Generic[T]):
    """A validated output and the total of the one or two calls behind it."""

    output: T
    usage: Usage
    cost_micro_usd: int
    model: str
    attempts: int
    latency_seconds: float
    request_ids: tuple[str, ...] = field(default_factory=tuple)
    #: Entries the caller must store (``defer_ledger``): with the result, or by ``book``.
    ledger: tuple[LedgerEntry, ...] = ()


def _retry_after(headers: Mapping[str, str]) -> float | None:
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue
        if seconds >= 0:
            return seconds
    return None


def _error_message(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
    return str(exc.message)


def _text(body: Mapping[str, Any]) -> str:
    parts = [
        block.get("text", "")
        for block in body.get("content") or []
        if isinstance(block, dict) and block.get("type") == "text"
    ]
    return "".join(str(part) for part in parts)


def _replace_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_replace_nul(key): _replace_nul(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_replace_nul(item) for item in value]
    return value


def without_nul(output: T) -> T:
    """``output`` with every NUL in its strings replaced by U+FFFD.

    Postgres text and jsonb cannot hold NUL. Kept, an answer that held one
    (billed) was refused at the insert as the caller's 422
    ``unstorable_input``, and every retry paid for the call again.
    """
    dumped = output.model_dump(mode="json")
    cleaned = _replace_nul(dumped)
    return output if cleaned == dumped else type(output).model_validate(cleaned)


class ClaudeClient:
    """See the module docstring. One per app (``app.state.claude``)."""

    def __init__(
        self,
        api: anthropic.AsyncAnthropic,
        *,
        settings: ClaudeSettings,
        metrics: ClaudeMetrics,
        db: Database | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.api = api
        self.settings = settings
        self.metrics = metrics
        self.db = db
        self.pricing = Pricing(settings.claude_prices)
        self.limiter = RateLimiter()
        self.breaker = CircuitBreaker(
            failures=settings.claude_breaker_failures,
            open_seconds=settings.claude_breaker_open_seconds,
            on_change=metrics.set_circuit,
        )
        self._sleep = sleep
        self._jitter = jitter

    @property
    def model(self) -> str:
        """The configured model (CLAUDE_MODEL)."""
        return self.settings.claude_model

    async def close(self) -> None:
        """Close the HTTP connections."""
        await self.api.close()

    def health(self) -> dict[str, Any]:
        """Circuit state and model, for the services' feature health."""
        state = self.breaker.state
        return {
            "configured": True,
            "model": self.model,
            "circuit": state.value,
            "circuit_reason": self.breaker.reason or None,
        }

    def _backoff(self, attempt: int) -> float:
        cap = min(
            self.settings.claude_backoff_max_seconds,
            self.settings.claude_backoff_base_seconds * (2**attempt),
        )
        return self._jitter() * cap

    async def _send(
        self,
        *,
        feature: str,
        send: Callable[[], Awaitable[Any]],
        unanswered: Callable[[Outcome], Awaitable[None]] | None = None,
    ) -> tuple[Any, float]:
        """Run ``send`` (a raw-response API call) under the breaker, limiter and retry policy.

        ``unanswered`` books a billable request that was sent and got no answer
        (module docstring, 4.); it runs shielded, before the error propagates.
        """
        settings = self.settings
        started = time.perf_counter()
        attempts = settings.anthropic_max_retries + 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                probe = self.breaker.before_call()
            except CircuitOpen as exc:
                self._observe(feature, "circuit_open", started)
                raise ClaudeUnavailable(
                    "claude_circuit_open",
                    f"Claude is unavailable ({exc.reason}); not calling it for now",
                    retry_after=exc.retry_after,
                ) from None
            try:
                wait = self.limiter.reserve(max_wait=settings.claude_max_retry_wait_seconds)
            except RateLimited as exc:
                if probe:
                    self.breaker.release_probe()
                self._observe(feature, "rate_limited", started)
                raise ClaudeUnavailable(
                    "claude_rate_limited",
                    "the Claude request rate limit is reached; retry later",
                    retry_after=exc.wait_seconds,
                ) from None
            if wait > 0:
                self.metrics.limiter_waits.labels(feature).inc()
                try:
                    await self._sleep(wait)
                except BaseException:
                    # Cancelled before sending: nothing was sent, so nothing is
                    # booked, but the slot and the probe are given back.
                    self.limiter.release(None)
                    if probe:
                        self.breaker.release_probe()
                    raise
            headers: Mapping[str, str] | None = None
            try:
                raw = await send()
                headers = raw.headers
            except asyncio.CancelledError:
                # The caller stopped waiting (its own deadline, a shutdown);
                # the request may have been sent and billed all the same. A
                # probe cancelled without a verdict is given back: kept, it
                # left the circuit half-open and refusing every call, for every
                # tenant, until a restart.
                if probe:
                    self.breaker.release_probe()
                if unanswered is not None:
                    await _book_shielded(unanswered, "cancelled")
                raise
            except anthropic.APIStatusError as exc:
                headers = exc.response.headers
                delay = self._on_status_error(
                    exc, feature=feature, attempt=attempt, last=last, started=started
                )
                self.metrics.retries.labels(feature, self._retry_reason(exc)).inc()
                await self._sleep(delay)
                continue
            except anthropic.APITimeoutError as exc:
                self.breaker.record_failure("timeout")
                self._observe(feature, "timeout", started)
                if unanswered is not None and not isinstance(exc.__cause__, _UNSENT_TIMEOUTS):
                    await _book_shielded(unanswered, "timeout")
                raise ClaudeTimeout(
                    "claude_timeout",
                    f"Claude did not answer within {settings.anthropic_timeout_seconds:g} s; "
                    "the call is not repeated automatically (it may have been billed)",
                ) from None
            except anthropic.APIConnectionError as exc:
                self.breaker.record_failure("connection_error")
                if last or not isinstance(exc.__cause__, httpx2.ConnectError):
                    self._observe(feature, "connection_error", started)
                    if unanswered is not None and isinstance(exc.__cause__, _ANSWER_LOST):
                        await _book_shielded(unanswered, "dropped")
                    cause = type(exc.__cause__ or exc).__name__
                    raise ClaudeUnavailable(
                        "claude_unreachable", f"Claude cannot be reached ({cause})", retry_after=5
                    ) from None
                self.metrics.retries.labels(feature, "connection_error").inc()
                await self._sleep(self._backoff(attempt))
                continue
            except BaseException:
                # No verdict on the API (an unexpected error).
                if probe:
                    self.breaker.release_probe()
                raise
            finally:
                self.limiter.release(headers)
            self.breaker.record_success()
            return raw, started
        raise AssertionError("unreachable: the last attempt raises or returns")

    @staticmethod
    def _retry_reason(exc: anthropic.APIStatusError) -> str:
        if exc.status_code == 429:
            return "rate_limited"
        if exc.status_code == 529:
            return "overloaded"
        return "server_error"

    def _on_status_error(
        self,
        exc: anthropic.APIStatusError,
        *,
        feature: str,
        attempt: int,
        last: bool,
        started: float,
    ) -> float:
        """Raise the final error for ``exc`` or return the delay before the next attempt."""
        status = exc.status_code
        headers = exc.response.headers
        settings = self.settings
        if status == 429:
            if _SPEND_LIMIT.search(_error_message(exc)):
                self.breaker.trip("spend_limit", settings.claude_spend_limit_open_seconds)
                self._observe(feature, "spend_limit", started)
                log.error("Claude spend limit reached; circuit open: %s", _error_message(exc))
                raise ClaudeUnavailable(
                    "claude_spend_limit",
                    "the Anthropic spend limit is reached; Claude calls are paused until it is "
                    "raised",
                    retry_after=settings.claude_spend_limit_open_seconds,
                )
            self.breaker.release_probe()
            wait = _retry_after(headers)
            if wait is None:
                wait = self._backoff(0)
            if last or wait > settings.claude_max_retry_wait_seconds:
                self._observe(feature, "rate_limited", started)
                raise ClaudeUnavailable(
                    "claude_rate_limited",
                    "the Claude rate limit is reached; retry later",
                    retry_after=wait,
                )
            return wait
        if status == 529 or status >= 500:
            kind = "overloaded" if status == 529 else "server_error"
            self.breaker.record_failure(kind)
            if last or headers.get("x-should-retry") == "false":
                self._observe(feature, kind, started)
                raise ClaudeUnavailable(
                    f"claude_{kind}",
                    f"Claude answered {status} ({_error_message(exc)[:200]})",
                    retry_after=settings.claude_backoff_max_seconds,
                )
            return self._backoff(attempt)
        # 4xx other than 429: our request is wrong or the key is; retrying cannot help.
        self.breaker.release_probe()
        self._observe(feature, "client_error", started)
        if status in (401, 403):
            raise ClaudeUnavailable(
                "claude_misconfigured",
                f"Anthropic refused the API key ({status}); {ENABLE_HINT}",
                retry_after=60,
            )
        raise ClaudeBadOutput(
            "claude_request_rejected",
            f"Claude rejected the request ({status}): {_error_message(exc)[:300]}",
        )

    def _observe(self, feature: str, outcome: str, started: float) -> None:
        self.metrics.duration.labels(feature, outcome).observe(time.perf_counter() - started)

    def _price(
        self,
        *,
        tenant_id: str,
        feature: str,
        model: str,
        usage: Usage,
        request_id: str | None,
        batch: bool = False,
        outcome: Outcome = "answered",
        call_id: uuid.UUID | None = None,
    ) -> LedgerEntry:
        """The ledger entry of one call, counted in the metrics (not yet stored).

        An unanswered call's ``usage`` is its upper bound: its cost goes to the
        estimated series only, and no tokens are counted as billed.
        """
        cost = self.pricing.cost_micro_usd(model, usage, batch=batch)
        entry = LedgerEntry(
            tenant_id=tenant_id,
            feature=feature,
            model=model,
            usage=usage,
            cost_micro_usd=cost,
            batch=batch,
            request_id=request_id,
            outcome=outcome,
            call_id=call_id or uuid.uuid4(),
        )
        if entry.estimated:
            self.metrics.estimated_cost.labels(feature, model, outcome).inc(cost / 1_000_000)
            return entry
        for kind, tokens in (
            ("input", usage.input_tokens),
            ("output", usage.output_tokens),
            ("cache_write", usage.cache_write_tokens),
            ("cache_read", usage.cache_read_tokens),
        ):
            if tokens:
                self.metrics.tokens.labels(feature, model, kind).inc(tokens)
        self.metrics.cost.labels(feature, model).inc(cost / 1_000_000)
        return entry

    async def _book_unanswered(
        self,
        outcome: Outcome,
        *,
        tenant_id: str,
        feature: str,
        output_format: type[BaseModel],
        params: Mapping[str, Any],
    ) -> None:
        """Book a sent ``messages`` request that got no answer, at its upper-bound cost.

        The input is the API's own count of the request when it answers soon
        (``count_tokens`` is free; called directly, so that its answer neither
        closes the circuit nor waits for the limiter), else the local bound.
        """
        try:
            counted = await self.api.messages.count_tokens(
                **{key: params[key] for key in COUNT_TOKENS_KEYS if key in params},
                output_format=output_format,
                timeout=COUNT_FOR_ESTIMATE_TIMEOUT_SECONDS,
            )
            input_tokens = int(counted.input_tokens)
        except anthropic.AnthropicError as exc:
            log.warning("%s: estimating an unanswered call locally: %s", feature, exc)
            input_tokens = input_token_bound(params, output_format)
        entry = self._price(
            tenant_id=tenant_id,
            feature=feature,
            model=str(params["model"]),
            usage=upper_bound_usage(input_tokens, params),
            request_id=None,
            outcome=outcome,
        )
        log.warning(
            "%s: a Claude call got no answer (%s); booked at most %d micro-USD",
            feature,
            outcome,
            entry.cost_micro_usd,
        )
        await self.book([entry])

    async def book(self, entries: Sequence[LedgerEntry]) -> None:
        """Store ``entries`` in the cost ledger in a transaction of their own.

        For entries that ``structured(defer_ledger=True)`` handed back and that
        the caller could not store with its result (its transaction failed).
        """
        if self.db is not None and entries:
            await record(self.db, *entries)

    async def account_batch(
        self, *, tenant_id: str, feature: str, model: str, usage: Usage, request_id: str | None
    ) -> int:
        """Book one Message Batches result (half price) and return its cost.

        ``request_id`` is the result's message id: a result booked again (a
        backfill resumed after a crash collects its batch again) is booked once.
        """
        entry = self._price(
            tenant_id=tenant_id,
            feature=feature,
            model=model,
            usage=usage,
            request_id=request_id,
            batch=True,
            call_id=uuid.uuid5(_BATCH_RESULTS, request_id) if request_id else None,
        )
        await self.book([entry])
        return entry.cost_micro_usd

    async def parse(
        self,
        *,
        tenant_id: str,
        feature: str,
        output_format: type[T],
        validate: Callable[[T], None] | None = None,
        defer_ledger: bool = False,
        **params: Any,
    ) -> CallResult[T]:
        """One ``messages.parse`` call; an unusable answer is returned with ``problem`` set.

        ``validate`` adds checks the schema cannot express (raise ``ValueError``).
        The call's ledger entry is stored at once, or, with ``defer_ledger``,
        left in ``CallResult.ledger`` for the caller to store. A call sent
        and left without an answer is booked here in either case, at an
        estimate, before ``ClaudeTimeout`` (or the cancellation) propagates.
        """
        params.setdefault("model", self.model)

        async def send() -> Any:
            return await _raw_parse(self.api)(output_format=output_format, **params)

        unanswered = functools.partial(
            self._book_unanswered,
            tenant_id=tenant_id,
            feature=feature,
            output_format=output_format,
            params=params,
        )
        raw, started = await self._send(feature=feature, send=send, unanswered=unanswered)
        body = orjson.loads(await raw.read())
        model = str(body.get("model") or params["model"])
        usage = Usage.from_api(body.get("usage"))
        request_id = raw.headers.get("request-id")
        entry = self._price(
            tenant_id=tenant_id, feature=feature, model=model, usage=usage, request_id=request_id
        )
        if not defer_ledger:
            await self.book([entry])
        stop_reason = body.get("stop_reason")
        text = _text(body)
        parsed: T | None = None
        problem: str | None = None
        if stop_reason == "refusal":
            problem = "refusal: the model declined to answer"
        elif stop_reason == "max_tokens":
            problem = "max_tokens: the answer was cut off"
        else:
            try:
                message = await raw.parse()
                parsed = message.parsed_output
                if parsed is None:
                    problem = "schema: no structured output in the answer"
                else:
                    parsed = without_nul(parsed)
                    if validate is not None:
                        validate(parsed)
            except (ValidationError, ValueError) as exc:
                parsed = None
                problem = f"schema: {str(exc)[:500]}"
        outcome = "ok" if problem is None else "invalid_output"
        self._observe(feature, outcome, started)
        return CallResult(
            parsed=parsed,
            problem=problem,
            text=text,
            stop_reason=stop_reason,
            usage=usage,
            cost_micro_usd=entry.cost_micro_usd,
            model=model,
            request_id=request_id,
            latency_seconds=time.perf_counter() - started,
            ledger=() if not defer_ledger else (entry,),
        )

    async def structured(
        self,
        *,
        tenant_id: str,
        feature: str,
        output_format: type[T],
        validate: Callable[[T], None] | None = None,
        defer_ledger: bool = False,
        **params: Any,
    ) -> StructuredResult[T]:
        """``parse`` with one repair attempt; ``ClaudeBadOutput`` (502) when both fail.

        With ``defer_ledger`` the ledger entries of a successful result are
        returned in ``StructuredResult.ledger`` instead of being stored, so the
        caller stores them in the transaction that stores the result (one
        commit, fewer round trips), or with ``book`` if that transaction fails.
        When no result comes back (an exception), the calls already answered
        are booked here before the exception propagates, and a call that got
        no answer was booked by ``parse`` at an estimate: a billed call is
        always in the ledger, once.
        """
        started = time.perf_counter()
        results: list[CallResult[T]] = []
        # The repair differs from the first attempt in its request only.
        attempt = functools.partial(
            self.parse,
            tenant_id=tenant_id,
            feature=feature,
            output_format=output_format,
            validate=validate,
            defer_ledger=defer_ledger,
        )
        try:
            first = await attempt(**params)
            results.append(first)
            if first.problem is not None:
                log.warning(
                    "%s: unusable Claude answer, repairing once: %s", feature, first.problem
                )
                second = await attempt(**repair_params(params, first))
                results.append(second)
            final = results[-1]
            output = final.parsed
            if output is None:
                kind = (final.problem or "schema").split(":", 1)[0]
                raise ClaudeBadOutput(
                    f"claude_{kind}",
                    f"Claude's answer was unusable twice ({final.problem}); no result is stored",
                )
        except BaseException:
            unbooked = [entry for result in results for entry in result.ledger]
            if unbooked:
                await asyncio.shield(self.book(unbooked))
            raise
        usage = sum((r.usage for r in results[1:]), results[0].usage)
        cost = sum(r.cost_micro_usd for r in results)
        return StructuredResult(
            output=output,
            usage=usage,
            cost_micro_usd=cost,
            model=final.model,
            attempts=len(results),
            latency_seconds=time.perf_counter() - started,
            request_ids=tuple(r.request_id for r in results if r.request_id),
            ledger=tuple(entry for result in results for entry in result.ledger),
        )

    async def count_tokens(self, **params: Any) -> int:
        """``messages.count_tokens`` (free, rate limited separately) through the same policy."""
        params.setdefault("model", self.model)
        params.pop("max_tokens", None)

        async def send() -> Any:
            return await self.api.messages.with_raw_response.count_tokens(**params)

        raw, started = await self._send(feature="count_tokens", send=send)
        self._observe("count_tokens", "ok", started)
        return int((await raw.parse()).input_tokens)


async def _book_shielded(book: Callable[[Outcome], Awaitable[None]], outcome: Outcome) -> None:
    """Run ``book(outcome)`` to the end even if the caller is cancelled meanwhile.

    A failure to book is logged, not raised: the caller's error is the call's
    (the timeout, the cancellation), and the log says which cost is missing.
    """
    try:
        await asyncio.shield(book(outcome))
    except Exception:
        log.exception("an unanswered Claude call (%s) could not be booked", outcome)


def _raw_parse(api: anthropic.AsyncAnthropic) -> Callable[..., Awaitable[Any]]:
    # The SDK offers no raw-response form of ``messages.parse``; this is the
    # wrapper it uses for ``create``. The raw form gives the rate-limit
    # headers and the usage of answers that then fail validation (they are
    # billed too).
    return async_to_raw_response_wrapper(api.messages.parse)


def repair_params(params: Mapping[str, Any], failed: CallResult[Any]) -> dict[str, Any]:
    """The request for the one repair attempt after ``failed``.

    The failed answer is shown back with what was wrong; a cut-off answer
    gets twice the output budget instead (showing half a JSON document helps
    nobody).
    """
    repaired = dict(params)
    if failed.stop_reason == "max_tokens":
        repaired["max_tokens"] = min(int(params.get("max_tokens", 1024)) * 2, 16_384)
        return repaired
    note = (
        f"Your previous answer could not be used ({failed.problem}). Answer again: follow the "
        "instructions and the JSON schema exactly, and cite only ids that appear above."
    )
    messages = list(params.get("messages", []))
    if failed.text:
        messages.append({"role": "assistant", "content": failed.text})
    messages.append({"role": "user", "content": note})
    repaired["messages"] = messages
    return repaired


def build_anthropic(settings: ClaudeSettings) -> anthropic.AsyncAnthropic | None:
    """The SDK client, or None without a key. ``max_retries=0``: see the module docstring."""
    if settings.anthropic_api_key is None:
        return None
    return anthropic.AsyncAnthropic(
        api_key=settings.anthropic_api_key.get_secret_value(),
        base_url=settings.anthropic_base_url,
        max_retries=0,
        timeout=httpx2.Timeout(
            settings.anthropic_timeout_seconds, connect=settings.claude_connect_timeout_seconds
        ),
    )


__all__ = [
    "CallResult",
    "ClaudeClient",
    "ClaudeError",
    "StructuredResult",
    "build_anthropic",
    "repair_params",
]
