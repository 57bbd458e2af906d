"""SQL on ``realtime_intelligence_events``, always scoped to one tenant.

Every statement runs inside ``Database.tenant()``, except the insert, which
calls ``realtime_store_events`` (``Database.tenant_call``), a function that
scopes its own transaction first. Row-level security scopes every statement
to the transaction's tenant, so none of these statements filters by tenant
itself; ``tenant_id`` is written on insert and the policy's ``WITH CHECK``
refuses any other value.

Columns used (revision 0001 plus 0002_realtime_delivery): ``event_id``,
``tenant_id``, ``lead_id``, ``event_type``, ``intelligence_data`` (score,
model version, lead features, CRM data), ``created_at`` (set to the moment
the ingest accepted the event, the start of the latency clock),
``websocket_latency_seconds`` (the fastest first delivery of the event over
all replicas: each replica reports the latency of the first socket it sent
the event to, and the column keeps the minimum), ``agent_id``, ``stream_id``
``published_at`` (NULL until the event is in the Redis stream: the
outbox) and ``stored_at`` (revision 0022: when the row was inserted, which the
relay's grace counts from).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from services.common.database import Database
from services.realtime.frames import encode_event_body

# A whole group of events is stored by one call of the SQL function of
# revision 0003_realtime_store_events, which scopes its own transaction to the
# tenant first: one round trip instead of a tenant transaction's three, and
# it is on every event's path to delivery. The documents travel as text
# (orjson) and are cast there, so no per-element codec runs.
STORE_EVENTS_FUNCTION = "realtime_store_events"

# Publish marks and first-delivery latencies of one tenant in one statement,
# so an event a replica both published and delivered gets one row update
# instead of two. A NULL stream id means "no mark" and a NULL latency "no
# latency" for that event; a mark never overwrites an earlier one and a
# latency keeps the minimum.
#
# Rows are found through the primary key. The filter is deliberately not a
# bare "published_at IS NULL": that matches the outbox's partial index, whose
# statistics say "almost empty" (the normal state), and the planner then
# reads every unpublished entry of the tenant to mark a handful of rows:
# O(backlog) per statement, quadratic for a relay working through a backlog
# after a Redis outage. (On a table that was never analyzed, e.g. during the
# first minute of a fresh database, any tenant looks one row long and the
# planner scans the tenant instead; autovacuum's first analyze ends that.)
MARK_AND_RECORD = """
UPDATE realtime_intelligence_events AS e
SET stream_id = CASE WHEN u.stream_id IS NOT NULL AND e.published_at IS NULL
                     THEN u.stream_id ELSE e.stream_id END,
    published_at = CASE WHEN u.stream_id IS NOT NULL AND e.published_at IS NULL
                        THEN now() ELSE e.published_at END,
    websocket_latency_seconds = CASE WHEN u.s IS NULL THEN e.websocket_latency_seconds
                                     ELSE LEAST(COALESCE(e.websocket_latency_seconds, u.s), u.s)
                                END
FROM unnest($1::uuid[], $2::text[], $3::float8[]) AS u(event_id, stream_id, s)
WHERE e.event_id = u.event_id
  AND (u.s IS NOT NULL OR e.published_at IS NULL)
"""

# The columns of a StoredEvent, in every query that reads events back.
_EVENT_COLUMNS = """event_id::text AS event_id, lead_id, event_type, agent_id, intelligence_data,
       extract(epoch FROM created_at)::float8 AS accepted_at"""

# Oldest first so relayed events keep their acceptance order; SKIP LOCKED lets
# replicas relay the same tenant concurrently without publishing a row twice.
# The grace counts from the row's insert (stored_at), not from the event's
# acceptance (created_at): the insert can come seconds after it (the group's
# turn, a pool connection), and such a row was relayed while its own ingest
# was publishing it.
UNPUBLISHED = f"""
SELECT {_EVENT_COLUMNS}
FROM realtime_intelligence_events
WHERE published_at IS NULL AND stored_at < now() - make_interval(secs => $1)
ORDER BY created_at, event_id
LIMIT $2
FOR UPDATE SKIP LOCKED
"""  # noqa: S608 - constants only

# A stream id's two parts, written out exactly as the expression index of
# revision 0002_realtime_delivery declares them, so that the replays use it.
_STREAM_POSITION = "split_part(stream_id, '-', 1)::bigint, split_part(stream_id, '-', 2)::bigint"

# One page of the events published after a stream position (and, for
# REPLAY_BETWEEN, before a second one), in stream order: at most a number of
# rows, and only as many of them as fit in a budget of characters of stored
# documents (the first row always, whatever its size). A resume after Redis
# lost its stream used to read up to REALTIME_DB_REPLAY_LIMIT rows in one
# statement: 10,000 events of 64 KiB held 640 MiB per socket. The budget is
# applied by Postgres, so the page that reaches the service is bounded even
# when small events are followed by large ones. The window runs over the index
# order (ROWS frame: streamed, nothing buffered per partition).
_REPLAY = f"""
SELECT event_id, lead_id, event_type, agent_id, intelligence_data, accepted_at, stream_id
FROM (
    SELECT {_EVENT_COLUMNS}, stream_id,
           row_number() OVER page_order AS n,
           sum(length(intelligence_data::text)) OVER page_order AS chars_through
    FROM realtime_intelligence_events
    WHERE stream_id IS NOT NULL
      AND ({_STREAM_POSITION}) > ($1::bigint, $2::bigint){{before}}
    WINDOW page_order AS (ORDER BY {_STREAM_POSITION} ROWS UNBOUNDED PRECEDING)
    ORDER BY {_STREAM_POSITION}
    LIMIT {{limit}}
) AS page
WHERE n = 1 OR chars_through <= {{max_chars}}
ORDER BY n
"""  # noqa: S608 - constants only
REPLAY_BETWEEN = _REPLAY.format(
    before=f"\n      AND ({_STREAM_POSITION}) < ($3::bigint, $4::bigint)",
    limit="$5",
    max_chars="$6",
)
REPLAY_AFTER = _REPLAY.format(before="", limit="$3", max_chars="$4")

UNPUBLISHED_AMONG = f"""
SELECT {_EVENT_COLUMNS}
FROM realtime_intelligence_events
WHERE event_id = ANY($1::uuid[]) AND published_at IS NULL
ORDER BY created_at, event_id
FOR UPDATE SKIP LOCKED
"""  # noqa: S608 - constants only

FIND_STREAM_ID = """
SELECT stream_id FROM realtime_intelligence_events WHERE event_id = $1::uuid
"""


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """What the relay needs to publish a stored event."""

    event_id: str
    lead_id: str
    event_type: str
    agent_id: str | None
    score: float
    model_version: str
    data: dict[str, Any]
    accepted_at: float

    def body(self) -> bytes:
        """The event's frame body, as the ingest encoded it."""
        return encode_event_body(
            event_id=self.event_id,
            lead_id=self.lead_id,
            event_type=self.event_type,
            agent_id=self.agent_id,
            score=self.score,
            model_version=self.model_version,
            data=self.data,
            accepted_at=self.accepted_at,
        )


def intelligence_data(
    *, score: float, model_version: str, lead: dict[str, Any], data: dict[str, Any]
) -> dict[str, Any]:
    """The JSONB document stored for an event."""
    return {"score": score, "model_version": model_version, "lead": lead, "data": data}


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An accepted event about to be stored."""

    event_id: str
    lead_id: str
    event_type: str
    agent_id: str | None
    document: dict[str, Any]
    accepted_at: float


async def insert_events(db: Database, *, tenant_id: str, rows: list[NewEvent]) -> None:
    """Store events of one tenant as not yet published: one transaction, one round trip."""
    await db.tenant_call(tenant_id, STORE_EVENTS_FUNCTION, *_store_arguments(rows))


def _store_arguments(rows: list[NewEvent]) -> list[list[Any]]:
    """The arrays ``realtime_store_events`` takes after the tenant id."""
    return [
        [row.event_id for row in rows],
        [row.lead_id for row in rows],
        [row.event_type for row in rows],
        [row.agent_id for row in rows],
        [orjson.dumps(row.document).decode() for row in rows],
        [row.accepted_at for row in rows],
    ]


async def mark_published(conn: Any, stream_ids: dict[str, str]) -> None:
    """Record the stream ids of published events (``{event_id: stream_id}``)."""
    await mark_and_record(conn, stream_ids, {})


async def record_latencies(conn: Any, latencies: dict[str, float]) -> None:
    """Keep each event's fastest first delivery (``{event_id: seconds}``)."""
    await mark_and_record(conn, {}, latencies)


async def mark_and_record(conn: Any, marks: dict[str, str], latencies: dict[str, float]) -> None:
    """Write publish marks and delivery latencies of one tenant's events, one update per row."""
    if not marks and not latencies:
        return
    # Sorted: replicas updating overlapping rows lock them in the same order.
    event_ids = sorted(marks.keys() | latencies.keys())
    await conn.execute(
        MARK_AND_RECORD,
        event_ids,
        [marks.get(event_id) for event_id in event_ids],
        # Clamped at 0: the ingest and the sending replica may be different
        # hosts, whose clocks differ a little (the column CHECKs >= 0).
        [None if (s := latencies.get(event_id)) is None else max(0.0, s) for event_id in event_ids],
    )


def _stored(row: Any) -> StoredEvent:
    document = row["intelligence_data"] or {}
    return StoredEvent(
        event_id=row["event_id"],
        lead_id=row["lead_id"],
        event_type=row["event_type"],
        agent_id=row["agent_id"],
        score=float(document.get("score", 0.0)),
        model_version=str(document.get("model_version", "")),
        data=document.get("data") or {},
        accepted_at=float(row["accepted_at"]),
    )


async def unpublished(conn: Any, *, older_than: float, limit: int) -> list[StoredEvent]:
    """Lock and return unpublished events older than ``older_than`` seconds."""
    rows = await conn.fetch(UNPUBLISHED, older_than, limit)
    return [_stored(row) for row in rows]


async def published_between(
    conn: Any,
    *,
    after: tuple[int, int],
    before: tuple[int, int] | None,
    limit: int,
    max_chars: int,
) -> list[tuple[str, StoredEvent]]:
    """A page of ``(stream_id, event)`` published after ``after`` (and before ``before``).

    At most ``limit`` events, fewer when their stored documents would exceed
    ``max_chars`` characters together (never none while one is left): an empty
    page is the end, a short one is not.
    """
    if before is None:
        rows = await conn.fetch(REPLAY_AFTER, after[0], after[1], limit, max_chars)
    else:
        rows = await conn.fetch(
            REPLAY_BETWEEN, after[0], after[1], before[0], before[1], limit, max_chars
        )
    return [(row["stream_id"], _stored(row)) for row in rows]


async def find_stream_id(conn: Any, event_id: str) -> tuple[bool, str | None]:
    """``(found, stream_id)`` of one of the tenant's events."""
    row = await conn.fetchrow(FIND_STREAM_ID, event_id)
    if row is None:
        return False, None
    return True, row["stream_id"]


async def unpublished_among(conn: Any, event_ids: list[str]) -> list[StoredEvent]:
    """Lock and return those of ``event_ids`` still unpublished, oldest first."""
    rows = await conn.fetch(UNPUBLISHED_AMONG, event_ids)
    return [_stored(row) for row in rows]


# Revision 0004: a request's Idempotency-Key, stored in the transaction of its
# events. Expired keys of the tenant are deleted a few at a time as keys are
# claimed, so the table holds about a day of keys.
DELETE_EXPIRED_KEYS = """
DELETE FROM realtime_idempotency_keys
WHERE ctid = ANY(ARRAY(
    SELECT ctid FROM realtime_idempotency_keys WHERE expires_at <= now() LIMIT 100
)) OR (key = $1 AND expires_at <= now())
"""
CLAIM_KEY = """
INSERT INTO realtime_idempotency_keys (key, request_sha256, response, expires_at)
VALUES ($1, $2, $3::text::jsonb, now() + make_interval(secs => $4))
ON CONFLICT (tenant_id, key) DO NOTHING
RETURNING key
"""
FIND_KEY = """
SELECT request_sha256, response::text AS response FROM realtime_idempotency_keys
WHERE key = $1
"""
SAVE_RESPONSE = """
UPDATE realtime_idempotency_keys SET response = $2::text::jsonb WHERE key = $1
"""
STORE_EVENTS_IN_TRANSACTION = (
    f"SELECT {STORE_EVENTS_FUNCTION}($1, $2::uuid[], $3::text[], $4::text[], $5::text[], "
    "$6::text[], $7::float8[])"
)


@dataclass(frozen=True, slots=True)
class KnownKey:
    """An Idempotency-Key already used by the tenant: the body it came with and its answer."""

    request_sha256: bytes
    response: dict[str, Any]


async def insert_events_once(
    db: Database,
    *,
    tenant_id: str,
    rows: list[NewEvent],
    key: str,
    request_sha256: bytes,
    response: dict[str, Any],
    ttl_seconds: float,
) -> KnownKey | None:
    """Store the events and remember ``key`` with ``response``, in one transaction.

    Returns None when stored; when the tenant already used ``key`` (and it has
    not expired), stores nothing and returns what was remembered. A request
    racing another with the same key waits for that one's transaction (the
    primary key's index) and then sees its answer.
    """
    async with db.tenant(tenant_id) as conn:
        await conn.execute(DELETE_EXPIRED_KEYS, key)
        claimed = await conn.fetchval(
            CLAIM_KEY, key, request_sha256, orjson.dumps(response).decode(), ttl_seconds
        )
        if claimed is None:
            row = await conn.fetchrow(FIND_KEY, key)
            return KnownKey(
                request_sha256=bytes(row["request_sha256"]), response=orjson.loads(row["response"])
            )
        await conn.fetchval(STORE_EVENTS_IN_TRANSACTION, tenant_id, *_store_arguments(rows))
    return None


async def save_response(
    db: Database, *, tenant_id: str, key: str, response: dict[str, Any]
) -> None:
    """Replace a key's remembered answer (once its events are published)."""
    async with db.tenant(tenant_id) as conn:
        await conn.execute(SAVE_RESPONSE, key, orjson.dumps(response).decode())
