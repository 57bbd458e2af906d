"""``enterprisehub serve realtime`` as a real process: what it logs and how it answers raw bytes.

These are the edges outside the ASGI app (uvicorn's own logging and its
HTTP/WebSocket parsers), so they are tested on the command an operator runs,
over plain TCP.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from localrun.servers import free_port
from services.common.scopes import CRM_INGEST, FEED_READ
from services.common.scoring import LeadFeatures
from tests.raw_http import ANSWER_TIMEOUT, raw_exchange
from tests.services.realtime.conftest import event_body

pytestmark = pytest.mark.integration

JWT_SHAPE = re.compile(r"eyJ[A-Za-z0-9_-]*\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")


@dataclass
class Served:
    """A running ``enterprisehub serve realtime`` and the file its output goes to."""

    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> str:
        """Stop it as an orchestrator would and return everything it wrote."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.log.read_text(errors="replace")


@pytest.fixture
def served(realtime_env: dict[str, str], tmp_path: Path, feed_rolled_out: None) -> Iterator[Served]:
    """The realtime service started by the CLI, logging at DEBUG (every level)."""
    port = free_port()
    log = tmp_path / "realtime.log"
    env = {**os.environ, **realtime_env, "LOG_LEVEL": "DEBUG", "PYTHONUNBUFFERED": "1"}
    argv = [sys.executable, "-m", "services.cli", "serve", "realtime", "--port", str(port)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*argv, "--host", "127.0.0.1"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=Path(__file__).resolve().parents[3],
        )
    server = Served(process=process, port=port, log=log)
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{server.http}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"serve realtime did not start:\n{server.stop()[-3000:]}")
        time.sleep(0.1)
    try:
        yield server
    finally:
        server.stop()


async def test_no_token_reaches_the_log_at_any_level(
    served: Served,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
) -> None:
    feed = make_token("tenant-a", scopes=(FEED_READ,))
    webhook = make_token("tenant-a", subject="crm", scopes=(CRM_INGEST,))
    expired = make_token("tenant-a", ttl_seconds=1, now=time.time() - 3600)
    tokens = [feed, webhook, expired]
    ws = f"ws://127.0.0.1:{served.port}/v1/feed"
    # Accepted and refused handshakes, the token in the query and in the header.
    async with connect(f"{ws}?access_token={feed}") as conn:
        await conn.recv()
    async with connect(ws, additional_headers={"Authorization": f"Bearer {feed}"}) as conn:
        await conn.recv()
    # Percent-encoded, as the server decodes it: the name and the JWT's dots. It
    # authenticates like the plain form, and reached the log whole.
    encoded = feed.replace(".", "%2E")
    async with connect(f"{ws}?access%5Ftoken={encoded}") as conn:
        await conn.recv()
    for refused in (f"{ws}?access_token={expired}", f"{ws}?access_token={webhook}&x=1"):
        with pytest.raises(InvalidStatus):
            async with connect(refused):
                pass
    async with httpx.AsyncClient(base_url=served.http) as http:
        ok = await http.post(
            "/v1/leads/events",
            json=event_body(sample_leads[0]),
            headers={"Authorization": f"Bearer {webhook}"},
        )
        assert ok.status_code == 202
        bad = await http.post(
            "/v1/leads/events", json={}, headers={"Authorization": f"Bearer {expired}"}
        )
        assert bad.status_code == 401
        await http.get(f"/health?access_token={feed}")
        await http.get(f"/health?token={encoded}")
        await http.get(f"/health?token={encoded.replace('%', '%25')}")  # encoded twice
    await asyncio.sleep(0.3)
    output = served.stop()
    # The handshakes were logged (so the check below looked at them) ...
    assert "WebSocket /v1/feed" in output
    assert "[redacted]" in output
    # ... and no token, whole or as a JWT-shaped fragment, is in any line.
    assert JWT_SHAPE.findall(output) == []
    assert JWT_SHAPE.findall(unquote(unquote(output))) == []
    for token in tokens:
        assert token.split(".")[2] not in output


def _upgrade(target: str, extra_headers: str = "") -> bytes:
    return (
        f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        f"Sec-WebSocket-Version: 13\r\n{extra_headers}\r\n"
    ).encode()


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(_upgrade("/v1/feed?pad=" + "a" * 9000), id="request line over 8 KiB"),
        pytest.param(_upgrade("/v1/feed", f"X-Pad: {'b' * 9000}\r\n"), id="header over 8 KiB"),
        pytest.param(
            _upgrade("/v1/feed", "".join(f"X-H{i}: v\r\n" for i in range(200))),
            id="200 headers",
        ),
        pytest.param(
            b"GET /v1/feed HTTP/1.1\r\nHost: x\r\n" + b"X-Endless: c\r\n" * 8000,
            id="headers that never end",
        ),
        pytest.param(
            b"POST /v1/leads/events HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"d" * 9000 + b"\r\n\r\n",
            id="HTTP header over 8 KiB",
        ),
    ],
)
def test_oversized_handshakes_are_answered_and_closed(served: Served, request_bytes: bytes) -> None:
    answer, closed = raw_exchange(served.port, request_bytes)
    assert closed, f"connection left open; received {answer[:200]!r}"
    assert re.match(rb"HTTP/1\.1 4\d\d ", answer), answer[:200]


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(_upgrade("/v1/feed", f"X-Pad: {'b' * 9000}\r\n"), id="handshake header"),
        pytest.param(
            b"POST /v1/leads/events HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"d" * 9000 + b"\r\n\r\n",
            id="HTTP header over 8 KiB",
        ),
        pytest.param(
            b"GET /v1/feed HTTP/1.1\r\nHost: x\r\n" + b"X-Endless: c\r\n" * 8000,
            id="headers that never end",
        ),
        pytest.param(
            b"POST /v1/leads/events HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 99999999999999999999999\r\n\r\n",
            id="Content-Length out of range",
        ),
        pytest.param(
            b"POST /v1/leads/events HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
            id="two Content-Lengths",
        ),
        pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", id="TLS to plain HTTP"),
        pytest.param(
            _upgrade("/v1/feed").replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"short"),
            id="bad Sec-WebSocket-Key",
        ),
        pytest.param(
            _upgrade("/v1/feed").replace(b"Version: 13", b"Version: 8"),
            id="unsupported Sec-WebSocket-Version",
        ),
    ],
)
def test_an_unparseable_request_is_answered_with_a_json_error(
    served: Served, request_bytes: bytes
) -> None:
    # Every error body is {detail, reason}, also the ones uvicorn writes itself
    # for requests that never reach the application.
    answer, closed = raw_exchange(served.port, request_bytes)
    assert closed, f"connection left open; received {answer[:200]!r}"
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"content-type: application/json" in head.lower(), head
    error = json.loads(body)
    assert error["reason"] == "bad_request"
    assert error["detail"]


def test_a_normal_handshake_still_upgrades(served: Served, make_token: Callable[..., str]) -> None:
    token = make_token("tenant-a")
    request = _upgrade("/v1/feed", f"Authorization: Bearer {token}\r\n")
    with socket.create_connection(("127.0.0.1", served.port), timeout=ANSWER_TIMEOUT) as sock:
        sock.sendall(request)
        head = sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 101 ")
