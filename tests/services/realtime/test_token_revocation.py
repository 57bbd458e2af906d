"""A revoked token stops working in websocket-manager: the CRM webhook answers 401
``revoked_token``, and a feed socket opened with it is closed 1008 ``revoked_token``
while it is open, not at its next handshake (which a leaked token's holder, reading
for hours, never makes)."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from services.common.database import Database
from services.common.scopes import CRM_INGEST, FEED_READ
from services.common.scoring import LeadFeatures
from tests.revocations import FAST_REFRESH, eventually, revoke_now, token_id
from tests.services.realtime.conftest import Replica, event_body, open_feed, post_event

pytestmark = pytest.mark.integration


@pytest.fixture
def realtime_env(realtime_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The replicas read the revocations every FAST_REFRESH seconds."""
    monkeypatch.setenv("AUTH_REVOCATION_REFRESH_SECONDS", str(FAST_REFRESH))
    return {**realtime_env, "AUTH_REVOCATION_REFRESH_SECONDS": str(FAST_REFRESH)}


async def test_a_feed_socket_is_closed_when_its_token_is_revoked(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
    db: Database,
) -> None:
    crm = make_token("tenant-a", scopes=(CRM_INGEST,))
    leaked = make_token("tenant-a", subject="agent-1", scopes=(FEED_READ,))
    colleague = make_token("tenant-a", subject="agent-2", scopes=(FEED_READ,))
    async with open_feed(replica, leaked) as feed, open_feed(replica, colleague) as other:
        before = await post_event(http, replica, crm, event_body(sample_leads[0], lead_id="a"))
        assert (await feed.next_event())["event_id"] == before["event_id"]
        assert (await other.next_event())["event_id"] == before["event_id"]

        await revoke_now(db, "tenant-a", jti=token_id(leaked))
        # Heartbeats keep coming until the close (RECEIVE_TIMEOUT bounds the wait).
        with pytest.raises(ConnectionClosed):
            await feed.until_closed()
        assert feed.conn.close_code == 1008
        assert feed.conn.close_reason == "revoked_token"

        # The colleague's socket, of another token, is untouched.
        after = await post_event(http, replica, crm, event_body(sample_leads[1], lead_id="b"))
        assert (await other.next_event())["event_id"] == after["event_id"]

    with pytest.raises(InvalidStatus) as refused:
        async with connect(replica.ws, additional_headers={"Authorization": f"Bearer {leaked}"}):
            pass
    assert refused.value.response.status_code == 401
    assert b"revoked_token" in refused.value.response.body


async def test_a_revoked_crm_token_is_refused_by_the_webhook(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
    db: Database,
) -> None:
    """A CRM token may live 30 days (365 at most): until now, a leaked one posted events
    into the tenant's feed for that long."""
    leaked = make_token("tenant-a", subject="crm-integration", scopes=(CRM_INGEST,))
    rotated = make_token("tenant-a", subject="crm-integration-2", scopes=(CRM_INGEST,))
    body = event_body(sample_leads[0], lead_id="lead-9")
    await post_event(http, replica, leaked, body)  # verified, and remembered
    await revoke_now(db, "tenant-a", subject="crm-integration")

    async def refused() -> bool:
        response = await http.post(
            f"{replica.http}/v1/leads/events",
            json=body,
            headers={"Authorization": f"Bearer {leaked}"},
        )
        return response.status_code == 401 and response.json()["reason"] == "revoked_token"

    await eventually(refused)
    await post_event(http, replica, rotated, body)
