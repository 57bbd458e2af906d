"""Client-side framing of the two feeds under test, over one WebSocket library.

Both systems are read by the same aiohttp WebSocket client in the same swarm
process, so the per-frame client cost differs only by framing: our feed sends
one JSON object per frame (a ``lead_events`` frame carries several events
when a socket has more than one waiting), Socket.IO wraps each event as
``42["lead_event",{...}]``
and pings from the server side (Engine.IO v4), which the client must answer.
Implementing Socket.IO's tiny websocket-only handshake here, instead of running
a python-socketio ``AsyncClient`` per connection, keeps the client side equal;
the server side is the real python-socketio.
"""

from __future__ import annotations

from typing import Final, Protocol
from urllib.parse import quote

import aiohttp
import orjson

EVENT: Final = 0
OTHER: Final = 1
PING: Final = 2

# One decoded frame: (kind, accepted_at of each event it carries). Only EVENT
# frames carry events.
Frame = tuple[int, list[float]]
_OTHER_FRAME: Final[Frame] = (OTHER, [])
_PING_FRAME: Final[Frame] = (PING, [])


class HandshakeError(RuntimeError):
    """The server refused the connection or answered something unexpected."""


class Wire(Protocol):
    """How one system's feed is opened and how its frames are read."""

    name: str

    def url(self, base: str, token: str) -> str:
        """The WebSocket URL for a client holding ``token``."""
        ...

    async def handshake(self, ws: aiohttp.ClientWebSocketResponse, token: str) -> None:
        """Finish opening the feed; raise ``HandshakeError`` if refused."""
        ...

    def parse(self, data: str) -> Frame:
        """Classify a text frame and extract its events' accept times."""
        ...

    async def answer_ping(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Reply to an application-level ping."""
        ...


class FeedWire:
    """Our ``WS /v1/feed``: token in the query, one JSON object per frame."""

    name = "ours"

    def url(self, base: str, token: str) -> str:
        return f"{base}/v1/feed?access_token={quote(token)}"

    async def handshake(self, ws: aiohttp.ClientWebSocketResponse, token: str) -> None:
        # The server authenticates during the HTTP upgrade; nothing more to do.
        del ws, token

    def parse(self, data: str) -> Frame:
        frame = orjson.loads(data)
        kind = frame.get("type")
        if kind == "lead_event":
            return (EVENT, [float(frame["accepted_at"])])
        if kind == "lead_events":
            return (EVENT, [float(event["accepted_at"]) for event in frame["events"]])
        return _OTHER_FRAME

    async def answer_ping(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        # Heartbeats are server-to-client only; WebSocket pings are answered
        # by aiohttp itself.
        del ws


class SocketIOWire:
    """Socket.IO v5 over Engine.IO v4, websocket transport only."""

    name = "socketio"

    def url(self, base: str, token: str) -> str:
        del token  # sent in the namespace CONNECT packet, as socketio clients do
        return f"{base}/socket.io/?EIO=4&transport=websocket"

    async def handshake(self, ws: aiohttp.ClientWebSocketResponse, token: str) -> None:
        opened = await ws.receive_str()
        if not opened.startswith("0"):
            raise HandshakeError(f"expected Engine.IO OPEN, got {opened[:80]!r}")
        await ws.send_str("40" + orjson.dumps({"token": token}).decode())
        while True:
            reply = await ws.receive_str()
            if reply == "2":
                await ws.send_str("3")
                continue
            if reply.startswith("40"):
                return
            raise HandshakeError(f"namespace connect refused: {reply[:120]!r}")

    def parse(self, data: str) -> Frame:
        if data.startswith("42"):
            name, payload = orjson.loads(data[2:])
            if name == "lead_event":
                return (EVENT, [float(payload["accepted_at"])])
            return _OTHER_FRAME
        if data == "2":
            return _PING_FRAME
        return _OTHER_FRAME

    async def answer_ping(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        await ws.send_str("3")


WIRES: Final[dict[str, type[FeedWire] | type[SocketIOWire]]] = {
    FeedWire.name: FeedWire,
    SocketIOWire.name: SocketIOWire,
}
