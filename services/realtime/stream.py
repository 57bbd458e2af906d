"""Per-tenant Redis streams: publication, replay and fan-out to local sockets.

Design (see also docs in `services.realtime.ingest`):

- Every tenant has one stream, ``tenant:{id}:events``. The ingest appends an
  event with ``XADD ... MAXLEN ~ REALTIME_STREAM_MAXLEN`` after storing it in
  Postgres; the entry id (``<ms>-<seq>``) is the event's position and the
  resume cursor clients send back as ``last_event_id``.
- Each replica runs one `StreamFanout` task holding one blocking ``XREAD``
  over the streams of the tenants it has sockets for, from the last id it
  read of each. An entry is parsed once and offered to the matching local
  sockets; nothing is read from Redis per socket except a replay.
- A replica adds a tenant by recording the tenant's current last id and
  waking its ``XREAD`` through a private wake stream
  (``realtime:replica:{replica}:wake``), so a new tenant's events are read
  from the next round trip instead of after the block timeout.
- Replay (reconnects, and a socket that fell too far behind) is ``XRANGE``
  from the client's cursor, exclusive.

Redis streams were chosen over pub/sub because pub/sub drops whatever a
replica misses while it restarts or reconnects, and gives no ids to resume
from; a stream gives ids, ordering, fan-out to any number of replicas and
replay with the same data structure.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any

from redis.exceptions import RedisError

from services.common.redis import UNAVAILABLE_ERRORS, Redis, tenant_key
from services.common.tasks import BackgroundTask
from services.realtime.frames import FeedEntry, parse_stream_id, stream_fields

log = logging.getLogger(__name__)

STREAM_PART = "events"
REDIS_DOWN: tuple[type[BaseException], ...] = (RedisError, *UNAVAILABLE_ERRORS)
"""Errors meaning Redis could not serve a command (unreachable, timed out, refused)."""
REDIS_DOWN_OR_SLOW: tuple[type[BaseException], ...] = (*REDIS_DOWN, TimeoutError)
"""``REDIS_DOWN`` or the caller's own deadline around a command (``asyncio.timeout``)."""
#: After a Redis failure on the ingest's path, skip Redis for this long: requests
#: during an outage go on at once instead of each waiting for a timeout.
REDIS_BACKOFF_SECONDS = 1.0
EMPTY_STREAM_ID = "0-0"

# XADD of several entries in one command. One script call costs the client
# about a third of the CPU of a pipeline of XADDs (redis-py's work per command
# and per argument), and Redis runs it atomically. ARGV: the MAXLEN, the number
# of fields per entry and their names (once), then each entry's values in that
# order. Single key, so it is valid on a cluster too.
_XADD_MANY = """
local n = tonumber(ARGV[2])
local ids = {}
for i = 3 + n, #ARGV, n do
  local args = {KEYS[1], 'MAXLEN', '~', ARGV[1], '*'}
  for k = 1, n do
    args[4 + 2 * k] = ARGV[2 + k]
    args[5 + 2 * k] = ARGV[i + k - 1]
  end
  ids[#ids + 1] = redis.call('XADD', unpack(args))
end
return ids
"""


def stream_key(tenant_id: str) -> str:
    """The Redis key of a tenant's event stream."""
    return tenant_key(tenant_id, STREAM_PART)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(frozen=True, slots=True)
class PublishItem:
    """One event to append to a tenant's stream."""

    event_id: str
    agent_id: str | None
    accepted_at: float
    body: bytes


class EventStream:
    """Redis operations on the tenant streams (publish, replay, inspection)."""

    def __init__(self, redis: Redis, *, maxlen: int) -> None:
        self._redis = redis
        self._maxlen = maxlen
        # Sent as EVALSHA; redis-py loads the script again after a Redis restart.
        self._xadd_many = redis.register_script(_XADD_MANY)

    async def publish(
        self,
        *,
        tenant_id: str,
        event_id: str,
        agent_id: str | None,
        accepted_at: float,
        body: bytes,
    ) -> str:
        """Append one event to the tenant's stream and return its stream id.

        Raises redis-py errors (connection, timeout) to the caller, which
        decides whether the event is deferred to the outbox relay.
        """
        fields = stream_fields(
            event_id=event_id, agent_id=agent_id, accepted_at=accepted_at, body=body
        )
        # MAXLEN ~ trims whole macro nodes only, which keeps XADD O(1); the
        # stream holds at least `maxlen` of the tenant's latest events.
        stream_id = await self._redis.xadd(
            stream_key(tenant_id),
            fields,  # type: ignore[arg-type]  # dict is invariant; str | bytes values are valid
            maxlen=self._maxlen,
            approximate=True,
        )
        return _text(stream_id)

    async def publish_many(self, tenant_id: str, items: Sequence[PublishItem]) -> list[str]:
        """Append events in order with one command (one round trip); return their ids."""
        if len(items) == 1:
            item = items[0]
            return [
                await self.publish(
                    tenant_id=tenant_id,
                    event_id=item.event_id,
                    agent_id=item.agent_id,
                    accepted_at=item.accepted_at,
                    body=item.body,
                )
            ]
        entries = [
            stream_fields(
                event_id=item.event_id,
                agent_id=item.agent_id,
                accepted_at=item.accepted_at,
                body=item.body,
            )
            for item in items
        ]
        names = list(entries[0])
        args: list[Any] = [self._maxlen, len(names), *names]
        for fields in entries:
            args.extend(fields.values())
        replies: list[Any] = await self._xadd_many(keys=[stream_key(tenant_id)], args=args)
        return [_text(reply) for reply in replies]

    async def range_after(self, tenant_id: str, after: str, *, count: int) -> list[FeedEntry]:
        """Up to ``count`` entries with ids strictly greater than ``after``."""
        items: Any = await self._redis.xrange(stream_key(tenant_id), min=f"({after}", count=count)
        return [FeedEntry.from_stream(sid, fields) for sid, fields in items or ()]

    async def range_from(
        self, tenant_id: str, start: str, *, count: int
    ) -> list[tuple[str, dict[Any, Any]]]:
        """Raw entries with ids >= ``start`` (for the relay's duplicate check)."""
        items: Any = await self._redis.xrange(stream_key(tenant_id), min=start, count=count)
        return [(_text(sid), fields) for sid, fields in items or ()]

    async def tail(self, tenant_id: str, *, count: int) -> list[tuple[str, dict[Any, Any]]]:
        """The newest ``count`` raw entries, newest first."""
        items: Any = await self._redis.xrevrange(stream_key(tenant_id), count=count)
        return [(_text(sid), fields) for sid, fields in items or ()]

    async def last_id(self, tenant_id: str) -> str:
        """The id of the newest entry, or ``0-0`` when the stream is empty or absent."""
        items: Any = await self._redis.xrevrange(stream_key(tenant_id), count=1)
        return _text(items[0][0]) if items else EMPTY_STREAM_ID

    async def first_id(self, tenant_id: str) -> str | None:
        """The id of the oldest entry still kept, or None when there is no entry."""
        items: Any = await self._redis.xrange(stream_key(tenant_id), count=1)
        return _text(items[0][0]) if items else None


DispatchFn = Callable[[str, list[FeedEntry]], None]


# Without slots: tests replace a method of a running reader to inject a fault.
@dataclass(eq=False)
class StreamFanout:
    """One replica's reader of the tenant streams its sockets need.

    ``dispatch(tenant_id, entries)`` is called synchronously, in stream order,
    for every batch read; it must not block (it only queues frames).
    """

    redis: Redis
    events: EventStream
    _: KW_ONLY
    dispatch: DispatchFn
    block_ms: int
    batch: int = 1000
    retry_delay: float = 0.2
    replica_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    healthy: bool = field(default=False, init=False)
    _wake_key: str = field(init=False)
    _wake_id: str = field(default=EMPTY_STREAM_ID, init=False)
    # stream key -> tenant id and the last id read of it.
    _tenant_of: dict[str, str] = field(default_factory=dict, init=False)
    _positions: dict[str, str] = field(default_factory=dict, init=False)
    _pending: dict[str, asyncio.Future[str]] = field(default_factory=dict, init=False)
    _loop: BackgroundTask = field(
        default_factory=lambda: BackgroundTask("realtime-stream-fanout"), init=False
    )

    def __post_init__(self) -> None:
        self._wake_key = f"realtime:replica:{self.replica_id}:wake"

    def position(self, tenant_id: str) -> str | None:
        """The id of the newest entry of the tenant already dispatched here."""
        return self._positions.get(stream_key(tenant_id))

    @property
    def tenants(self) -> list[str]:
        """Tenants currently read."""
        return list(self._tenant_of.values())

    async def subscribe(self, tenant_id: str) -> str:
        """Start reading the tenant's stream (if not yet) and return the position.

        Everything after the returned id will be dispatched; everything up to
        it is in the stream for a replay. Raises redis-py errors if Redis is
        unreachable when the tenant is new to this replica.
        """
        key = stream_key(tenant_id)
        known = self._positions.get(key)
        if known is not None:
            return known
        pending = self._pending.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            start = await self.events.last_id(tenant_id)
        except BaseException as exc:
            future.set_exception(exc)
            # Mark retrieved so a failure nobody else awaited is not logged.
            future.exception()
            raise
        finally:
            self._pending.pop(key, None)
        self._tenant_of[key] = tenant_id
        self._positions[key] = start
        future.set_result(start)
        await self._wake()
        return start

    def unsubscribe(self, tenant_id: str) -> None:
        """Stop reading the tenant's stream (its last local socket left)."""
        key = stream_key(tenant_id)
        self._tenant_of.pop(key, None)
        self._positions.pop(key, None)

    async def _wake(self) -> None:
        try:
            await self.redis.xadd(self._wake_key, {"w": "1"}, maxlen=10, approximate=False)
            await self.redis.expire(self._wake_key, 3600)
        except REDIS_DOWN as exc:
            # The reader notices the new tenant within one block timeout anyway.
            log.debug("wake of the stream reader failed: %s", exc)

    def start(self) -> None:
        """Start the reader task."""
        self._loop.start(self._run)

    async def stop(self) -> None:
        """Stop the reader task and delete this replica's wake stream."""
        await self._loop.stop()
        try:
            await self.redis.delete(self._wake_key)
        except REDIS_DOWN:
            log.debug("could not delete wake stream %s", self._wake_key)

    async def _init_wake(self) -> None:
        # An explicit starting id (instead of "$") means a wake added between
        # two XREAD calls is still seen by the next one.
        self._wake_id = _text(
            await self.redis.xadd(self._wake_key, {"w": "0"}, maxlen=10, approximate=False)
        )
        await self.redis.expire(self._wake_key, 3600)

    async def _run(self) -> None:
        while True:
            try:
                await self._init_wake()
                self.healthy = True
                await self._read_forever()
            except asyncio.CancelledError:
                raise
            except REDIS_DOWN as exc:
                if self.healthy:
                    log.warning("stream reader lost redis: %s", exc)
                self.healthy = False
                await asyncio.sleep(self.retry_delay)
            except Exception:
                # A bug in dispatch must not end delivery for the whole replica.
                log.exception("stream reader failed; restarting")
                self.healthy = False
                await asyncio.sleep(self.retry_delay)

    async def _read_forever(self) -> None:
        positions = self._positions
        tenant_of = self._tenant_of
        wake_key = self._wake_key.encode()
        while True:
            streams: dict[Any, Any] = {self._wake_key: self._wake_id}
            streams.update(positions)
            response: Any = await self.redis.xread(streams, count=self.batch, block=self.block_ms)
            if not response:
                continue
            for raw_key, items in response:
                if raw_key == wake_key:
                    self._wake_id = _text(items[-1][0])
                    continue
                key = _text(raw_key)
                tenant_id = tenant_of.get(key)
                if tenant_id is None or not items:
                    # Unsubscribed while the read was in flight.
                    continue
                entries = [FeedEntry.from_stream(sid, fields) for sid, fields in items]
                current = positions.get(key)
                if current is not None and current != EMPTY_STREAM_ID:
                    # Re-subscribed while this read was in flight: its new
                    # position may be ahead of part of this batch.
                    floor = parse_stream_id(current)
                    entries = [entry for entry in entries if entry.key > floor]
                    if not entries:
                        continue
                positions[key] = entries[-1].stream_id
                self.dispatch(tenant_id, entries)
            # Let the socket writers just woken send before the next XREAD is
            # written: on a busy core that write can hand the CPU to Redis
            # while the frames wait. Entries arriving meanwhile wait in the
            # stream and come with the next read.
            await asyncio.sleep(0)
