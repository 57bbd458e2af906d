"""Reading a tenant's live feed as any client does: ``WS /v1/feed`` with its token.

`read_feed` connects with the signed-in user's token, resumes after
``since`` (a stream id, or live from now if None), collects the replayed
events up to the ``ready`` frame, listens for live ones for
``listen_seconds``, and returns them with the cursor to resume from next
time. The dashboards hold no privileged path
to the data: what a page shows is what the tenant's own feed delivers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

MAX_FRAME_BYTES = 2**20

log = logging.getLogger(__name__)


class FeedUnavailable(RuntimeError):  # noqa: N818 - reads as the condition it names
    """The feed refused or could not be reached; ``reason`` is for the page."""

    def __init__(self, reason: str, *, code: int | None = None) -> None:
        self.reason = reason
        #: The feed's close code when it closed the socket (1008: the cursor or
        #: token was refused; 1013: try again later), else None.
        self.code = code
        super().__init__(reason)


@dataclass
class FeedRead:
    """Events read in stream order, the cursor after them, and notices."""

    events: list[dict[str, Any]] = field(default_factory=list)
    cursor: str | None = None
    truncated: bool = False


def stream_id_at(epoch_seconds: float) -> str:
    """The feed cursor of a point in time (Redis stream ids start with milliseconds)."""
    return f"{max(0, int(epoch_seconds * 1000))}-0"


def _events_of(frame: dict[str, Any]) -> list[dict[str, Any]]:
    if frame.get("type") == "lead_event":
        return [frame]
    if frame.get("type") == "lead_events":
        return list(frame.get("events", []))
    return []


async def read_feed(
    url: str,
    token: str,
    *,
    since: str | None,
    listen_seconds: float,
    open_timeout: float,
) -> FeedRead:
    """Replay after ``since`` and listen ``listen_seconds`` for live events.

    ``open_timeout`` bounds the handshake and the wait for the ``ready``
    frame that ends the replay.
    """
    target = url if since is None else f"{url}?last_event_id={since}"
    result = FeedRead(cursor=since)
    try:
        async with connect(
            target,
            additional_headers={"Authorization": f"Bearer {token}"},
            open_timeout=open_timeout,
            max_size=MAX_FRAME_BYTES,
            compression=None,
        ) as socket:
            ready = False
            deadline = time.monotonic() + open_timeout
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    raw = await asyncio.wait_for(socket.recv(), remaining)
                except TimeoutError:
                    break
                frame = orjson.loads(raw)
                kind = frame.get("type")
                for event in _events_of(frame):
                    result.events.append(event)
                    result.cursor = event.get("stream_id", result.cursor)
                if kind == "replay_truncated":
                    result.truncated = True
                if kind == "ready" and not ready:
                    ready = True
                    # The position the feed serves from: after the replay, or the
                    # live position of a socket opened without a cursor.
                    if isinstance(frame.get("cursor"), str):
                        result.cursor = frame["cursor"]
                    deadline = time.monotonic() + listen_seconds
    except InvalidStatus as exc:
        status = exc.response.status_code
        raise FeedUnavailable(f"the feed refused the token (HTTP {status})") from None
    except ConnectionClosed as exc:
        if exc.rcvd is not None and exc.rcvd.code != 1000:
            raise FeedUnavailable(
                f"the feed closed: {exc.rcvd.reason or exc.rcvd.code}", code=exc.rcvd.code
            ) from None
    except (OSError, TimeoutError, WebSocketException) as exc:
        # The address is the cluster's internal one: the operator's log gets
        # it, the signed-in user's page does not.
        log.warning("cannot reach the feed at %s (%s)", url, type(exc).__name__)
        raise FeedUnavailable(f"cannot reach the feed ({type(exc).__name__})") from None
    return result
