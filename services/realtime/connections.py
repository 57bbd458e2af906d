"""Feed sockets of one replica: per-tenant pools, caps and the per-socket writer.

Each socket is a `FeedConnection` with a bounded queue and exactly one writer
coroutine, so frames go out in stream order and a slow client never delays
another one: the stream reader only appends to queues (no awaits).

Ordering without gaps or duplicates: a connection tracks the stream id of
the last entry it passed (its cursor) and skips anything at or below it.
A reconnecting client starts with its ``last_event_id`` as the cursor and is
registered for live entries *before* its replay is read, so every entry is
either in the replay or in the queue, and overlaps are dropped by the cursor.
The same mechanism serves a socket whose queue overflows: instead of being
disconnected it catches up from the stream from its cursor.

Caps: WS_MAX_CONNECTIONS_PER_TENANT is enforced across all replicas with a
Redis sorted set per tenant (`ConnectionCap`, members expire unless their
replica refreshes them, so a crashed replica's sockets stop counting after
the TTL), and locally on each replica (which is also the only check left
while Redis is unreachable).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from services.common.redis import Redis, tenant_key
from services.realtime.frames import FeedEntry, MessageBatch, events_message, parse_stream_id
from services.realtime.metrics import LatencyWindow, RealtimeMetrics
from services.realtime.stream import EventStream

SendText = Callable[[str], Awaitable[None]]
DeliverySink = Callable[[str, str, float], None]
"""``(tenant_id, event_id, latency_seconds)`` of an event's first delivery here."""


#: Entries of a catch-up's first page (later pages: sized by REPLAY_PAGE_CHARS).
FIRST_REPLAY_PAGE: Final = 32
#: About how many characters one page of a catch-up or of a Postgres replay may hold.
REPLAY_PAGE_CHARS: Final = 2 * 1024 * 1024


def next_page_size(count: int, chars: int, *, most: int) -> int:
    """Entries to read next: about REPLAY_PAGE_CHARS at the last page's characters per entry.

    ``count`` entries of ``chars`` characters were just read; never more than
    ``most`` and never fewer than one.
    """
    return max(1, min(most, count * REPLAY_PAGE_CHARS // max(chars, 1)))


@dataclass(slots=True, eq=False, kw_only=True)
class FeedConnection:
    """One authenticated feed socket of a tenant (optionally of one agent)."""

    conn_id: str
    tenant_id: str
    agent_id: str
    send: SendText
    events: EventStream
    metrics: RealtimeMetrics
    window: LatencyWindow
    record: DeliverySink
    max_queue: int
    replay_page: int = 500
    queue: deque[FeedEntry] = field(default_factory=deque, init=False)
    overflowed: bool = field(default=False, init=False)
    heartbeat: str | None = field(default=None, init=False)
    # The stream id of the last entry passed, parsed and as sent.
    cursor: tuple[int, int] = field(default=(0, 0), init=False)
    cursor_id: str = field(default="0-0", init=False)
    _wake: asyncio.Event = field(default_factory=asyncio.Event, init=False)

    # -- called by the stream reader and the heartbeat ticker (never await) --

    def offer(self, entry: FeedEntry) -> None:
        """Queue an entry for sending; on overflow switch to catching up."""
        if self.overflowed:
            return
        if len(self.queue) >= self.max_queue:
            # Everything dropped here is in the stream; the writer re-reads it
            # from its cursor rather than disconnecting a slow client.
            self.overflowed = True
            self.queue.clear()
        else:
            self.queue.append(entry)
        self._wake.set()

    def offer_heartbeat(self, frame: str) -> None:
        """Ask the writer to send a heartbeat frame (coalesced if one is pending)."""
        self.heartbeat = frame
        self._wake.set()

    def wants(self, entry: FeedEntry) -> bool:
        """Whether this socket should receive the entry (tenant-wide or its agent's)."""
        return entry.agent_id is None or entry.agent_id == self.agent_id

    # -- the writer ------------------------------------------------------------

    def set_cursor(self, stream_id: str) -> None:
        """Start after ``stream_id``: nothing at or below it will be sent."""
        self.cursor = parse_stream_id(stream_id)
        self.cursor_id = stream_id

    async def send_control(self, frame: str) -> None:
        """Send a non-event frame (ready, replay_truncated) in order with events."""
        await self.send(frame)
        self.metrics.control_frames.inc()

    async def send_entries(self, entries: list[FeedEntry]) -> int:
        """Send replayed entries (already in stream order) this socket wants."""
        return await self._send_wanted(entries, live=False)

    async def replay(self) -> int:
        """Send every stored entry after the cursor; return how many were sent."""
        return await self._catch_up(live=False)

    async def run(self) -> None:
        """Send queued entries and heartbeats until cancelled or the socket fails."""
        queue = self.queue
        wake = self._wake
        while True:
            await wake.wait()
            wake.clear()
            heartbeat = self.heartbeat
            if heartbeat is not None:
                self.heartbeat = None
                await self.send(heartbeat)
                self.metrics.heartbeat_frames.inc()
            if self.overflowed:
                # Cleared before reading so entries arriving meanwhile queue up
                # again; the cursor drops whatever both paths deliver.
                self.overflowed = False
                self.metrics.slow_consumer_catchups.inc()
                await self._catch_up(live=False)
            while queue:
                # Whatever is waiting goes as one message (see frames.py).
                # Entries leave the queue only as they are sent, so a slow
                # socket's backlog keeps counting against its queue bound.
                batch = MessageBatch()
                cursor = self.cursor
                while queue:
                    entry = queue.popleft()
                    if entry.key <= cursor or not self.wants(entry):
                        continue
                    if not batch.fits(entry):
                        queue.appendleft(entry)
                        break
                    batch.add(entry)
                if batch.entries:
                    await self._deliver(batch.entries, live=True)

    async def _catch_up(self, *, live: bool) -> int:
        # Pages are sized by bytes as well as entries: 500 events of the
        # largest size (REALTIME_MAX_EVENT_BYTES) would be 32 MiB held per slow
        # socket. The first page is small; each next one is sized from the
        # bytes per entry of the last, so small events still come 500 at a time.
        sent = 0
        count = min(self.replay_page, FIRST_REPLAY_PAGE)
        while True:
            entries = await self.events.range_after(self.tenant_id, self.cursor_id, count=count)
            sent += await self._send_wanted(entries, live=live)
            if len(entries) < count:
                return sent
            size = sum(len(entry.frame) for entry in entries)
            count = next_page_size(count, size, most=self.replay_page)

    async def _send_wanted(self, entries: list[FeedEntry], *, live: bool) -> int:
        """Send the entries this socket wants, as few messages as `MessageBatch` allows.

        Entries at or below the cursor are skipped; the cursor moves past
        entries meant for other agents too, so a resume never re-reads them.
        """
        batch = MessageBatch()
        sent = 0
        for entry in entries:
            if entry.key <= self.cursor:
                continue
            if self.wants(entry):
                if not batch.fits(entry):
                    await self._deliver(batch.entries, live=live)
                    sent += len(batch.entries)
                    batch = MessageBatch()
                batch.add(entry)
            elif not batch.entries:
                self.cursor = entry.key
                self.cursor_id = entry.stream_id
        if batch.entries:
            await self._deliver(batch.entries, live=live)
            sent += len(batch.entries)
        # Past the last entry read even if this socket wanted none of the tail.
        if entries and entries[-1].key > self.cursor:
            self.cursor = entries[-1].key
            self.cursor_id = entries[-1].stream_id
        return sent

    async def _deliver(self, entries: list[FeedEntry], *, live: bool) -> None:
        """Send ``entries`` in one message; count it and record each event's latency."""
        await self.send(events_message(entries))
        (self.metrics.event_frames if len(entries) == 1 else self.metrics.batch_frames).inc()
        self.metrics.events_sent.inc(len(entries))
        now = time.time()
        last = entries[-1]
        self.cursor = last.key
        self.cursor_id = last.stream_id
        histogram = self.metrics.live_latency if live else self.metrics.replay_latency
        for entry in entries:
            latency = now - entry.accepted_at
            histogram.observe(latency)
            if live:
                self.window.add(now, latency)
            if not entry.delivered:
                entry.delivered = True
                self.record(self.tenant_id, entry.event_id, latency)


class TenantPool:
    """The sockets of one tenant on this replica, indexed by agent for targeting."""

    __slots__ = ("by_agent", "conns")

    def __init__(self) -> None:
        self.conns: set[FeedConnection] = set()
        self.by_agent: dict[str, set[FeedConnection]] = {}


class ConnectionRegistry:
    """Per-tenant pools of this replica and the dispatch of stream entries to them."""

    def __init__(self, *, max_per_tenant: int) -> None:
        self.max_per_tenant = max_per_tenant
        self._pools: dict[str, TenantPool] = {}
        self._total = 0

    @property
    def total(self) -> int:
        """Open sockets on this replica."""
        return self._total

    def count(self, tenant_id: str) -> int:
        """Open sockets of a tenant on this replica."""
        pool = self._pools.get(tenant_id)
        return len(pool.conns) if pool else 0

    def tenants(self) -> list[str]:
        """Tenants with at least one socket here."""
        return list(self._pools)

    def connections(self) -> Iterator[FeedConnection]:
        """Every socket on this replica."""
        for pool in list(self._pools.values()):
            yield from list(pool.conns)

    def add(self, conn: FeedConnection) -> bool:
        """Register a socket unless its tenant is at the cap on this replica."""
        pool = self._pools.get(conn.tenant_id)
        if pool is None:
            pool = self._pools[conn.tenant_id] = TenantPool()
        if len(pool.conns) >= self.max_per_tenant:
            return False
        pool.conns.add(conn)
        pool.by_agent.setdefault(conn.agent_id, set()).add(conn)
        self._total += 1
        return True

    def remove(self, conn: FeedConnection) -> bool:
        """Unregister a socket; True when it was its tenant's last one here."""
        pool = self._pools.get(conn.tenant_id)
        if pool is None or conn not in pool.conns:
            return False
        pool.conns.discard(conn)
        self._total -= 1
        agents = pool.by_agent.get(conn.agent_id)
        if agents is not None:
            agents.discard(conn)
            if not agents:
                del pool.by_agent[conn.agent_id]
        if not pool.conns:
            del self._pools[conn.tenant_id]
            return True
        return False

    def dispatch(self, tenant_id: str, entries: list[FeedEntry]) -> None:
        """Offer a batch read from a tenant's stream to that tenant's sockets."""
        pool = self._pools.get(tenant_id)
        if pool is None:
            return
        for entry in entries:
            if entry.agent_id is None:
                for conn in pool.conns:
                    conn.offer(entry)
            else:
                targets = pool.by_agent.get(entry.agent_id)
                if targets:
                    for conn in targets:
                        conn.offer(entry)


# KEYS[1] = tenant's connection set; ARGV = limit, member, ttl_ms, subject
# limit, the subject's tag as it appears in member names (":<tag>:").
# Scores are expiry times on Redis's clock, so replicas' clocks never matter.
# 1 admitted, 0 the tenant is at its limit, -1 the subject is at its own.
_ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
    return 0
  end
  local mine = 0
  for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
    if string.find(member, ARGV[5], 1, true) then
      mine = mine + 1
    end
  end
  if mine >= tonumber(ARGV[4]) then
    return -1
  end
end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[2])
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
"""

# KEYS[1] = tenant's connection set; ARGV = ttl_ms, member...
_REFRESH_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[i])
end
redis.call('PEXPIRE', KEYS[1], ttl)
return #ARGV - 1
"""


def subject_tag(subject: str) -> str:
    """A token subject as a short hex tag, part of the slot names of its sockets."""
    return hashlib.sha256(subject.encode()).hexdigest()[:16]


class ConnectionCap:
    """WS_MAX_CONNECTIONS_PER_TENANT across replicas, in ``tenant:{id}:ws:connections``.

    Within it, WS_MAX_CONNECTIONS_PER_SUBJECT: one agent (a script, a leaked
    token, a reconnect loop) cannot take every slot of its tenant. A slot's
    name carries its subject's tag (``member``), which the admission counts.
    """

    def __init__(self, redis: Redis, *, limit: int, subject_limit: int, ttl_seconds: float) -> None:
        self._redis = redis
        self.limit = limit
        self.subject_limit = subject_limit
        self._ttl_ms = max(1000, int(ttl_seconds * 1000))
        self._acquire: Any = redis.register_script(_ACQUIRE_LUA)
        self._refresh: Any = redis.register_script(_REFRESH_LUA)

    @staticmethod
    def key(tenant_id: str) -> str:
        """The Redis key of a tenant's connection set."""
        return tenant_key(tenant_id, "ws", "connections")

    @staticmethod
    def member(replica_id: str, subject: str, socket_id: str) -> str:
        """The slot name of one socket: its replica, its subject's tag, its own id."""
        return f"{replica_id}:{subject_tag(subject)}:{socket_id}"

    async def acquire(self, tenant_id: str, member: str, *, subject: str) -> str | None:
        """Take a slot for ``member`` of ``subject``; else which limit refused it.

        Returns None when admitted, ``"tenant_limit"`` or ``"subject_limit"``.
        """
        taken = await self._acquire(
            keys=[self.key(tenant_id)],
            args=[
                self.limit,
                member,
                self._ttl_ms,
                self.subject_limit,
                f":{subject_tag(subject)}:",
            ],
        )
        if int(taken) == 1:
            return None
        return "tenant_limit" if int(taken) == 0 else "subject_limit"

    async def release(self, tenant_id: str, member: str) -> None:
        """Give a slot back."""
        await self._redis.zrem(self.key(tenant_id), member)

    async def refresh(self, members: dict[str, list[str]]) -> None:
        """Extend the slots of this replica's live sockets, per tenant."""
        for tenant_id, ids in members.items():
            if ids:
                await self._refresh(keys=[self.key(tenant_id)], args=[self._ttl_ms, *ids])
