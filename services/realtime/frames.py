"""Feed frames: the JSON texts a WebSocket client receives, and stream entries.

A lead event is serialised once, at ingest, into the body of its frame and
stored in the tenant's Redis stream next to a few routing fields. Each replica
parses an entry once (`FeedEntry`) and hands the same text to every socket it
serves, so the per-socket cost of a delivery is one ``send``; nothing is
re-encoded per client.

Frames (all JSON objects with a ``type``):

- ``lead_event``: ``stream_id`` (the resume cursor), ``event_id`` (UUID, the
  id the ingest acknowledged), ``lead_id``, ``event_type``, ``agent_id`` (or
  null for a tenant-wide event), ``score``, ``model_version``, ``data`` and
  ``accepted_at`` (epoch seconds, float, when the ingest accepted the event).
- ``lead_events``: ``events``, a list of ``lead_event`` objects in stream
  order. Sent instead of consecutive ``lead_event`` frames when more than one
  event is waiting for a socket (a burst, a replay, a client that fell
  behind), up to `MAX_EVENTS_PER_MESSAGE` events and `MAX_MESSAGE_CHARS`
  characters (`MessageBatch`). One message per burst instead of
  one per event: each WebSocket message is a write system call, the largest
  per-event cost of fan-out. A socket that keeps up gets single frames.
- ``ready``: sent once after authentication, the cap check and any replay;
  live events follow it. Carries ``replayed`` (how many missed events were
  sent before it), ``cursor``, ``heartbeat_interval`` and ``reconnect_delay``.
- ``heartbeat``: ``ts`` (epoch seconds), every WS_HEARTBEAT_INTERVAL seconds.
- ``replay_truncated``: more events were missed than one reconnect replays
  (REALTIME_DB_REPLAY_LIMIT beyond the stream's retention); the replay goes
  on from ``resumed_from`` and the events in between are only in Postgres.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

# Field names inside a Redis stream entry, kept to one letter because every
# entry stores them (MAXLEN entries per tenant).
FIELD_EVENT_ID = "e"
FIELD_AGENT_ID = "a"
FIELD_ACCEPTED_AT = "t"
FIELD_BODY = "f"
_EVENT_KEY = FIELD_EVENT_ID.encode()
_AGENT_KEY = FIELD_AGENT_ID.encode()
_ACCEPTED_KEY = FIELD_ACCEPTED_AT.encode()
_BODY_KEY = FIELD_BODY.encode()

MAX_EVENTS_PER_MESSAGE = 64
"""Most events one ``lead_events`` message carries."""
MAX_MESSAGE_CHARS = 256 * 1024
"""Largest ``lead_events`` message, in characters (at most 1 MiB of UTF-8).

Common clients refuse bigger messages by default (Python ``websockets``:
1 MiB), and an event may carry up to REALTIME_MAX_EVENT_BYTES of CRM data.
A single event larger than this still goes, alone, as a ``lead_event``.
"""


MAX_STREAM_ID_PART = 2**63 - 1
"""Largest part of a stream id accepted: what Postgres's bigint holds (and Redis's u64 too)."""


def parse_stream_id(stream_id: str) -> tuple[int, int]:
    """Split a Redis stream id ``"<ms>-<seq>"`` into a comparable tuple.

    Raises `ValueError` when the text is not a stream id: ASCII digits only
    (``str.isdigit`` alone accepts other scripts' digits, and a trailing
    newline would pass a ``$``-anchored regex), each part at most
    `MAX_STREAM_ID_PART`.
    """
    ms, sep, seq = stream_id.partition("-")
    if not (sep and ms.isascii() and seq.isascii() and ms.isdigit() and seq.isdigit()):
        raise ValueError(f"not a stream id: {stream_id!r}")
    parts = int(ms), int(seq)
    if parts[0] > MAX_STREAM_ID_PART or parts[1] > MAX_STREAM_ID_PART:
        raise ValueError(f"stream id out of range: {stream_id!r}")
    return parts


def encode_event_body(
    *,
    event_id: str,
    lead_id: str,
    event_type: str,
    agent_id: str | None,
    score: float,
    model_version: str,
    data: dict[str, Any],
    accepted_at: float,
) -> bytes:
    """Serialise a lead event's frame, without its stream id (unknown until XADD)."""
    return orjson.dumps(
        {
            "type": "lead_event",
            "event_id": event_id,
            "lead_id": lead_id,
            "event_type": event_type,
            "agent_id": agent_id,
            "score": score,
            "model_version": model_version,
            "data": data,
            "accepted_at": accepted_at,
        }
    )


def stream_fields(
    *, event_id: str, agent_id: str | None, accepted_at: float, body: bytes
) -> dict[str, str | bytes]:
    """The fields of the stream entry that carries one event."""
    return {
        FIELD_EVENT_ID: event_id,
        FIELD_AGENT_ID: agent_id or "",
        FIELD_ACCEPTED_AT: repr(accepted_at),
        FIELD_BODY: body,
    }


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(slots=True)
class FeedEntry:
    """One stream entry, parsed once per replica and shared by its sockets."""

    stream_id: str
    key: tuple[int, int]
    event_id: str
    agent_id: str | None
    accepted_at: float
    frame: str
    # Set by the first socket of this replica that sends the entry, so the
    # stored delivery latency is recorded once per replica, not per socket.
    delivered: bool = field(default=False)

    @classmethod
    def from_stream(cls, stream_id: str | bytes, fields: dict[Any, Any]) -> FeedEntry:
        """Build an entry from an XREAD/XRANGE item.

        The common Redis client returns bytes (``decode_responses=False``);
        str keys and values are accepted too.
        """
        sid = _text(stream_id)
        if _BODY_KEY in fields:
            body, event_id = fields[_BODY_KEY], fields.get(_EVENT_KEY, b"")
            agent, accepted = fields.get(_AGENT_KEY, b""), fields.get(_ACCEPTED_KEY, b"0")
        else:
            body, event_id = fields.get(FIELD_BODY, "{}"), fields.get(FIELD_EVENT_ID, "")
            agent, accepted = fields.get(FIELD_AGENT_ID, ""), fields.get(FIELD_ACCEPTED_AT, "0")
        return cls.from_body(
            sid,
            event_id=_text(event_id),
            agent_id=_text(agent) or None,
            accepted_at=float(accepted),
            body=_text(body),
        )

    @classmethod
    def from_body(
        cls, stream_id: str, *, event_id: str, agent_id: str | None, accepted_at: float, body: str
    ) -> FeedEntry:
        """Build an entry from an event body (`encode_event_body`) and its stream id."""
        # Splice the stream id in as the first key instead of decoding and
        # re-encoding the body: one string concatenation per entry per replica.
        return cls(
            stream_id=stream_id,
            key=parse_stream_id(stream_id),
            event_id=event_id,
            agent_id=agent_id,
            accepted_at=accepted_at,
            frame='{"stream_id":"' + stream_id + '",' + body[1:],
        )


class MessageBatch:
    """The entries of one message, within both `MAX_EVENTS_PER_MESSAGE` and `MAX_MESSAGE_CHARS`."""

    __slots__ = ("chars", "entries")

    def __init__(self) -> None:
        self.entries: list[FeedEntry] = []
        self.chars = 0

    def fits(self, entry: FeedEntry) -> bool:
        """Whether ``entry`` may join (the first entry always may)."""
        return not self.entries or (
            len(self.entries) < MAX_EVENTS_PER_MESSAGE
            and self.chars + len(entry.frame) <= MAX_MESSAGE_CHARS
        )

    def add(self, entry: FeedEntry) -> None:
        """Append ``entry`` (check `fits` first)."""
        self.entries.append(entry)
        self.chars += len(entry.frame)


def events_message(entries: list[FeedEntry]) -> str:
    """The text that delivers ``entries`` (1 to `MAX_EVENTS_PER_MESSAGE`, in stream order).

    One entry is its ``lead_event`` frame; several are one ``lead_events``
    frame, spliced from the entries' frames without re-encoding them.
    """
    if len(entries) == 1:
        return entries[0].frame
    return '{"type":"lead_events","events":[' + ",".join(e.frame for e in entries) + "]}"


def heartbeat_frame(now: float | None = None) -> str:
    """The heartbeat frame text (``ts`` in epoch seconds)."""
    return orjson.dumps({"type": "heartbeat", "ts": time.time() if now is None else now}).decode()


def ready_frame(
    *,
    tenant_id: str,
    replayed: int,
    cursor: str | None,
    heartbeat_interval: float,
    reconnect_delay: float,
) -> str:
    """The frame that tells a client its replay is done and live events follow."""
    return orjson.dumps(
        {
            "type": "ready",
            "tenant_id": tenant_id,
            "replayed": replayed,
            "cursor": cursor,
            "heartbeat_interval": heartbeat_interval,
            "reconnect_delay": reconnect_delay,
        }
    ).decode()


def replay_truncated_frame(*, requested: str, resumed_from: str | None) -> str:
    """Tell a client that some of what it missed will not be replayed."""
    return orjson.dumps(
        {"type": "replay_truncated", "requested": requested, "resumed_from": resumed_from}
    ).decode()
