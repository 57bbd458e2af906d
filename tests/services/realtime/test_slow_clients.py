"""Clients that are slow, leave early or are refused, on a real replica over raw TCP.

uvicorn bounds neither the time to the end of a request's head nor a body's:
before `BoundedHttpProtocol`'s deadlines, an idle connection, a head sent a
byte at a time or a trickled body kept its socket (and task) for ever. The
deadlines are shortened here so that the tests run in a second; the
connection staying open (the old behaviour) fails them by their read
timeout, not by a measured duration.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from services.common.scopes import CRM_INGEST
from services.common.scoring import LeadFeatures
from services.common.serving import BoundedHttpProtocol
from tests.services.realtime.conftest import Replica, event_body

ANSWER_TIMEOUT = 10.0


@pytest.fixture(autouse=True)
def short_deadlines(monkeypatch: pytest.MonkeyPatch) -> None:
    # Each connection's protocol is made after this: the class values apply.
    monkeypatch.setattr(BoundedHttpProtocol, "head_timeout_seconds", 0.5, raising=False)
    monkeypatch.setattr(BoundedHttpProtocol, "body_timeout_seconds", 0.5, raising=False)


async def _until_closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes (fails if it never does)."""
    received = b""
    async with asyncio.timeout(ANSWER_TIMEOUT):
        while chunk := await reader.read(65536):
            received += chunk
    return received


def _json_answer(raw: bytes) -> tuple[int, dict[str, Any]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def _head(token: str, length: int, path: str = "/v1/leads/events") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def _server_errors(replica: Replica, route: str) -> float:
    value = replica.registry.get_sample_value(
        "http_requests_total", {"method": "POST", "route": route, "status": "500"}
    )
    return value or 0.0


async def test_a_connection_that_sends_nothing_is_closed(replica: Replica) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", replica.port)
    try:
        assert await _until_closed(reader) == b""
    finally:
        writer.close()


@pytest.mark.parametrize("stalls_in", ["head", "body"])
async def test_a_request_that_stops_coming_is_408(
    replica: Replica, make_token: Callable[..., str], stalls_in: str
) -> None:
    token = make_token("tenant-a", subject="crm", scopes=(CRM_INGEST,))
    # A head that never ends, or a whole head and the first byte of its body.
    sent = _head(token, 1000) + b"{" if stalls_in == "body" else _head(token, 1000)[:60]
    reader, writer = await asyncio.open_connection("127.0.0.1", replica.port)
    try:
        writer.write(sent)
        await writer.drain()
        status, answer = _json_answer(await _until_closed(reader))
    finally:
        writer.close()
    assert status == 408
    assert answer["reason"] == "request_timeout"


async def test_a_trickled_body_is_cut_off_and_no_server_error(
    replica: Replica, make_token: Callable[..., str]
) -> None:
    token = make_token("tenant-a", subject="crm", scopes=(CRM_INGEST,))
    reader, writer = await asyncio.open_connection("127.0.0.1", replica.port)

    async def trickle() -> None:
        # A byte every 50 ms, as slowloris does: never idle for long, far
        # below any honest rate. It ends when the server has closed.
        with contextlib.suppress(OSError):
            while not reader.at_eof():
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(0.05)

    writer.write(_head(token, 100_000) + b"{")
    trickling = asyncio.create_task(trickle())
    try:
        # The answer may be lost to a reset (bytes still arriving at a closed
        # socket); what matters is that the server hangs up.
        with contextlib.suppress(ConnectionResetError):
            await _until_closed(reader)
    finally:
        trickling.cancel()
        writer.close()
    # The route saw its client leave: not a failure of the service.
    await asyncio.sleep(0.1)
    assert _server_errors(replica, "/v1/leads/events") == 0


async def test_a_slow_but_steady_body_is_accepted(
    replica: Replica, make_token: Callable[..., str], sample_leads: list[LeadFeatures]
) -> None:
    # Sent over longer than the body's base time, each chunk earning more.
    token = make_token("tenant-a", subject="crm", scopes=(CRM_INGEST,))
    body = orjson.dumps(event_body(sample_leads[0], data={"pad": "x" * 1500}))
    chunks = [body[i : i + 500] for i in range(0, len(body), 500)]
    reader, writer = await asyncio.open_connection("127.0.0.1", replica.port)
    try:
        writer.write(_head(token, len(body)))
        for chunk in chunks:
            writer.write(chunk)
            await writer.drain()
            await asyncio.sleep(0.25)
        async with asyncio.timeout(ANSWER_TIMEOUT):
            status_line = await reader.readline()
    finally:
        writer.close()
    assert len(chunks) >= 3
    assert status_line.split()[1] == b"202", status_line


async def test_a_client_leaving_mid_body_is_not_a_server_error(
    replica: Replica, make_token: Callable[..., str]
) -> None:
    token = make_token("tenant-a", subject="crm", scopes=(CRM_INGEST,))
    for path in ("/v1/leads/events", "/v1/leads/events/batch"):
        _, writer = await asyncio.open_connection("127.0.0.1", replica.port)
        writer.write(_head(token, 1000, path) + b'{"events": [')
        await writer.drain()
        await asyncio.sleep(0.1)
        writer.close()
        await writer.wait_closed()

    async def recorded() -> bool:
        for route in ("/v1/leads/events", "/v1/leads/events/batch"):
            labels = {"method": "POST", "route": route, "status": "499"}
            if replica.registry.get_sample_value("http_requests_total", labels) != 1:
                return False
        return True

    async with asyncio.timeout(ANSWER_TIMEOUT):
        while not await recorded():  # noqa: ASYNC110 - metrics have no event to wait on
            await asyncio.sleep(0.02)
    assert _server_errors(replica, "/v1/leads/events") == 0
    assert _server_errors(replica, "/v1/leads/events/batch") == 0


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def uvicorn_errors() -> Iterator[_Errors]:
    """ERROR records of uvicorn's logger (it does not propagate to the root)."""
    handler = _Errors()
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


async def test_a_refused_handshake_logs_no_error(
    replica: Replica, make_token: Callable[..., str], uvicorn_errors: _Errors
) -> None:
    # A reconnect loop with an expired or wrong token is routine: refused with
    # its 401/403, and nothing for an operator to act on.
    wrong_scope = make_token("tenant-a", subject="crm", scopes=(CRM_INGEST,))
    for url in (
        f"ws://127.0.0.1:{replica.port}/v1/feed",
        f"ws://127.0.0.1:{replica.port}/v1/feed?access_token={wrong_scope}",
    ):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(url):
                pass
        assert refused.value.response.status_code in (401, 403)
    await asyncio.sleep(0.1)
    assert uvicorn_errors.messages == []
