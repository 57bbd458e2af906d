"""The LeadConnector (GoHighLevel) adapter: conversations messages and contact tasks.

API v2 (``services.leadconnectorhq.com``), a private integration token as
bearer (GHL_API_KEY) and the ``Version`` header the API requires:

- SMS and email: ``POST /conversations/messages`` with ``type`` ``SMS`` or
  ``Email`` and the contact id;
- a task for the lead's agent: ``POST /contacts/{contactId}/tasks``.

Every request carries the outbox row's ``Idempotency-Key``: a retry after an
ambiguous failure (a timeout after the CRM accepted, a lost answer) sends the
same key, so a CRM or gateway that honours the header answers the first
result instead of sending twice (docs/churn.md says what happens with one that
does not). Failures are classified for the workflow: `RetryableSendError`
(429 with its ``Retry-After``, 5xx, timeouts, connection errors) and
`PermanentSendError` (other 4xx, and any other answer that is not a 2xx,
such as a redirect: retrying cannot help).
"""

from __future__ import annotations

import asyncio
import email.utils
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import httpx

from services.churn.stages import Channel

API_VERSION: Final = "2021-04-15"
MAX_RETRY_AFTER_SECONDS: Final = 3600.0


class SendError(Exception):
    """A send failed; ``detail`` is safe to store and show to operators."""

    def __init__(self, detail: str) -> None:
        # It quotes the CRM's answer, stored as the row's last_error: a NUL
        # there made that UPDATE fail, and the refused send was retried as an
        # interrupted one until it was dead-lettered as such.
        self.detail = detail[:500].replace("\x00", "\ufffd")
        super().__init__(self.detail)


class RetryableSendError(SendError):
    """Worth retrying; ``retry_after`` is the CRM's own hint in seconds, if it gave one."""

    def __init__(self, detail: str, *, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class PermanentSendError(SendError):
    """The CRM refused the request itself; the same request will fail again."""


@dataclass(frozen=True, slots=True)
class Delivery:
    """What the CRM answered for an accepted send."""

    provider_id: str | None


@dataclass(frozen=True, slots=True)
class SendRequest:
    """One outbox row to deliver."""

    channel: Channel
    contact_id: str
    agent_id: str | None
    stage: str
    idempotency_key: str


_TEXT: Final[dict[str, str]] = {
    "nudge": "Hi! Just checking in: are you still looking? Reply any time, we're here to help.",
    "intervene": (
        "We found a few new homes that match what you were looking for. "
        "Want us to send them over or set up a quick call?"
    ),
    "escalate": (
        "It's been a while: we'd love to help you find the right place. "
        "Reply with a good time and your agent will call you."
    ),
}


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP date), bounded."""
    if not value:
        return None
    value = value.strip()
    seconds: float | None
    # ASCII digits only (RFC 9110's delay-seconds): str.isdigit() also accepts
    # "²", which float() then refuses, and other scripts' digits.
    if value.isascii() and value.isdigit():
        seconds = float(value)
    else:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)


class LeadConnectorClient:
    """Sends outbox rows to LeadConnector over one pooled ``httpx.AsyncClient``."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str,
        timeout: float,
        transport: httpx.AsyncBaseTransport | None = None,
        connections: int = 20,
    ) -> None:
        """``connections``: kept alive for reuse, one per send that may run at once.

        httpx keeps 20 by default; a worker running more sends at once closed
        the extra connections after each send and opened new ones for the next
        (a TCP, and with the real API a TLS, handshake per send).
        """
        self.timeout = timeout
        self._client = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(timeout),
            headers={
                "Authorization": f"Bearer {api_key}",
                "Version": API_VERSION,
                "Accept": "application/json",
            },
            transport=transport,
            limits=httpx.Limits(
                max_connections=max(connections, 100), max_keepalive_connections=connections
            ),
            # The workflow retries with backoff and the idempotency key.
            follow_redirects=False,
        )

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    def _request(self, send: SendRequest) -> tuple[str, dict[str, Any]]:
        text = _TEXT.get(send.stage, _TEXT["nudge"])
        if send.channel == "sms":
            return "/conversations/messages", {
                "type": "SMS",
                "contactId": send.contact_id,
                "message": text,
            }
        if send.channel == "email":
            return "/conversations/messages", {
                "type": "Email",
                "contactId": send.contact_id,
                "subject": "Still looking for your next home?",
                "html": f"<p>{text}</p>",
            }
        due = (datetime.now(UTC) + timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M:%SZ")
        body: dict[str, Any] = {
            "title": f"Churn risk ({send.stage}): call this lead today",
            "body": "The churn model flagged this lead; a personal call works best now.",
            "dueDate": due,
            "completed": False,
        }
        if send.agent_id:
            body["assignedTo"] = send.agent_id
        return f"/contacts/{send.contact_id}/tasks", body

    async def send(self, send: SendRequest) -> Delivery:
        """Deliver one message or task; raises a `SendError` subclass on failure."""
        path, body = self._request(send)
        try:
            # The whole send, not each read: httpx's timeout applies per
            # operation, so a slow answer could run on; delivery.py relies on
            # a send being over ``timeout`` after it began.
            async with asyncio.timeout(self.timeout):
                response = await self._client.post(
                    path, json=body, headers={"Idempotency-Key": send.idempotency_key}
                )
        except (httpx.TimeoutException, TimeoutError) as exc:
            raise RetryableSendError(f"timeout ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise RetryableSendError(f"connection failed ({type(exc).__name__})") from None
        status = response.status_code
        if status == 429:
            raise RetryableSendError(
                "rate limited (429)",
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        if status >= 500 or status in (408, 409):
            raise RetryableSendError(
                f"CRM error {status}",
                retry_after=parse_retry_after(response.headers.get("retry-after")),
            )
        if status >= 400:
            raise PermanentSendError(f"CRM refused the request ({status}): {response.text[:200]}")
        if not 200 <= status < 300:
            # Redirects are not followed (the send must not go elsewhere): a
            # 3xx means nothing was sent, most likely a wrong base URL.
            raise PermanentSendError(
                f"CRM answered {status}, not a delivery (redirects are not followed): "
                "check GHL_BASE_URL"
            )
        return Delivery(provider_id=_provider_id(response))


def _provider_id(response: httpx.Response) -> str | None:
    try:
        payload = response.json()
    except ValueError:
        return None
    if not isinstance(payload, dict):
        return None
    for key in ("messageId", "id"):
        if isinstance(payload.get(key), str):
            return str(payload[key])[:255]
    task = payload.get("task")
    if isinstance(task, dict) and isinstance(task.get("id"), str):
        return str(task["id"])[:255]
    return None
