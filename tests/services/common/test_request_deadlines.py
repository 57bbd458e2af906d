"""`BoundedHttpProtocol`'s deadlines against requests pipelined behind a slow answer.

The protocol is exercised under uvicorn on a loopback port with a two-route
app: the deadlines concern the connection, whatever the routes do. The
realtime replica's own slow-client tests are in
tests/services/realtime/test_slow_clients.py.
"""

from __future__ import annotations

import asyncio

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from services.common.serving import BoundedHttpProtocol
from tests.services.serving import serving

HEAD_TIMEOUT = 0.3
ANSWER_TIMEOUT = 10.0


async def _slow(_: Request) -> PlainTextResponse:
    # Longer than the head timeout: a pipelined head waits through it.
    await asyncio.sleep(4 * HEAD_TIMEOUT)
    return PlainTextResponse("slow")


APP = Starlette(routes=[Route("/slow", _slow)])


async def test_a_head_pipelined_behind_a_slow_answer_does_not_take_its_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(BoundedHttpProtocol, "head_timeout_seconds", HEAD_TIMEOUT)
    async with serving(APP, http=BoundedHttpProtocol) as port:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            # A whole request, then the start of a second one that never ends.
            writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /slow HTTP/1.1\r\nHo")
            await writer.drain()
            received = b""
            async with asyncio.timeout(ANSWER_TIMEOUT):
                while chunk := await reader.read(65536):
                    received += chunk
        finally:
            writer.close()
    # The first answer is the slow route's; the stalled second request then
    # gets its 408 and the connection is closed.
    first, _, rest = received.partition(b"\r\n")
    assert first == b"HTTP/1.1 200 OK", received[:200]
    assert b"\r\n\r\nslow" in rest
    assert b"HTTP/1.1 408 " in rest
