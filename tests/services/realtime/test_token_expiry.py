"""A feed socket lives no longer than its token: closed 1008 ``expired_token`` at expiry."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import httpx
import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from services.common.scopes import CRM_INGEST, FEED_READ
from services.common.scoring import LeadFeatures
from services.realtime.config import RealtimeSettings
from tests.services.realtime.conftest import Replica, event_body, open_feed, post_event

pytestmark = pytest.mark.integration

# Long enough for the handshake and one event, short enough for a test.
SHORT_TTL = 3.0


async def test_a_socket_is_closed_when_its_token_expires_and_resumes_with_a_fresh_one(
    replicas: Callable[..., Awaitable[Replica]],
    realtime_settings: RealtimeSettings,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
) -> None:
    """The token was checked at the handshake only: a socket opened with a
    token of 2-3 s kept streaming for as long as it stayed open, while a
    reconnect with that token got 401."""
    # No leeway, so that the handshake's verdict and the close agree on the
    # second (with it, both move by JWT_LEEWAY_SECONDS).
    replica = await replicas(realtime_settings.model_copy(update={"jwt_leeway_seconds": 0.0}))
    crm = make_token("tenant-a", scopes=(CRM_INGEST,))
    short = make_token("tenant-a", ttl_seconds=SHORT_TTL, scopes=(FEED_READ,))
    expires = jwt.decode(short, options={"verify_signature": False})["exp"]
    async with open_feed(replica, short) as feed:
        before = await post_event(http, replica, crm, event_body(sample_leads[0], lead_id="before"))
        assert (await feed.next_event())["event_id"] == before["event_id"]
        # Heartbeats keep coming until the close (RECEIVE_TIMEOUT bounds the wait).
        with pytest.raises(ConnectionClosed):
            await feed.until_closed()
    closed_at = time.time()
    assert feed.conn.close_code == 1008
    assert feed.conn.close_reason == "expired_token"
    # Not before the token expired (a second's slack for clocks' rounding).
    assert closed_at >= expires - 1.0

    missed = await post_event(http, replica, crm, event_body(sample_leads[1], lead_id="missed"))
    with pytest.raises(InvalidStatus) as refused:
        async with connect(replica.ws, additional_headers={"Authorization": f"Bearer {short}"}):
            pass
    assert refused.value.response.status_code == 401
    assert b"expired_token" in refused.value.response.body

    fresh = make_token("tenant-a", scopes=(FEED_READ,))
    async with open_feed(replica, fresh, last_event_id=before["stream_id"]) as resumed:
        pass
    assert [event["event_id"] for event in resumed.replayed] == [missed["event_id"]]
