"""``enterprisehub feed``, the terminal client of the feed, run as a user runs it."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from asyncio.subprocess import Process
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest

from services.common.redis import Redis
from services.common.scopes import CRM_INGEST, FEED_READ
from services.common.scoring import LeadFeatures
from services.realtime.config import RealtimeSettings
from services.realtime.feed_client import TOKEN_ENV, printable
from services.realtime.frames import encode_event_body
from services.realtime.stream import EventStream
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


async def _start_client(replica: Replica, *options: str, env: dict[str, str]) -> Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        "feed",
        "--tenant",
        "tenant-a",
        "--url",
        replica.ws,
        *options,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )


async def _stop(client: Process) -> None:
    if client.returncode is None:
        client.kill()
        await client.wait()


@pytest.fixture
async def replica_without_leeway(
    replicas: Callable[..., Awaitable[Replica]], realtime_settings: RealtimeSettings
) -> Replica:
    """A replica whose tokens expire on the second (JWT_LEEWAY_SECONDS=0)."""
    return await replicas(realtime_settings.model_copy(update={"jwt_leeway_seconds": 0.0}))


async def test_a_client_that_minted_its_token_renews_it_when_the_feed_closes_for_expiry(
    replica_without_leeway: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
) -> None:
    """The feed closes a socket whose token expired (1008 ``expired_token``), a
    code the client took for "refused, give up": a client minting its own
    tokens mints a fresh one and resumes instead."""
    replica = replica_without_leeway
    env = {key: value for key, value in os.environ.items() if key != TOKEN_ENV}
    # The client mints tokens of min(1 h, JWT_MAX_TTL_FEED_READ): 2 s here.
    env["JWT_MAX_TTL_FEED_READ"] = "2"
    client = await _start_client(replica, "--count", "1", env=env)
    assert client.stdout is not None
    assert client.stderr is not None
    try:
        async with asyncio.timeout(RECEIVE_TIMEOUT):
            first = await client.stdout.readline()
            # The second socket, opened with a fresh token after the close.
            second = await client.stdout.readline()
        assert first.startswith(b"-- connected"), first
        assert second.startswith(b"-- connected"), second + await client.stderr.read()
        crm = make_token("tenant-a", scopes=(CRM_INGEST,))
        await post_event(http, replica, crm, event_body(sample_leads[0], lead_id="after-renewal"))
        async with asyncio.timeout(RECEIVE_TIMEOUT):
            line = await client.stdout.readline()
            code = await client.wait()
    finally:
        await _stop(client)
    assert b"after-renewal" in line
    assert code == 0, (await client.stderr.read()).decode()


async def test_a_client_given_a_token_says_it_expired_and_stops(
    replica_without_leeway: Replica, make_token: Callable[..., str]
) -> None:
    """A token passed in cannot be renewed: reconnecting with it is refused."""
    # Long enough for the client's interpreter to start and connect.
    token = make_token("tenant-a", ttl_seconds=6, scopes=(FEED_READ,))
    client = await _start_client(replica_without_leeway, "--token", token, env=dict(os.environ))
    assert client.stdout is not None
    assert client.stderr is not None
    try:
        async with asyncio.timeout(RECEIVE_TIMEOUT):
            connected = await client.stdout.readline()
        assert connected.startswith(b"-- connected"), connected + await client.stderr.read()
        async with asyncio.timeout(RECEIVE_TIMEOUT):
            code = await client.wait()
    finally:
        await _stop(client)
    errors = (await client.stderr.read()).decode()
    assert code == 1, errors
    assert "the token expired" in errors
    assert "reconnecting" not in errors


# Clears the screen, sets the window title, rings the bell, returns to the
# line's start to overwrite it, a one-character (C1) CSI and a bidi override.
KEPT = "Zoë 東京 😀"
HOSTILE_LEAD = "\x1b[2J\x1b]0;owned\x07lead\rfake line\x9b31m\u202eevil " + KEPT
HOSTILE_AGENT = "agent-1\x1b[8m"
CONTROLS = [chr(code) for code in (*range(0x00, 0x20), *range(0x7F, 0xA0))]


def test_every_c0_and_c1_control_is_escaped_and_printable_text_is_kept() -> None:
    text = "".join(CONTROLS) + KEPT + "\u2028\u202e\u2066"
    shown = printable(text)
    assert not any(char in shown for char in (*CONTROLS, "\u2028", "\u202e", "\u2066"))
    assert shown.startswith("\\u0000\\u0001")
    assert "\\u001b" in shown
    assert "\\u009b" in shown
    assert shown.endswith(KEPT + "\\u2028\\u202e\\u2066")


async def _publish_as_before_ids_were_checked(
    redis: Redis, *, lead_id: str, agent_id: str, data: dict[str, Any]
) -> None:
    # The ingest now refuses such ids (422), but the events it accepted before
    # are still in the tenant's stream and in Postgres, and a client resuming
    # after them is sent them again: the client must not trust what it reads.
    accepted_at = time.time()
    event_id = str(uuid.uuid4())
    body = encode_event_body(
        event_id=event_id,
        lead_id=lead_id,
        event_type="lead.updated",
        agent_id=agent_id,
        score=0.5,
        model_version="before",
        data=data,
        accepted_at=accepted_at,
    )
    await EventStream(redis, maxlen=1000).publish(
        tenant_id="tenant-a",
        event_id=event_id,
        agent_id=agent_id,
        accepted_at=accepted_at,
        body=body,
    )


@pytest.mark.parametrize("raw", [False, True], ids=["lines", "json"])
async def test_an_event_cannot_send_escape_sequences_to_the_operators_terminal(
    replica: Replica,
    redis_client: Redis,
    make_unchecked_token: Callable[..., str],
    raw: bool,
) -> None:
    """The ingest took lead and agent ids as free text, and the client printed
    them as they came: an event could clear the operator's screen, retitle the
    window or overwrite a line with a fake one. The ingest refuses such ids now,
    but what it stored before is still delivered; and ``data`` stays free text."""
    # The event is for that agent only: the feed's token is that agent's.
    token = make_unchecked_token("tenant-a", HOSTILE_AGENT, (FEED_READ,))
    options = ["--token", token, "--count", "1", *(["--json"] if raw else [])]
    client = await _start_client(replica, *options, env=dict(os.environ))
    assert client.stdout is not None
    try:
        async with asyncio.timeout(RECEIVE_TIMEOUT):
            connected = await client.stdout.readline()
            assert b"connected" in connected or b'"ready"' in connected, connected
            await _publish_as_before_ids_were_checked(
                redis_client,
                lead_id=HOSTILE_LEAD,
                agent_id=HOSTILE_AGENT,
                data={"note": HOSTILE_LEAD},
            )
            output, _ = await client.communicate()
    finally:
        await _stop(client)
    text = output.decode()
    assert text.endswith("\n")
    assert not any(char in text[:-1] for char in CONTROLS)
    assert "\u202e" not in text
    if raw:
        # Still the event's JSON, with its fields as they were sent.
        event = orjson.loads(text)
        assert (event["lead_id"], event["agent_id"]) == (HOSTILE_LEAD, HOSTILE_AGENT)
        assert event["data"] == {"note": HOSTILE_LEAD}
        assert KEPT in text
    else:
        shown = "\\u001b[2J\\u001b]0;owned\\u0007lead\\u000dfake line\\u009b31m\\u202eevil "
        assert shown + KEPT in text
        assert "agent-1\\u001b[8m" in text
