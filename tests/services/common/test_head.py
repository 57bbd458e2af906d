"""HEAD is answered wherever GET is: the GET's status and headers, no body."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.services.serving import serving

AppClient = Callable[[FastAPI], Any]


async def test_head_of_a_get_route_is_its_headers_without_the_body(
    build_app: Any, app_client: AppClient
) -> None:
    """``curl -I /health`` and uptime monitors probing with HEAD got 405."""
    async with app_client(build_app()) as client:
        get = await client.get("/health")
        head = await client.head("/health")
        metrics = (await client.get("/metrics")).text
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-type"] == get.headers["content-type"]
    # (Both report the uptime, whose digits may differ in number.)
    assert abs(int(head.headers["content-length"]) - len(get.content)) <= 2
    assert 'http_requests_total{method="HEAD",route="/health",status="200"} 1.0' in metrics


async def test_head_of_a_route_without_get_is_still_405(
    build_app: Any, app_client: AppClient
) -> None:
    async with app_client(build_app()) as client:
        answer = await client.head("/v1/test-events/x/seen")
    assert (answer.status_code, answer.content) == (405, b"")
    assert "POST" in answer.headers["allow"]


async def test_head_over_a_real_server_is_answered_without_an_error(
    build_app: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """uvicorn reads the method from the scope to leave the body out: a HEAD it
    saw as a GET with an empty body failed with "Response content shorter than
    Content-Length", an error in the log and a dropped connection per probe
    (which the client, having read the headers, did not notice)."""
    server_log = logging.getLogger("uvicorn")
    async with (
        serving(build_app()) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
    ):
        # After the start, which configures uvicorn's loggers (they do not
        # propagate to the root, where caplog listens).
        server_log.addHandler(caplog.handler)
        try:
            heads = [await client.head("/health") for _ in range(2)]
        finally:
            server_log.removeHandler(caplog.handler)
    assert [(h.status_code, h.content) for h in heads] == [(200, b""), (200, b"")]
    # The GET's length, which varies with the uptime it reports.
    assert int(heads[0].headers["content-length"]) > 20
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == []
