"""The feed endpoint's work: admit a socket, replay what it missed, serve it live.

Admission order matters for the no-gap guarantee: the socket is registered in
its tenant's pool (so live entries start queueing) before the tenant's stream
position is taken and before the replay is read; see `connections`.

Refusals (after the upgrade, so browsers can read code and reason):

- 1008 policy violation: a malformed or unknown ``last_event_id``, or one
  ahead of the tenant's newest stream entry (it was never sent).
- 1008 policy violation with the reason ``expired_token``: the token the
  socket was opened with expired while it was open. The token is checked
  at the handshake only, so without this close a socket would outlive its
  token by hours. The client reconnects with a fresh token and
  ``last_event_id``, and misses nothing.
- 1008 policy violation with the reason ``revoked_token``: the token was
  revoked while the socket was open (``enterprisehub token revoke``). The
  socket waits on the verifier's revocation list, so it is closed when this
  replica next reads the list (AUTH_REVOCATION_REFRESH_SECONDS), not at its
  next handshake, which a leaked token's holder would never make.
- 1013 try again later: the tenant is at WS_MAX_CONNECTIONS_PER_TENANT
  (reason ``tenant connection limit N reached``), or this replica cannot
  reach Redis to start the tenant's feed, or Postgres to resolve an event
  UUID cursor (the client retries after WS_RECONNECT_DELAY).

Authentication failures never reach this module: the route answers them
with HTTP 401 (``deny_websocket``) before the upgrade.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from dataclasses import InitVar, dataclass, field
from typing import Any

from redis.exceptions import ResponseError
from starlette.websockets import WebSocket, WebSocketState

from services.common.auth import Principal, TokenVerifier
from services.common.database import Database, DatabaseUnavailable
from services.common.identifiers import UUID_TEXT
from services.common.redis import Redis
from services.common.tasks import BackgroundTask
from services.realtime import store
from services.realtime.config import RealtimeSettings
from services.realtime.connections import (
    FIRST_REPLAY_PAGE,
    REPLAY_PAGE_CHARS,
    ConnectionCap,
    ConnectionRegistry,
    FeedConnection,
    next_page_size,
)
from services.realtime.frames import (
    FIELD_EVENT_ID,
    FeedEntry,
    heartbeat_frame,
    parse_stream_id,
    ready_frame,
    replay_truncated_frame,
)
from services.realtime.metrics import LatencyWindow, RealtimeMetrics
from services.realtime.outbox import RowWriter
from services.realtime.stream import EMPTY_STREAM_ID, REDIS_DOWN, EventStream, StreamFanout

log = logging.getLogger(__name__)

WS_POLICY_VIOLATION = 1008
WS_INTERNAL_ERROR = 1011
WS_TRY_AGAIN_LATER = 1013
#: Close reason of a socket whose token expired: the same word as the HTTP 401
#: a handshake with that token now gets, so a client handles both alike.
TOKEN_EXPIRED_REASON = "expired_token"  # noqa: S105 - a close reason, not a secret
#: Close reason of a socket whose token was revoked, the HTTP 401's reason likewise.
TOKEN_REVOKED_REASON = "revoked_token"  # noqa: S105 - a close reason, not a secret
# fullmatch only: "$" would let "1-1\n" through to the stream id parser.
_STREAM_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")
# How far back from the tail to look for an event whose stream id is not yet
# in Postgres: its batched mark is at most a flush interval (0.25 s) behind,
# a few hundred entries even at thousands of events per second per tenant.
TAIL_SCAN_ENTRIES = 2_000


class FeedRefusedError(Exception):
    """A socket is turned away with a WebSocket close code and reason."""

    def __init__(self, code: int, reason: str, metric_reason: str) -> None:
        self.code = code
        self.reason = reason
        self.metric_reason = metric_reason
        super().__init__(reason)


@dataclass(slots=True, eq=False, kw_only=True)
class FeedHub:
    """Per-replica feed: the tenant pools, the stream reader, heartbeats and caps."""

    settings: RealtimeSettings
    db: Database
    redis: InitVar[Redis]
    events: EventStream
    metrics: RealtimeMetrics
    window: LatencyWindow
    writer: RowWriter
    verifier: TokenVerifier
    registry: ConnectionRegistry = field(init=False)
    fanout: StreamFanout = field(init=False)
    cap: ConnectionCap = field(init=False)
    _heartbeats_loop: BackgroundTask = field(
        default_factory=lambda: BackgroundTask("realtime-heartbeats"), init=False
    )

    def __post_init__(self, redis: Redis) -> None:
        settings = self.settings
        self.registry = ConnectionRegistry(max_per_tenant=settings.ws_max_connections_per_tenant)
        self.fanout = StreamFanout(
            redis, self.events, dispatch=self.registry.dispatch, block_ms=settings.stream_block_ms
        )
        # A crashed replica's slots expire after three missed refreshes.
        self.cap = ConnectionCap(
            redis,
            limit=settings.ws_max_connections_per_tenant,
            subject_limit=settings.ws_max_connections_per_subject,
            ttl_seconds=max(10.0, 3 * settings.ws_heartbeat_interval),
        )

    def start(self) -> None:
        """Start the stream reader and the heartbeat ticker."""
        self.fanout.start()
        self._heartbeats_loop.start(self._heartbeats)

    async def stop(self) -> None:
        """Stop background work; open sockets are closed by the server's shutdown."""
        await self._heartbeats_loop.stop()
        await self.fanout.stop()

    async def _heartbeats(self) -> None:
        interval = self.settings.ws_heartbeat_interval
        while True:
            await asyncio.sleep(interval)
            frame = heartbeat_frame()
            members: dict[str, list[str]] = {}
            for conn in self.registry.connections():
                conn.offer_heartbeat(frame)
                members.setdefault(conn.tenant_id, []).append(conn.conn_id)
            try:
                await self.cap.refresh(members)
            except REDIS_DOWN as exc:
                log.warning("could not refresh connection slots: %s", exc)

    # -- admission ---------------------------------------------------------------

    async def resolve_cursor(self, tenant_id: str, last_event_id: str | None) -> str | None:
        """The stream id to resume after, from a stream id or an event UUID.

        Raises `FeedRefusedError` for a malformed id or an event unknown to the tenant
        (row-level security makes another tenant's event unknown).
        """
        if last_event_id is None:
            return None
        if _STREAM_ID.fullmatch(last_event_id):
            try:
                cursor = parse_stream_id(last_event_id)
            except ValueError:
                raise FeedRefusedError(
                    WS_POLICY_VIOLATION,
                    "last_event_id is out of range: send the stream_id of the last frame",
                    "bad_last_event_id",
                ) from None
            await self._refuse_if_ahead(tenant_id, cursor)
            return last_event_id
        try:
            # uuid.UUID strips braces, "urn:uuid:" and hyphens: only the
            # canonical 36-character form is an event id.
            if not UUID_TEXT.fullmatch(last_event_id):
                raise ValueError(last_event_id)
            event_id = str(uuid.UUID(last_event_id))
        except ValueError:
            raise FeedRefusedError(
                WS_POLICY_VIOLATION,
                "malformed last_event_id: send the stream_id or event_id of the last frame",
                "bad_last_event_id",
            ) from None
        async with self.db.tenant(tenant_id) as conn:
            found, stream_id = await store.find_stream_id(conn, event_id)
        if not found:
            raise FeedRefusedError(
                WS_POLICY_VIOLATION, "unknown last_event_id", "unknown_last_event_id"
            )
        if stream_id is None:
            stream_id = await self._find_in_tail(tenant_id, event_id)
        if stream_id is None:
            raise FeedRefusedError(
                WS_POLICY_VIOLATION,
                "last_event_id was never delivered; reconnect without it or with a stream_id",
                "unknown_last_event_id",
            )
        return stream_id

    async def _refuse_if_ahead(self, tenant_id: str, cursor: tuple[int, int]) -> None:
        # A cursor past the stream's newest entry was never sent by it (a
        # client's bug, or a Redis whose clock went back): resuming from it
        # would silently skip every live event until the stream caught up.
        # This replica's own position settles most resumes without Redis;
        # an empty stream (Redis lost its data) still resumes from Postgres.
        known = self.fanout.position(tenant_id)
        if known is not None and cursor <= parse_stream_id(known):
            return
        newest = await self.events.last_id(tenant_id)
        if newest != EMPTY_STREAM_ID and cursor > parse_stream_id(newest):
            raise FeedRefusedError(
                WS_POLICY_VIOLATION,
                f"last_event_id is ahead of the stream (newest {newest}): "
                "send the stream_id of the last frame received",
                "bad_last_event_id",
            )

    async def _find_in_tail(self, tenant_id: str, event_id: str) -> str | None:
        # The batched "published" mark may not be written yet: look near the tail.
        entries = await self.events.tail(tenant_id, count=TAIL_SCAN_ENTRIES)
        wanted = event_id.encode()
        for stream_id, fields in entries:
            raw = fields.get(FIELD_EVENT_ID.encode(), fields.get(FIELD_EVENT_ID))
            if raw in (wanted, event_id):
                return stream_id
        return None

    async def serve(self, websocket: WebSocket, principal: Principal) -> None:
        """Admit an authenticated socket and serve it until it closes."""
        tenant_id = principal.tenant_id
        try:
            cursor = await self.resolve_cursor(
                tenant_id, websocket.query_params.get("last_event_id") or None
            )
        except FeedRefusedError as refusal:
            await self._refuse(websocket, refusal)
            return
        except REDIS_DOWN:
            await self._refuse(websocket, self._redis_refusal())
            return
        except DatabaseUnavailable:
            delay = self.settings.ws_reconnect_delay
            unavailable = FeedRefusedError(
                WS_TRY_AGAIN_LATER,
                f"resume unavailable (postgres); retry in {delay:g} s",
                "postgres_unavailable",
            )
            await self._refuse(websocket, unavailable)
            return
        conn = FeedConnection(
            conn_id=ConnectionCap.member(
                self.fanout.replica_id, principal.subject, uuid.uuid4().hex
            ),
            tenant_id=tenant_id,
            agent_id=principal.subject,
            send=websocket.send_text,
            events=self.events,
            metrics=self.metrics,
            window=self.window,
            record=self.writer.delivered,
            max_queue=self.settings.ws_send_queue_size,
        )
        try:
            await self._admit(conn)
        except FeedRefusedError as refusal:
            await self._refuse(websocket, refusal)
            return
        # From here the socket holds a slot (local and across replicas): it is
        # given back whatever happens next, or one bad handshake repeated a
        # hundred times would lock the tenant out until the slots expire.
        try:
            await self._serve_admitted(websocket, conn, cursor, principal)
        finally:
            await self._release(conn)

    async def _serve_admitted(
        self, websocket: WebSocket, conn: FeedConnection, cursor: str | None, principal: Principal
    ) -> None:
        try:
            position = await self.fanout.subscribe(conn.tenant_id)
        except REDIS_DOWN:
            await self._refuse(websocket, self._redis_refusal())
            return
        # A new client starts at the live position; a resuming one after its
        # cursor (the replay covers everything up to the live position).
        conn.set_cursor(cursor if cursor is not None else position)
        self.metrics.connections.inc()
        try:
            await websocket.accept()
            await self._run_until_expiry(
                websocket, conn, resume=cursor is not None, principal=principal
            )
        finally:
            self.metrics.connections.dec()

    async def _admit(self, conn: FeedConnection) -> None:
        limit = self.settings.ws_max_connections_per_tenant
        refusal = FeedRefusedError(
            WS_TRY_AGAIN_LATER, f"tenant connection limit {limit} reached", "tenant_limit"
        )
        if not self.registry.add(conn):
            raise refusal
        try:
            refused = await self.cap.acquire(conn.tenant_id, conn.conn_id, subject=conn.agent_id)
        except REDIS_DOWN as exc:
            # A feed without Redis would say `ready` and then deliver nothing
            # (docs/contracts.md: 1013 while Redis is down), even for a tenant
            # this replica already reads (no other Redis call on that path).
            self._drop_local(conn)
            log.info("feed refused, redis unreachable: %s", type(exc).__name__)
            raise self._redis_refusal() from None
        except BaseException:
            self._drop_local(conn)
            raise
        if refused == "subject_limit":
            self._drop_local(conn)
            per_subject = self.settings.ws_max_connections_per_subject
            raise FeedRefusedError(
                WS_TRY_AGAIN_LATER,
                f"connection limit {per_subject} per agent reached",
                "subject_limit",
            )
        if refused is not None:
            self._drop_local(conn)
            raise refusal

    def _drop_local(self, conn: FeedConnection) -> None:
        if self.registry.remove(conn):
            self.fanout.unsubscribe(conn.tenant_id)

    async def _release(self, conn: FeedConnection) -> None:
        self._drop_local(conn)
        try:
            await self.cap.release(conn.tenant_id, conn.conn_id)
        except REDIS_DOWN:
            log.info("slot of %s expires by itself (redis unreachable)", conn.conn_id)

    async def refuse_unavailable(self, websocket: WebSocket) -> None:
        """Refuse a socket with 1013 and the reconnect delay: Redis cannot be read."""
        await self._refuse(websocket, self._redis_refusal())

    def _redis_refusal(self) -> FeedRefusedError:
        delay = self.settings.ws_reconnect_delay
        return FeedRefusedError(
            WS_TRY_AGAIN_LATER,
            f"feed unavailable (redis); retry in {delay:g} s",
            "redis_unavailable",
        )

    async def _refuse(self, websocket: WebSocket, refusal: FeedRefusedError) -> None:
        self.metrics.count_failure(refusal.metric_reason)
        # Accepted first so that browsers, which never see a refused
        # handshake's status, can read the close code and reason.
        with contextlib.suppress(Exception):
            await websocket.accept()
            await websocket.close(code=refusal.code, reason=refusal.reason)

    # -- serving -------------------------------------------------------------------

    def _token_deadline(self, principal: Principal) -> float:
        """When (epoch seconds) a handshake with this socket's token would be refused.

        The verifier accepts a token until its ``exp`` plus JWT_LEEWAY_SECONDS;
        closing earlier would let a reconnect with the same token be accepted
        and closed again at once.
        """
        return principal.expires_at.timestamp() + self.settings.jwt_leeway_seconds

    async def _run_until_expiry(
        self, websocket: WebSocket, conn: FeedConnection, *, resume: bool, principal: Principal
    ) -> None:
        """`_run` until the token expires or is revoked, then close 1008 with the reason.

        The deadline covers the replay too: a slow client's long resume is no
        way to keep reading past the token.
        """
        loop = asyncio.get_running_loop()
        expires_at = self._token_deadline(principal)
        expiry = asyncio.timeout_at(loop.time() + (expires_at - time.time()))
        try:
            async with expiry:
                revoked = await self._run_unless_revoked(websocket, conn, resume, principal)
            if revoked:
                log.info("feed socket %s closed: its token was revoked", conn.conn_id)
                await self._close(websocket, WS_POLICY_VIOLATION, TOKEN_REVOKED_REASON)
        except TimeoutError:
            if not expiry.expired():
                raise
            log.debug("feed socket %s closed: its token expired", conn.conn_id)
            await self._close(websocket, WS_POLICY_VIOLATION, TOKEN_EXPIRED_REASON)

    async def _run_unless_revoked(
        self, websocket: WebSocket, conn: FeedConnection, resume: bool, principal: Principal
    ) -> bool:
        """`_run` until it ends or the token is revoked; True if it was revoked."""
        run = asyncio.create_task(
            self._run(websocket, conn, resume=resume), name=f"feed-run-{conn.conn_id}"
        )
        revoked = asyncio.create_task(
            self.verifier.wait_revoked(principal), name=f"feed-revoked-{conn.conn_id}"
        )
        done = await _first_to_end(run, revoked)
        if run in done:
            run.result()  # what _run raised, as when it was awaited directly
            return False
        return True

    async def _run(self, websocket: WebSocket, conn: FeedConnection, *, resume: bool) -> None:
        settings = self.settings
        try:
            replayed = 0
            if resume:
                replayed = await self._replay_stored(conn)
                replayed += await conn.replay()
            await conn.send_control(
                ready_frame(
                    tenant_id=conn.tenant_id,
                    replayed=replayed,
                    cursor=conn.cursor_id,
                    heartbeat_interval=settings.ws_heartbeat_interval,
                    reconnect_delay=settings.ws_reconnect_delay,
                )
            )
        except ResponseError as exc:
            # Redis refused a command of the replay: its input is the client's
            # cursor, so this is the client's error, not an outage (a 1013
            # would make it reconnect with the same cursor forever).
            self.metrics.count_failure("bad_last_event_id")
            log.info("replay of %s refused by redis: %s", conn.conn_id, exc)
            await self._close(
                websocket, WS_POLICY_VIOLATION, "last_event_id cannot be resumed from"
            )
            return
        except REDIS_DOWN:
            self.metrics.count_failure("redis_unavailable")
            await self._close(websocket, WS_TRY_AGAIN_LATER, self._redis_refusal().reason)
            return
        except Exception:
            # The client went away during the replay.
            return
        writer = asyncio.create_task(conn.run(), name=f"feed-writer-{conn.conn_id}")
        reader = asyncio.create_task(
            _until_disconnect(websocket), name=f"feed-reader-{conn.conn_id}"
        )
        done = await _first_to_end(writer, reader)
        if writer in done and not writer.cancelled():
            error = writer.exception()
            if isinstance(error, REDIS_DOWN):
                self.metrics.count_failure("redis_unavailable")
                await self._close(websocket, WS_TRY_AGAIN_LATER, self._redis_refusal().reason)
            elif error is not None and websocket.application_state == WebSocketState.CONNECTED:
                log.debug("feed writer of %s ended: %r", conn.conn_id, error)
                self.metrics.count_failure("internal_error")
                await self._close(websocket, WS_INTERNAL_ERROR, "feed writer failed")

    async def _replay_stored(self, conn: FeedConnection) -> int:
        """Replay from Postgres what the stream no longer holds after the cursor.

        The stream keeps the newest REALTIME_STREAM_MAXLEN events per tenant
        (and loses everything if Redis restarts without persistence). When its
        oldest entry is newer than the client's cursor, the events published in
        between are read from Postgres (by their recorded stream ids), up to
        REALTIME_DB_REPLAY_LIMIT; beyond that the client is told with a
        ``replay_truncated`` frame and the replay continues from the stream.

        Read a page at a time, each sent before the next is read, as the
        stream's catch-up does: a socket holds one page, not the whole replay.
        A page's size in events follows the last page's characters per event
        (`next_page_size`), and Postgres cuts it at REPLAY_PAGE_CHARS of
        stored documents, so small events followed by large ones cannot make
        one page large. The estimate keeps that cut rare: Postgres renders
        every row it measures, returned or not. Each page is its own short
        transaction, so a slow client holds no pool connection while its page
        is being sent.
        """
        first = await self.events.first_id(conn.tenant_id)
        before = parse_stream_id(first) if first is not None else None
        if before is not None and before <= conn.cursor:
            return 0
        limit = self.settings.realtime_db_replay_limit
        requested = conn.cursor_id
        after = conn.cursor
        read = sent = 0
        page = min(conn.replay_page, FIRST_REPLAY_PAGE)
        while True:
            room = limit - read
            # One row beyond the limit tells "exactly the limit" from "more".
            count = min(page, room + 1)
            async with self.db.tenant(conn.tenant_id) as db_conn:
                rows = await store.published_between(
                    db_conn, after=after, before=before, limit=count, max_chars=REPLAY_PAGE_CHARS
                )
            if not rows:
                return sent
            entries = [
                FeedEntry.from_body(
                    stream_id,
                    event_id=event.event_id,
                    agent_id=event.agent_id,
                    accepted_at=event.accepted_at,
                    body=event.body().decode(),
                )
                for stream_id, event in rows[:room]
            ]
            sent += await conn.send_entries(entries)
            if len(rows) > room:
                await conn.send_control(
                    replay_truncated_frame(requested=requested, resumed_from=first)
                )
                return sent
            read += len(entries)
            after = entries[-1].key
            chars = sum(len(entry.frame) for entry in entries)
            page = next_page_size(len(entries), chars, most=conn.replay_page)

    @staticmethod
    async def _close(websocket: WebSocket, code: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            await websocket.close(code=code, reason=reason)


async def _first_to_end(*tasks: asyncio.Task[Any]) -> set[asyncio.Task[Any]]:
    """Wait until one of ``tasks`` ends, then cancel and reap the others; return those done.

    Also when the wait itself is cancelled (the token's expiry): no task may
    outlive the socket (a writer would keep sending).
    """
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return done


async def _until_disconnect(websocket: WebSocket) -> None:
    # Client messages carry nothing the feed needs; reading them is how a
    # disconnect is noticed promptly.
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
