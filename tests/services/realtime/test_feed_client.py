"""``enterprisehub feed``, the terminal client of the feed, run as a user runs it."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable

import httpx
import pytest

from services.common.scopes import CRM_INGEST, FEED_READ
from services.common.scoring import LeadFeatures
from tests.services.realtime.conftest import RECEIVE_TIMEOUT, Replica, event_body, post_event

pytestmark = pytest.mark.integration


async def test_a_closed_output_ends_the_client_instead_of_reconnecting(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
) -> None:
    """``feed | head -1``: once the reader has gone, the next event's line cannot be
    written. The client took that BrokenPipeError for a lost connection and
    reconnected every few seconds, forever, printing to nobody."""
    token = make_token("tenant-a", scopes=(FEED_READ,))
    client = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        "feed",
        "--tenant",
        "tenant-a",
        "--url",
        replica.ws,
        "--token",
        token,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert client.stdout is not None
    assert client.stderr is not None
    try:
        async with asyncio.timeout(RECEIVE_TIMEOUT):
            connected = await client.stdout.readline()
        assert connected.startswith(b"-- connected"), connected
        # What `head -1` does after its line: close the pipe's reading end.
        client.stdout._transport.close()  # type: ignore[attr-defined]
        crm = make_token("tenant-a", scopes=(CRM_INGEST,))
        for number in range(3):
            body = event_body(sample_leads[0], lead_id=f"lead-{number}")
            await post_event(http, replica, crm, body)
        async with asyncio.timeout(RECEIVE_TIMEOUT):
            code = await client.wait()
    finally:
        if client.returncode is None:
            client.kill()
            await client.wait()
    errors = (await client.stderr.read()).decode()
    assert code == 0, errors
    assert "reconnecting" not in errors
    assert "Traceback" not in errors, errors
    assert "Exception ignored" not in errors, errors
