"""How the LeadConnector client reads the CRM's answers: only a 2xx is a delivery."""

from __future__ import annotations

import httpx
import pytest

from services.churn.crm import (
    Delivery,
    LeadConnectorClient,
    PermanentSendError,
    RetryableSendError,
    SendRequest,
)

REQUEST = SendRequest(
    channel="sms", contact_id="c-1", agent_id=None, stage="nudge", idempotency_key="k-1"
)


def _client(response: httpx.Response) -> LeadConnectorClient:
    return LeadConnectorClient(
        api_key="key",
        base_url="https://services.leadconnectorhq.com",
        timeout=5,
        transport=httpx.MockTransport(lambda request: response),
    )


async def test_a_2xx_is_a_delivery_with_the_crm_id() -> None:
    client = _client(httpx.Response(201, json={"messageId": "m-1"}))
    try:
        assert await client.send(REQUEST) == Delivery(provider_id="m-1")
    finally:
        await client.aclose()


@pytest.mark.parametrize("status", [301, 302, 304, 307, 308])
async def test_a_redirect_is_not_a_delivery(status: int) -> None:
    # Redirects are not followed (a send must not be replayed elsewhere), and
    # a 3xx was read as a delivery: the row was recorded delivered, the
    # intervention counted, while no message had been sent.
    answer = httpx.Response(status, headers={"Location": "https://login.example/"})
    client = _client(answer)
    try:
        with pytest.raises(PermanentSendError) as refused:
            await client.send(REQUEST)
    finally:
        await client.aclose()
    assert f"CRM answered {status}," in refused.value.detail
    assert "GHL_BASE_URL" in refused.value.detail


async def test_a_5xx_stays_retryable() -> None:
    client = _client(httpx.Response(503, headers={"Retry-After": "7"}))
    try:
        with pytest.raises(RetryableSendError) as failed:
            await client.send(REQUEST)
    finally:
        await client.aclose()
    assert failed.value.retry_after == 7


async def test_a_refusal_quoting_a_nul_is_storable() -> None:
    client = _client(httpx.Response(422, content=b'{"message": "bad\x00contact"}'))
    try:
        with pytest.raises(PermanentSendError) as refused:
            await client.send(REQUEST)
    finally:
        await client.aclose()
    assert "\x00" not in refused.value.detail
    assert "bad\ufffdcontact" in refused.value.detail


@pytest.mark.parametrize("retry_after", ["\u00b2".encode(), "\u0663".encode()])
async def test_a_retry_after_of_non_ascii_digits_is_ignored_not_a_crash(
    retry_after: bytes,
) -> None:
    # str.isdigit() accepts "²" (float() then raised) and "٣" (read as 3 s):
    # the ValueError escaped send() as no SendError, failing the delivery job.
    client = _client(httpx.Response(503, headers=[(b"Retry-After", retry_after)]))
    try:
        with pytest.raises(RetryableSendError) as failed:
            await client.send(REQUEST)
    finally:
        await client.aclose()
    assert failed.value.retry_after is None
