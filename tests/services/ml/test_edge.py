"""Hardened edge 3 on a real ml-services server: no body is read before the token
verifies, and none beyond the cap, declared or chunked.

The requests are written by hand on a TCP socket so that the test controls
exactly how much of the body exists: the server must answer while the rest
of the body is still unsent. Before the edge guard, FastAPI read (and
parsed) the whole body before authenticating, so these tests waited for a
body that never came and timed out.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from services.common.auth import issue_token
from services.common.metrics import new_registry
from services.ml.config import MLSettings
from services.ml.main import create_app
from tests.services.serving import serving

ANSWER_TIMEOUT = 10.0
CAP = 65_536


@pytest_asyncio.fixture
async def server(
    settings_env: dict[str, str], artifact_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[int, MLSettings]]:
    monkeypatch.setenv("ML_MODEL_URI", str(artifact_path))
    monkeypatch.setenv("MAX_REQUEST_BODY_BYTES", str(CAP))
    settings = MLSettings.from_env()
    async with serving(create_app(settings, registry=new_registry())) as port:
        yield port, settings


async def _answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, Any]]:
    status_line = await asyncio.wait_for(reader.readline(), ANSWER_TIMEOUT)
    status = int(status_line.split()[1])
    length = 0
    while (line := await asyncio.wait_for(reader.readline(), ANSWER_TIMEOUT)) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    body = await asyncio.wait_for(reader.readexactly(length), ANSWER_TIMEOUT)
    return status, json.loads(body)


async def _post(
    port: int, headers: dict[str, str], chunks: list[bytes], *, chunked: bool
) -> tuple[int, dict[str, Any]]:
    """Send the head and ``chunks`` of a body that is never finished; read the answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(
        f"POST /v1/leads/score HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\n{head}\r\n".encode()
    )
    for chunk in chunks:
        writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk) if chunked else chunk)
    await writer.drain()
    try:
        return await _answer(reader)
    finally:
        writer.close()


def _bearer(settings: MLSettings) -> dict[str, str]:
    return {
        "Authorization": "Bearer "
        + issue_token(settings, tenant_id="t1", subject="crm", scopes=("leads:score",))
    }


async def test_unauthenticated_chunked_body_is_401_unread(server: tuple[int, MLSettings]) -> None:
    port, _ = server
    status, body = await _post(port, {"Transfer-Encoding": "chunked"}, [b"[" * 4096], chunked=True)
    assert status == 401
    assert body["reason"] == "missing_token"


async def test_unauthenticated_declared_huge_body_is_401_unread(
    server: tuple[int, MLSettings],
) -> None:
    port, _ = server
    status, body = await _post(port, {"Content-Length": "300000000"}, [b"{"], chunked=False)
    assert status == 401
    assert body["reason"] == "missing_token"


async def test_forged_token_with_a_body_is_401_unread(server: tuple[int, MLSettings]) -> None:
    port, _ = server
    headers = {"Transfer-Encoding": "chunked", "Authorization": "Bearer not.a.token"}
    status, body = await _post(port, headers, [b"{" * 100], chunked=True)
    assert status == 401
    assert body["reason"] == "malformed_token"


async def test_authenticated_declared_oversized_body_is_413_unread(
    server: tuple[int, MLSettings],
) -> None:
    port, settings = server
    headers = {**_bearer(settings), "Content-Length": "300000000"}
    status, body = await _post(port, headers, [], chunked=False)
    assert status == 413
    assert body["reason"] == "body_too_large"
    assert f"{CAP} bytes (MAX_REQUEST_BODY_BYTES)" in body["detail"]


async def test_authenticated_chunked_body_stops_at_the_cap(
    server: tuple[int, MLSettings],
) -> None:
    port, settings = server
    headers = {**_bearer(settings), "Transfer-Encoding": "chunked"}
    # Just past the cap, and the body never ends: the answer must come anyway.
    chunks = [b" " * 16_384] * (CAP // 16_384 + 1)
    status, body = await _post(port, headers, chunks, chunked=True)
    assert status == 413
    assert body["reason"] == "body_too_large"


async def test_malformed_json_without_a_token_is_401_with_one_422(
    server: tuple[int, MLSettings],
) -> None:
    port, settings = server
    status, body = await _post(port, {"Content-Length": "9"}, [b"{not json"], chunked=False)
    assert (status, body["reason"]) == (401, "missing_token")
    headers = {**_bearer(settings), "Content-Length": "9"}
    status, body = await _post(port, headers, [b"{not json"], chunked=False)
    assert (status, body["reason"]) == (422, "validation_error")
