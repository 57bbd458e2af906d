"""Authentication of the webhook and the feed: missing, expired, forged, other tenant."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx
import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from services.common.scoring import LeadFeatures
from tests.conftest import JWT_KID
from tests.services.realtime.conftest import Replica, event_body, open_feed, post_event

pytestmark = pytest.mark.integration

FORGERY_KEY = "not-the-service-key-but-long-enough-0123456789"


def forged_token(tenant_id: str) -> str:
    """A well-formed token with the right kid, signed with a key the service lacks."""
    claims = {"tid": tenant_id, "sub": "agent-1", "exp": int(time.time()) + 600}
    return jwt.encode(claims, FORGERY_KEY, algorithm="HS256", headers={"kid": JWT_KID})


async def _ingest_status(
    http: httpx.AsyncClient, replica: Replica, lead: LeadFeatures, headers: dict[str, str]
) -> httpx.Response:
    return await http.post(
        f"{replica.http}/v1/leads/events", json=event_body(lead), headers=headers
    )


async def test_ingest_without_token_is_401(
    replica: Replica, http: httpx.AsyncClient, sample_leads: list[LeadFeatures]
) -> None:
    response = await _ingest_status(http, replica, sample_leads[0], {})
    assert response.status_code == 401
    assert response.json()["reason"] == "missing_token"


async def test_ingest_with_expired_token_is_401(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
) -> None:
    token = make_token("tenant-a", now=time.time() - 7200)
    response = await _ingest_status(
        http, replica, sample_leads[0], {"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401
    assert response.json()["reason"] == "expired_token"


async def test_ingest_with_forged_token_is_401(
    replica: Replica, http: httpx.AsyncClient, sample_leads: list[LeadFeatures]
) -> None:
    headers = {"Authorization": f"Bearer {forged_token('tenant-a')}"}
    response = await _ingest_status(http, replica, sample_leads[0], headers)
    assert response.status_code == 401
    assert response.json()["reason"] == "bad_signature"


async def test_ingest_checks_the_token_before_the_body(
    replica: Replica, http: httpx.AsyncClient
) -> None:
    response = await http.post(f"{replica.http}/v1/leads/events", content=b"{not json")
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("make_bad_token", "reason"),
    [
        (None, "missing_token"),
        ("expired", "expired_token"),
        ("forged", "bad_signature"),
    ],
)
async def test_feed_refuses_bad_tokens_before_the_upgrade(
    replica: Replica, make_token: Callable[..., str], make_bad_token: str | None, reason: str
) -> None:
    headers = {}
    if make_bad_token == "expired":
        headers["Authorization"] = f"Bearer {make_token('tenant-a', now=time.time() - 7200)}"
    elif make_bad_token == "forged":
        headers["Authorization"] = f"Bearer {forged_token('tenant-a')}"
    with pytest.raises(InvalidStatus) as refused:
        async with connect(replica.ws, additional_headers=headers):
            pass
    assert refused.value.response.status_code == 401
    assert reason.encode() in refused.value.response.body


async def test_another_tenants_token_does_not_see_the_events(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
) -> None:
    async with (
        open_feed(replica, make_token("tenant-b")) as other,
        open_feed(replica, make_token("tenant-a")) as own,
    ):
        await post_event(http, replica, make_token("tenant-a"), event_body(sample_leads[0]))
        marker = await post_event(
            http, replica, make_token("tenant-b"), event_body(sample_leads[1], lead_id="b-1")
        )
        await own.next_event()
        # Frames arrive in stream order: tenant B's first event is its own.
        seen_by_b = await other.next_event()
    assert seen_by_b["event_id"] == marker["event_id"]


async def test_another_tenants_event_id_cannot_be_used_to_resume(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
) -> None:
    ack = await post_event(http, replica, make_token("tenant-a"), event_body(sample_leads[0]))
    conn = await connect(
        f"{replica.ws}?last_event_id={ack['event_id']}",
        additional_headers={"Authorization": f"Bearer {make_token('tenant-b')}"},
    )
    async with conn:
        await conn.wait_closed()
    assert conn.close_code == 1008
    assert conn.close_reason == "unknown last_event_id"


def _token_with_header(header: dict[str, object]) -> str:
    import base64
    import json

    def part(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    claims = {"tid": "tenant-a", "sub": "x", "exp": int(time.time()) + 60}
    return f"{part(header)}.{part(claims)}.c2lnbmF0dXJl"


@pytest.mark.parametrize(
    "header",
    [
        {"alg": "HS256", "kid": ["a", "b"]},
        {"alg": "HS256", "kid": {"k": 1}},
        {"alg": "HS256", "kid": 7},
        {"alg": ["HS256"], "kid": JWT_KID},
        {"alg": None},
    ],
)
async def test_a_token_with_a_malformed_header_is_401_everywhere(
    replica: Replica,
    http: httpx.AsyncClient,
    sample_leads: list[LeadFeatures],
    header: dict[str, object],
) -> None:
    token = _token_with_header(header)
    response = await _ingest_status(
        http, replica, sample_leads[0], {"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401, response.text
    assert response.json()["reason"] in {"malformed_token", "unsupported_algorithm"}
    with pytest.raises(InvalidStatus) as refused:
        async with connect(replica.ws, additional_headers={"Authorization": f"Bearer {token}"}):
            pass
    assert refused.value.response.status_code == 401


@pytest.mark.parametrize("path", ["/v1/leads/events", "/v1/leads/events/batch"])
async def test_a_feed_token_cannot_post_events(
    replica: Replica,
    http: httpx.AsyncClient,
    make_token: Callable[..., str],
    sample_leads: list[LeadFeatures],
    path: str,
) -> None:
    event = event_body(sample_leads[0])
    body = {"events": [event]} if path.endswith("batch") else event
    for scopes in (("feed:read",), ("leads:score",), ("operator",)):
        token = make_token("tenant-a", scopes=scopes)
        response = await http.post(
            f"{replica.http}{path}", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 403, (scopes, response.text)
        assert response.json()["reason"] == "insufficient_scope"
        assert 'scope="crm:ingest"' in response.headers["www-authenticate"]
    crm = make_token("tenant-a", subject="crm", scopes=("crm:ingest",))
    ok = await http.post(
        f"{replica.http}{path}", json=body, headers={"Authorization": f"Bearer {crm}"}
    )
    assert ok.status_code == 202
