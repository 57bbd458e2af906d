"""The outbox of rollback notices: every recorded rollback's Slack message, posted once.

Posting after the commit lost the message when the handler died in between:
Alertmanager's retry is a duplicate of a recorded incident and tells nobody.
So the message is a row of ``rollback_notices``, inserted by :func:`enqueue`
in the transaction that records the incident (or its undo's outcome), and
posted afterwards by :func:`deliver`:

- from the webhook, for the incident it handled, by the first copy and by
  every duplicate (Alertmanager's retry after a crash picks the row up), once
  the notice is due;
- every :data:`PASS_SECONDS` by each replica's background pass
  (:func:`watch_notices`), for whatever is due, and by the operator's CLI.

A row is claimed before the post: an ``UPDATE`` of rows selected
``FOR UPDATE SKIP LOCKED`` that are neither sent nor leased sets a lease of
:data:`LEASE_SECONDS` (longer than a post can take), so two replicas or two
copies of a webhook never post the same row at once. ``sent_at`` is set once
Slack answered 2xx. A failed post releases the lease and waits
:func:`backoff_seconds`; after :data:`MAX_ATTEMPTS` the row is given up and
waits for an operator (``enterprisehub rollback notices --resend``). Only a
handler killed between Slack's answer and marking the row sent posts twice:
its lease expires and the next pass posts again.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import SecretStr

from services.common.database import Database
from services.common.tasks import finish_before_cancelling, repeat
from services.rollback.metrics import RollbackMetrics
from services.rollback.notify import post_slack

log = logging.getLogger(__name__)

#: How often each replica posts what is due and reads the gauges.
PASS_SECONDS = 15.0
#: Longer than a post can take (notify.TIMEOUT_SECONDS); a lease outlives only a dead poster.
LEASE_SECONDS = 60.0
#: Attempts before a notice is given up: 9 waits, 15 s doubling to 10 minutes, are
#: about 46 minutes, long enough to ride out a usual Slack incident.
MAX_ATTEMPTS = 10
#: How many notices one call posts at the most.
BATCH = 20

ENQUEUE = (
    "INSERT INTO rollback_notices (incident_key, kind, text) VALUES ($1, $2, $3) "
    "ON CONFLICT (incident_key, kind) DO NOTHING"
)
#: One notice: $1 only this incident's (NULL: any); due, unless $5 (an
#: operator's resend); never one this call tried already ($4).
CLAIM = (
    "UPDATE rollback_notices SET attempts = attempts + 1, claim_token = $2, "
    "claimed_until = now() + make_interval(secs => $3) "
    "WHERE notice_id = (SELECT notice_id FROM rollback_notices "
    "WHERE sent_at IS NULL AND given_up_at IS NULL "
    "AND (claimed_until IS NULL OR claimed_until < now()) "
    "AND ($1::varchar IS NULL OR incident_key = $1::varchar) "
    "AND (next_attempt_at <= now() OR $5::boolean) AND NOT notice_id = ANY($4::bigint[]) "
    "ORDER BY notice_id LIMIT 1 FOR UPDATE SKIP LOCKED) "
    "RETURNING notice_id, incident_key, kind, text, attempts"
)
#: Sent stands even when the lease had run out: Slack has the message.
MARK_SENT = (
    "UPDATE rollback_notices SET sent_at = now(), claimed_until = NULL, last_error = NULL "
    "WHERE notice_id = $1 AND sent_at IS NULL"
)
#: Only while this claim holds the row: a later claim's record stands.
MARK_FAILED = (
    "UPDATE rollback_notices SET claimed_until = NULL, last_error = $3, "
    "next_attempt_at = now() + make_interval(secs => $4), "
    "given_up_at = CASE WHEN attempts >= $5 THEN now() END "
    "WHERE notice_id = $1 AND claim_token = $2 AND sent_at IS NULL "
    "RETURNING given_up_at IS NOT NULL"
)
UNSENT_STATS = (
    "SELECT count(*) FILTER (WHERE given_up_at IS NULL) AS pending, "
    "count(*) FILTER (WHERE given_up_at IS NOT NULL) AS given_up, "
    "coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS oldest "
    "FROM rollback_notices WHERE sent_at IS NULL"
)
UNSENT = (
    "SELECT notice_id, incident_key, kind, text, created_at, attempts, last_error, "
    "given_up_at IS NOT NULL AS given_up FROM rollback_notices "
    "WHERE sent_at IS NULL ORDER BY notice_id"
)
RESEND = (
    "UPDATE rollback_notices SET given_up_at = NULL, attempts = 0, next_attempt_at = now() "
    "WHERE sent_at IS NULL AND given_up_at IS NOT NULL"
)


def backoff_seconds(attempts: int) -> float:
    """The wait after the ``attempts``-th failed post: 15 s doubling, at most 10 minutes."""
    return float(min(15 * 2 ** max(attempts - 1, 0), 600))


async def enqueue(conn: Any, *, incident_key: str, kind: str, text: str) -> None:
    """Add the incident's ``kind`` notice on ``conn``, in the caller's transaction
    (a second one of the same incident and kind is ignored)."""
    await conn.execute(ENQUEUE, incident_key, kind, text)


@dataclass(frozen=True, slots=True)
class UnsentNotice:
    """A notice Slack has not taken yet."""

    notice_id: int
    incident_key: str
    kind: str
    text: str
    created_at: datetime
    attempts: int
    last_error: str | None
    given_up: bool


async def deliver(
    db: Database,
    webhook_url: SecretStr,
    metrics: RollbackMetrics | None = None,
    *,
    incident_key: str | None = None,
    now: bool = False,
) -> int:
    """Post the due notices this call claims, oldest first; the number Slack took.

    With ``incident_key`` only that incident's (a webhook's copy, an operator's
    command); with ``now``, due or not (an operator asked). A new notice is due
    at once; a failed post is recorded, never raised, and due again after its
    backoff, so a burst of webhook copies cannot hammer a failing Slack.
    """
    token = uuid.uuid4()
    tried: list[int] = []
    sent = 0
    # One at a time: each lease starts right before its own post, so a slow
    # Slack cannot outlast the lease of a notice still waiting in a batch.
    while len(tried) < BATCH:
        async with db.unscoped() as conn:
            row = await conn.fetchrow(CLAIM, incident_key, token, LEASE_SECONDS, tried, now)
        if row is None:
            break
        tried.append(row["notice_id"])
        # Once posted, Slack may have it: a shutdown waits for the post's answer
        # and its record, or the next pass would post the notice again.
        error, given_up = await finish_before_cancelling(_post(db, webhook_url, row, token))
        if error is None:
            sent += 1
        elif given_up:
            log.error(
                "gave up the %s notice of incident %s after %d attempts (%s): %s",
                row["kind"],
                row["incident_key"],
                row["attempts"],
                error,
                row["text"],
            )
        if metrics is not None:
            metrics.notice_posts.labels(outcome="sent" if error is None else "failed").inc()
    return sent


async def _post(
    db: Database, webhook_url: SecretStr, row: Any, token: uuid.UUID
) -> tuple[str | None, bool]:
    """Post one claimed notice and record the outcome: (why not sent, given up)."""
    error = await post_slack(webhook_url, row["text"])
    async with db.unscoped() as conn:
        if error is None:
            await conn.execute(MARK_SENT, row["notice_id"])
            return None, False
        given_up = await conn.fetchval(
            MARK_FAILED,
            row["notice_id"],
            token,
            error,
            backoff_seconds(row["attempts"]),
            MAX_ATTEMPTS,
        )
    return error, bool(given_up)


async def refresh_notice_gauges(db: Database, metrics: RollbackMetrics) -> None:
    """Set the unsent notices' gauges from Postgres."""
    async with db.unscoped() as conn:
        row = await conn.fetchrow(UNSENT_STATS)
    metrics.notices_unsent.labels(state="pending").set(row["pending"])
    metrics.notices_unsent.labels(state="given_up").set(row["given_up"])
    metrics.oldest_unsent_notice_age.set(row["oldest"])


async def watch_notices(
    db: Database, webhook_url: SecretStr | None, metrics: RollbackMetrics
) -> None:
    """Every :data:`PASS_SECONDS` until cancelled: post what is due, then read the gauges.

    Without a Slack URL the handler queues nothing, but an operator's command
    may have (the gauges then show it waiting).
    """

    async def one_pass() -> None:
        if webhook_url is not None:
            await deliver(db, webhook_url, metrics)
        await refresh_notice_gauges(db, metrics)

    await repeat(one_pass, every=PASS_SECONDS, what="rollback notice pass")


async def unsent_notices(db: Database) -> list[UnsentNotice]:
    """Every notice not sent yet (pending or given up), oldest first."""
    async with db.unscoped() as conn:
        rows = await conn.fetch(UNSENT)
    return [UnsentNotice(**dict(row)) for row in rows]


async def resend_given_up(db: Database) -> int:
    """Make every given-up notice due again with fresh attempts; how many."""
    async with db.unscoped() as conn:
        status: str = await conn.execute(RESEND)
    return int(status.split()[-1])
