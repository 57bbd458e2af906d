"""A local stand-in of Anthropic's Messages API for tests and benchmarks.

It speaks the real wire protocol (the official ``anthropic`` client talks to
it through ``base_url``) for ``POST /v1/messages``, ``POST
/v1/messages/count_tokens`` and the Message Batches endpoints, and answers
with scripted cases:

- ``Case.valid(text)`` / the ``responder`` (a function of the request body
  returning the answer's text) for normal answers; ``Case.refusal()``,
  ``Case.max_tokens(text)``;
- ``Case.error(status, type, message, headers)`` for 429 (short or long
  ``retry-after``, spend limit), 529, 500 with ``x-should-retry: false``;
- ``Case.slow(seconds)``: the request is processed and counted as billable,
  then the answer is held back (a client read timeout after billing);
- ``Case.dropped()``: processed and billed, then the connection is closed
  halfway through the answer (a link lost after the request was sent).

``count_tokens_status`` other than 200 makes ``/v1/messages/count_tokens``
answer that status with an ``api_error`` body (the API failing to count).

Cases queue in order (``script``); with none queued the responder answers.
Every answered 200 on ``/v1/messages`` is a billable call (``billable``), so
tests assert exactly-once rather than assume it. A fixed ``latency`` delays
every answer (the benchmark's 200 ms). Prompt caching follows the API: the
prefix up to the last ``cache_control`` breakpoint (tools, system, messages)
of at least ``min_cache_tokens`` is written once and read for five minutes.
An optional request bucket (``rate_limit=(limit, period_seconds)``) sends
``anthropic-ratelimit-requests-*`` headers and refuses with 429 when empty.

Run it in-process with ``with AnthropicStandIn() as api: api.url``.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

Responder = Callable[[dict[str, Any]], str]
CACHE_TTL_SECONDS = 300.0
IMAGE_TOKENS = 1_600  # a 1568 px image costs about (w * h) / 750 tokens
#: The Claude API's aliases of pre-4.6 models and the dated snapshots they resolve
#: to (docs: "Model IDs and versions"); a message answers with the snapshot.
SNAPSHOTS = {
    "claude-sonnet-4-5": "claude-sonnet-4-5-20250929",
    "claude-haiku-4-5": "claude-haiku-4-5-20251001",
    "claude-opus-4-5": "claude-opus-4-5-20251101",
}


def resolve_model(model: str) -> str:
    """The model id a real message reports for a request naming ``model``."""
    return SNAPSHOTS.get(model, model)


@dataclass(frozen=True, slots=True)
class Case:
    """One scripted answer to ``POST /v1/messages``."""

    status: int = 200
    text: str | None = None
    stop_reason: str = "end_turn"
    error_type: str = ""
    message: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    hold_seconds: float = 0.0
    #: Processed and billed, then the connection is closed mid-answer.
    drop: bool = False

    @classmethod
    def valid(cls, text: str | None = None) -> Case:
        """A normal answer (``text`` or the responder's)."""
        return cls(text=text)

    @classmethod
    def refusal(cls) -> Case:
        """``stop_reason: refusal`` with a non-JSON text."""
        return cls(text="I can't help with that.", stop_reason="refusal")

    @classmethod
    def max_tokens(cls, text: str = '{"luxury_score": 0.') -> Case:
        """An answer cut off by ``max_tokens``."""
        return cls(text=text, stop_reason="max_tokens")

    @classmethod
    def error(
        cls, status: int, error_type: str, message: str, headers: dict[str, str] | None = None
    ) -> Case:
        """An error answer with Anthropic's error body."""
        return cls(status=status, error_type=error_type, message=message, headers=headers or {})

    @classmethod
    def rate_limited(cls, retry_after: float) -> Case:
        """429 with ``retry-after`` (whole seconds) and ``retry-after-ms``."""
        return cls.error(
            429,
            "rate_limit_error",
            "Number of requests has exceeded your per-minute rate limit",
            {"retry-after": str(math.ceil(retry_after)), "retry-after-ms": str(retry_after * 1000)},
        )

    @classmethod
    def spend_limit(cls) -> Case:
        """429 for an exhausted spend limit."""
        return cls.error(
            429,
            "rate_limit_error",
            "You have reached your specified API usage limits (monthly spend limit).",
            {"retry-after": "3600"},
        )

    @classmethod
    def overloaded(cls) -> Case:
        """529 overloaded."""
        return cls.error(529, "overloaded_error", "Overloaded")

    @classmethod
    def server_error(cls, *, should_retry: bool | None = None) -> Case:
        """500, optionally with ``x-should-retry``."""
        headers = {} if should_retry is None else {"x-should-retry": str(should_retry).lower()}
        return cls.error(500, "api_error", "Internal server error", headers)

    @classmethod
    def dropped(cls) -> Case:
        """Processed and billed, then the connection is lost halfway through the answer."""
        return cls(drop=True)

    @classmethod
    def slow(cls, seconds: float, text: str | None = None) -> Case:
        """Processed and billed, then answered only after ``seconds``."""
        return cls(text=text, hold_seconds=seconds)


class _ConnectionCutError(Exception):
    """Raised mid-answer: uvicorn closes a connection whose response has started."""


class _CutShort(Response):
    """Headers and half the body, then the connection is closed (as a lost link looks)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        half = bytes(self.body)[: len(self.body) // 2]
        await send({"type": "http.response.body", "body": half, "more_body": True})
        raise _ConnectionCutError


@dataclass(slots=True)
class _Batch:
    id: str
    requests: list[dict[str, Any]]
    created: float
    invisible_polls: int
    polls_to_end: int
    results: list[dict[str, Any]] | None = None


def estimate_tokens(value: Any) -> int:
    """The stand-in's token count: about four bytes of JSON per token, images fixed."""
    if isinstance(value, dict) and value.get("type") == "image":
        return IMAGE_TOKENS
    if isinstance(value, list):
        return sum(estimate_tokens(item) for item in value)
    if isinstance(value, dict):
        return sum(estimate_tokens(v) for k, v in value.items() if k != "cache_control")
    return max(1, len(str(value)) // 4)


def _blocks(body: dict[str, Any]) -> list[Any]:
    """Tools, system and message content blocks in the order the API caches them."""
    blocks: list[Any] = list(body.get("tools") or [])
    system = body.get("system")
    if isinstance(system, str):
        blocks.append({"type": "text", "text": system})
    elif isinstance(system, list):
        blocks.extend(system)
    for message in body.get("messages") or []:
        content = message.get("content")
        if isinstance(content, str):
            blocks.append({"type": "text", "text": content, "role": message.get("role")})
        else:
            blocks.extend(content or [])
    return blocks


class AnthropicStandIn:
    """The server (see the module docstring); thread-safe counters."""

    def __init__(
        self,
        *,
        responder: Responder | None = None,
        latency: float = 0.0,
        rate_limit: tuple[int, float] | None = None,
        min_cache_tokens: int = 1024,
        batch_invisible_polls: int = 0,
        batch_polls_to_end: int = 1,
    ) -> None:
        self.responder: Responder = responder or (lambda _body: "{}")
        self.latency = latency
        self.min_cache_tokens = min_cache_tokens
        self.batch_invisible_polls = batch_invisible_polls
        self.batch_polls_to_end = batch_polls_to_end
        self._lock = threading.Lock()
        self._cases: deque[Case] = deque()
        self._cache: dict[str, float] = {}
        self._batches: dict[str, _Batch] = {}
        self._rate_limit = rate_limit
        self._bucket = float(rate_limit[0]) if rate_limit else 0.0
        self._bucket_stamp = time.monotonic()
        self.requests: list[dict[str, Any]] = []
        self.billable = 0
        self.batch_billable = 0
        self.count_token_calls = 0
        self.count_tokens_status = 200
        self.status_counts: dict[int, int] = {}
        self._active = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.port = 0

    # -- control -----------------------------------------------------------
    @property
    def url(self) -> str:
        """Base URL for ``AsyncAnthropic(base_url=...)``."""
        return f"http://127.0.0.1:{self.port}"

    def script(self, *cases: Case) -> None:
        """Queue ``cases``; each answers one ``/v1/messages`` request, in order."""
        with self._lock:
            self._cases.extend(cases)

    def reset(self) -> None:
        """Wait for requests in progress (up to 10 s), then forget counters,
        queued cases, the cache and batches."""
        deadline = time.monotonic() + 10
        while self._active and time.monotonic() < deadline:
            time.sleep(0.01)
        with self._lock:
            self._cases.clear()
            self._cache.clear()
            self._batches.clear()
            self.requests.clear()
            self.billable = self.batch_billable = self.count_token_calls = 0
            self.status_counts.clear()

    def count(self, status: int) -> int:
        """Answers given with ``status``."""
        with self._lock:
            return self.status_counts.get(status, 0)

    # -- server ------------------------------------------------------------
    def app(self) -> Starlette:
        """The ASGI app."""
        return Starlette(
            routes=[
                Route("/v1/messages", self._messages, methods=["POST"]),
                Route("/v1/messages/count_tokens", self._count_tokens, methods=["POST"]),
                Route("/v1/messages/batches", self._create_batch, methods=["POST"]),
                Route("/v1/messages/batches/{batch_id}", self._get_batch, methods=["GET"]),
                Route(
                    "/v1/messages/batches/{batch_id}/results", self._batch_results, methods=["GET"]
                ),
            ]
        )

    def start(self) -> AnthropicStandIn:
        """Serve on a free loopback port in a background thread."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._socket = sock
        config = uvicorn.Config(
            self.app(), log_level="warning", access_log=False, lifespan="off", backlog=2048
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the Anthropic stand-in did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()

    def __enter__(self) -> AnthropicStandIn:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- behaviour ---------------------------------------------------------
    def _take_slot(self) -> tuple[bool, dict[str, str]]:
        """Token bucket of the request limit; returns (allowed, headers)."""
        if self._rate_limit is None:
            return True, {}
        limit, period = self._rate_limit
        rate = limit / period
        now = time.monotonic()
        self._bucket = min(limit, self._bucket + (now - self._bucket_stamp) * rate)
        self._bucket_stamp = now
        allowed = self._bucket >= 1
        if allowed:
            self._bucket -= 1
        remaining = int(self._bucket)
        full_in = (limit - self._bucket) / rate
        reset = datetime.now(UTC) + timedelta(seconds=full_in)
        headers = {
            "anthropic-ratelimit-requests-limit": str(limit),
            "anthropic-ratelimit-requests-remaining": str(max(0, remaining)),
            "anthropic-ratelimit-requests-reset": reset.isoformat().replace("+00:00", "Z"),
        }
        if not allowed:
            wait = (1 - self._bucket) / rate
            headers["retry-after"] = str(max(1, math.ceil(wait)))
            headers["retry-after-ms"] = str(int(wait * 1000) + 1)
        return allowed, headers

    def _usage(self, body: dict[str, Any], text: str) -> dict[str, int]:
        blocks = _blocks(body)
        last_breakpoint = max(
            (
                i
                for i, block in enumerate(blocks)
                if isinstance(block, dict) and block.get("cache_control")
            ),
            default=-1,
        )
        prefix, rest = blocks[: last_breakpoint + 1], blocks[last_breakpoint + 1 :]
        prefix_tokens = estimate_tokens(prefix) if prefix else 0
        usage = {
            "input_tokens": estimate_tokens(rest),
            "output_tokens": max(1, len(text) // 4),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
        if prefix_tokens < self.min_cache_tokens:
            usage["input_tokens"] += prefix_tokens
            return usage
        key = hashlib.sha256(orjson.dumps([body.get("model"), prefix])).hexdigest()
        now = time.monotonic()
        if self._cache.get(key, 0.0) > now:
            usage["cache_read_input_tokens"] = prefix_tokens
        else:
            usage["cache_creation_input_tokens"] = prefix_tokens
        self._cache[key] = now + CACHE_TTL_SECONDS
        return usage

    def _message(self, body: dict[str, Any], text: str, stop_reason: str) -> dict[str, Any]:
        return {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            # As the real API: an alias is answered with the snapshot it resolves to.
            "model": resolve_model(str(body.get("model", "claude-sonnet-4-5"))),
            "content": [{"type": "text", "text": text}],
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": self._usage(body, text),
        }

    def _answer(self, status: int, payload: Any, headers: dict[str, str]) -> Response:
        with self._lock:
            self.status_counts[status] = self.status_counts.get(status, 0) + 1
        headers = {"request-id": f"req_{uuid.uuid4().hex[:24]}", **headers}
        return Response(
            orjson.dumps(payload),
            status_code=status,
            headers=headers,
            media_type="application/json",
        )

    @staticmethod
    def _error_body(error_type: str, message: str) -> dict[str, Any]:
        return {"type": "error", "error": {"type": error_type, "message": message}}

    async def _messages(self, request: Request) -> Response:
        with self._lock:
            self._active += 1
        try:
            return await self._answer_messages(request)
        finally:
            with self._lock:
                self._active -= 1

    async def _answer_messages(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        if self.latency:
            await asyncio.sleep(self.latency)
        with self._lock:
            self.requests.append(body)
            allowed, limit_headers = self._take_slot()
            case = self._cases.popleft() if (allowed and self._cases) else None
        if not allowed:
            return self._answer(
                429,
                self._error_body("rate_limit_error", "request rate limit exceeded"),
                limit_headers,
            )
        case = case or Case.valid()
        headers = {**limit_headers, **case.headers}
        if case.status != 200:
            return self._answer(
                case.status, self._error_body(case.error_type, case.message), headers
            )
        text = case.text if case.text is not None else self.responder(body)
        with self._lock:
            message = self._message(body, text, case.stop_reason)
            self.billable += 1
        if case.hold_seconds:
            await asyncio.sleep(case.hold_seconds)
        if case.drop:
            return _CutShort(orjson.dumps(message), headers=headers, media_type="application/json")
        return self._answer(200, message, headers)

    async def _count_tokens(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        with self._lock:
            self.count_token_calls += 1
        if self.count_tokens_status != 200:
            return self._answer(
                self.count_tokens_status,
                self._error_body("api_error", "the token count failed"),
                {"x-should-retry": "false"},
            )
        tokens = estimate_tokens(_blocks(body))
        return self._answer(200, {"input_tokens": tokens}, {})

    def _batch_json(self, batch: _Batch, request: Request) -> dict[str, Any]:
        ended = batch.results is not None
        succeeded = sum(1 for r in batch.results or [] if r["result"]["type"] == "succeeded")
        errored = len(batch.results or []) - succeeded
        created = datetime.fromtimestamp(batch.created, UTC)
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": "ended" if ended else "in_progress",
            "request_counts": {
                "processing": 0 if ended else len(batch.requests),
                "succeeded": succeeded,
                "errored": errored,
                "canceled": 0,
                "expired": 0,
            },
            "created_at": created.isoformat(),
            "expires_at": (created + timedelta(days=1)).isoformat(),
            "ended_at": datetime.now(UTC).isoformat() if ended else None,
            "archived_at": None,
            "cancel_initiated_at": None,
            "results_url": (
                f"{str(request.base_url).rstrip('/')}/v1/messages/batches/{batch.id}/results"
                if ended
                else None
            ),
        }

    async def _create_batch(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        batch = _Batch(
            id=f"msgbatch_{uuid.uuid4().hex[:24]}",
            requests=list(body.get("requests") or []),
            created=time.time(),
            invisible_polls=self.batch_invisible_polls,
            polls_to_end=self.batch_polls_to_end,
        )
        with self._lock:
            self._batches[batch.id] = batch
        return self._answer(200, self._batch_json(batch, request), {})

    def _finish(self, batch: _Batch) -> None:
        results = []
        for item in batch.requests:
            params = item.get("params") or {}
            with self._lock:
                case = self._cases.popleft() if self._cases else Case.valid()
            if case.status != 200:
                result: dict[str, Any] = {
                    "type": "errored",
                    "error": self._error_body(case.error_type, case.message),
                }
            else:
                text = case.text if case.text is not None else self.responder(params)
                result = {
                    "type": "succeeded",
                    "message": self._message(params, text, case.stop_reason),
                }
                self.batch_billable += 1
            results.append({"custom_id": item.get("custom_id"), "result": result})
        batch.results = results

    async def _get_batch(self, request: Request) -> Response:
        batch_id = request.path_params["batch_id"]
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is not None and batch.invisible_polls > 0:
                # Eventual consistency: a new batch is not readable at once.
                batch.invisible_polls -= 1
                batch = None
        if batch is None:
            return self._answer(
                404, self._error_body("not_found_error", f"batch {batch_id} not found"), {}
            )
        if batch.results is None:
            batch.polls_to_end -= 1
            if batch.polls_to_end <= 0:
                self._finish(batch)
        return self._answer(200, self._batch_json(batch, request), {})

    async def _batch_results(self, request: Request) -> Response:
        batch = self._batches.get(request.path_params["batch_id"])
        if batch is None or batch.results is None:
            return self._answer(404, self._error_body("not_found_error", "no results"), {})
        lines = b"\n".join(orjson.dumps(line) for line in batch.results)
        return Response(lines, media_type="application/binary")


def main(argv: list[str] | None = None) -> None:
    """``python -m localrun.standins.anthropic --port N [--latency S] [--responder mod:fn]``.

    Serves in the foreground (for benchmarks that keep it in its own process).
    """
    import argparse
    import importlib

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--responder", default=None, help="module:function(body) -> text")
    args = parser.parse_args(argv)
    responder = None
    if args.responder:
        module, _, name = args.responder.partition(":")
        responder = getattr(importlib.import_module(module), name)
    server = AnthropicStandIn(responder=responder, latency=args.latency)
    uvicorn.run(
        server.app(),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        lifespan="off",
        loop="uvloop",
        http="httptools",
        backlog=2048,
    )


if __name__ == "__main__":
    main()
