"""Several waiting events go to a socket as one ``lead_events`` frame, in order."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from services.common.metrics import new_registry
from services.realtime.connections import FeedConnection
from services.realtime.frames import (
    MAX_EVENTS_PER_MESSAGE,
    MAX_MESSAGE_CHARS,
    FeedEntry,
    encode_event_body,
)
from services.realtime.metrics import LatencyWindow, RealtimeMetrics


def entry(seq: int, agent_id: str | None = None, data: dict[str, Any] | None = None) -> FeedEntry:
    body = encode_event_body(
        event_id=f"e{seq}",
        lead_id=f"lead-{seq}",
        event_type="lead.updated",
        agent_id=agent_id,
        score=0.5,
        model_version="v1",
        data=data or {},
        accepted_at=time.time(),
    ).decode()
    return FeedEntry.from_body(
        f"1700000000000-{seq}", event_id=f"e{seq}", agent_id=agent_id, accepted_at=0.0, body=body
    )


class Socket:
    """Records what the connection sends; optionally blocks until released."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self._changed = asyncio.Event()

    async def send(self, text: str) -> None:
        await self.gate.wait()
        self.sent.append(orjson.loads(text))
        self._changed.set()

    async def wait_for(self, count: int) -> None:
        """Until ``count`` events have been sent (fails after 5 s)."""
        async with asyncio.timeout(5):
            while len(self.events()) < count:
                self._changed.clear()
                await self._changed.wait()

    def events(self) -> list[str]:
        out: list[str] = []
        for frame in self.sent:
            if frame["type"] == "lead_event":
                out.append(frame["event_id"])
            elif frame["type"] == "lead_events":
                out.extend(event["event_id"] for event in frame["events"])
        return out


def connection(socket: Socket, metrics: RealtimeMetrics, agent: str = "agent-1") -> FeedConnection:
    return FeedConnection(
        conn_id="c1",
        tenant_id="tenant-a",
        agent_id=agent,
        send=socket.send,
        events=None,  # type: ignore[arg-type]  # no catch-up in these tests
        metrics=metrics,
        window=LatencyWindow(),
        record=lambda tenant, event, latency: None,
        max_queue=10_000,
    )


async def deliver(conn: FeedConnection, socket: Socket, count: int) -> None:
    """Run the writer until ``count`` events were sent, then stop it."""
    writer = asyncio.create_task(conn.run())
    try:
        await socket.wait_for(count)
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)


async def test_a_lone_event_is_a_plain_lead_event_frame() -> None:
    socket, metrics = Socket(), RealtimeMetrics(new_registry())
    conn = connection(socket, metrics)
    conn.offer(entry(1))
    await deliver(conn, socket, 1)
    assert [f["type"] for f in socket.sent] == ["lead_event"]
    assert socket.sent[0]["stream_id"] == "1700000000000-1"


async def test_waiting_events_go_as_one_frame_in_stream_order() -> None:
    registry = new_registry()
    socket, metrics = Socket(), RealtimeMetrics(registry)
    conn = connection(socket, metrics)
    for seq in range(1, 6):
        conn.offer(entry(seq))
    await deliver(conn, socket, 5)
    assert [f["type"] for f in socket.sent] == ["lead_events"]
    assert socket.events() == [f"e{n}" for n in range(1, 6)]
    assert [e["stream_id"] for e in socket.sent[0]["events"]] == [
        f"1700000000000-{n}" for n in range(1, 6)
    ]
    assert conn.cursor_id == "1700000000000-5"
    assert registry.get_sample_value("websocket_events_sent_total") == 5
    assert registry.get_sample_value("websocket_frames_sent_total", {"type": "lead_events"}) == 1


async def test_a_frame_holds_at_most_the_maximum() -> None:
    socket, metrics = Socket(), RealtimeMetrics(new_registry())
    conn = connection(socket, metrics)
    count = MAX_EVENTS_PER_MESSAGE + 6
    for seq in range(1, count + 1):
        conn.offer(entry(seq))
    await deliver(conn, socket, count)
    assert socket.events() == [f"e{n}" for n in range(1, count + 1)]
    assert [len(f["events"]) for f in socket.sent] == [MAX_EVENTS_PER_MESSAGE, 6]


async def test_events_for_other_agents_are_left_out_of_the_frame() -> None:
    socket, metrics = Socket(), RealtimeMetrics(new_registry())
    conn = connection(socket, metrics, agent="agent-1")
    for seq, agent in enumerate(["agent-1", "agent-2", None, "agent-2", "agent-1"], start=1):
        conn.offer(entry(seq, agent_id=agent))
    await deliver(conn, socket, 3)
    assert socket.events() == ["e1", "e3", "e5"]
    assert len(socket.sent) == 1


async def test_events_arriving_while_a_send_is_slow_are_coalesced() -> None:
    socket, metrics = Socket(), RealtimeMetrics(new_registry())
    conn = connection(socket, metrics)
    socket.gate.clear()
    writer = asyncio.create_task(conn.run())
    conn.offer(entry(1))
    await asyncio.sleep(0.01)  # let the writer take e1 and block sending it
    for seq in range(2, 5):
        conn.offer(entry(seq))
    socket.gate.set()
    await socket.wait_for(4)
    writer.cancel()
    await asyncio.gather(writer, return_exceptions=True)
    assert [f["type"] for f in socket.sent] == ["lead_event", "lead_events"]
    assert socket.events() == ["e1", "e2", "e3", "e4"]


async def test_a_frame_stays_under_the_size_limit_and_a_huge_event_goes_alone() -> None:
    socket, metrics = Socket(), RealtimeMetrics(new_registry())
    conn = connection(socket, metrics)
    big = "x" * (MAX_MESSAGE_CHARS // 3)
    entries = [entry(seq, data={"blob": big}) for seq in range(1, 5)]
    huge = entry(5, data={"blob": "y" * MAX_MESSAGE_CHARS})
    for item in [*entries, huge, entry(6)]:
        conn.offer(item)
    await deliver(conn, socket, 6)
    assert socket.events() == [f"e{n}" for n in range(1, 7)]
    sizes = [len(orjson.dumps(frame)) for frame in socket.sent]
    assert [f["type"] for f in socket.sent] == [
        "lead_events",
        "lead_events",
        "lead_event",
        "lead_event",
    ]
    assert all(size <= MAX_MESSAGE_CHARS for size in sizes[:2])
