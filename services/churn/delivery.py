"""Delivering one outbox row exactly once: claim, contact rules, send, record.

The delivery job (``churn.deliver``) runs `deliver` for one outbox row; a
group job (``churn.deliver_group``, queue.py) runs it for each row of an
intervention in turn (`deliver_group`):

1. Claim. The common case is one statement, ``churn_claim_send`` (revision
   0012): in its own transaction it locks the lead and then the row, and
   marks the row ``sending`` with one more attempt if it is ``pending`` or
   ``sending``, its lead active and its attempts within the retry count; it
   returns the lead's time zone and recent contacts, and the contact rules
   (quiet hours in the lead's zone, frequency caps) are checked here. When
   anything needs deciding (the function says so, or a contact rule says no,
   or no CRM is configured, or the row was already ``sending``: a resend
   after a dead worker), a tenant transaction takes the decision under
   the same locks, after putting back the row the function claimed: a row no
   longer ``pending``/``sending`` (delivered, cancelled by a re-engaging lead,
   dead-lettered) ends the job; a lead no longer active, or one that
   re-engaged after the intervention was decided, or a tenant the
   ``churn_prevention`` flag (once read) no longer lets in, cancels it; during
   the lead's quiet hours the row is re-timed and a new job deferred for the
   end of them; a lead over its frequency cap gets the row ``suppressed``;
   otherwise the row becomes ``sending`` with one more attempt.
2. Send through the CRM with the row's idempotency key, outside any
   transaction.
3. Record the result: ``delivered`` (and the intervention's channels,
   status and detection-to-delivery latency) in one statement,
   ``churn_record_delivery``; or, on a retryable failure, back to
   ``pending`` with the error and a new job after an exponential backoff
   (``cancelled`` instead when the lead re-engaged while it was in flight)
   (the CRM's ``Retry-After`` when longer), or ``dead_letter`` once
   CHURN_INTERVENTION_RETRY_COUNT retries are spent or the CRM refused the
   request itself.

A resend of a row claimed less than the CRM timeout (plus the time to
record the answer) ago waits until then: the job may be running twice (a
requeue of a worker that was slow, not dead), the first send still at the
CRM. A worker killed between 1 and 3 leaves the row ``sending`` and its job
``doing``; procrastinate's stalled-job recovery (runtime.py) runs the job
again, which claims the row again (``sending`` is claimable) and resends with
the same key. Every other path writes the row's next state and its next job
in one transaction, so nothing is lost or queued twice.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from services.churn.contact_rules import InvalidTimeZone, QuietHours, cap_allows
from services.churn.crm import (
    LeadConnectorClient,
    PermanentSendError,
    RetryableSendError,
    SendError,
    SendRequest,
)
from services.churn.detection import NOT_CONFIGURED
from services.churn.metrics import ChurnMetrics
from services.churn.queue import (
    SingleDelivery,
    defer_delivery_jobs,
    defer_unless_queued,
    pending_backlog,
)
from services.churn.stages import LEAD_CHANNELS

log = logging.getLogger(__name__)

SORTED_LEAD_CHANNELS: Final = sorted(LEAD_CHANNELS)
#: The reason of a send cancelled because its lead re-engaged (signals.py too).
LEAD_RE_ENGAGED: Final = "lead_re_engaged"
#: The reason of a send cancelled because its tenant left the rollout (the kill switch).
FEATURE_DISABLED: Final = "feature_disabled"

Result = Literal[
    "delivered",
    "retry",
    "rescheduled",
    "suppressed",
    "cancelled",
    "dead_letter",
    "not_sent",
    "skipped",
    "in_flight",
]
#: After a send's timeout, the time its worker may still take to record the
#: answer (one statement) before its claim is treated as abandoned.
RECORD_MARGIN_SECONDS: Final = 5.0
# The lead first, then its outbox row: the order every writer of both follows.
LOCK_LEAD_SQL: Final = """
SELECT 1 FROM churn_leads
WHERE lead_id = (SELECT lead_id FROM churn_outbox WHERE outbox_id = $1)
FOR UPDATE
"""
#: Whether the lead (``l``) re-engaged after its intervention (``i``) was
#: decided: the signal cancels the sends still ``pending`` then, and this
#: cancels the ones it could not (in flight then, back for a retry or a replay).
RE_ENGAGED_SQL: Final = "coalesce(l.re_engaged_at >= i.detected_at, false)"
CLAIM_SQL: Final = f"""
SELECT o.outbox_id, o.status, o.attempts, o.channel, o.idempotency_key, o.lead_id,
       o.intervention_id, i.intervention_stage AS stage, i.detected_at,
       l.timezone, l.crm_contact_id, l.agent_id, l.status AS lead_status,
       {RE_ENGAGED_SQL} AS re_engaged, o.claimed_at
FROM churn_outbox o
JOIN churn_interventions i ON i.intervention_id = o.intervention_id
JOIN churn_leads l ON l.tenant_id = o.tenant_id AND l.lead_id = o.lead_id
WHERE o.outbox_id = $1
FOR UPDATE OF o
"""  # noqa: S608 - constant parts only
CLAIM_FUNCTION: Final = "churn_claim_send"
RECORD_FUNCTION: Final = "churn_record_delivery"
#: ``churn_claim_send``'s OUT parameters in order (it returns an anonymous
#: record, which asyncpg hands back as a tuple).
CLAIM_FIELDS: Final = (
    "verdict",
    "previous_status",
    "previous_claimed_at",
    "attempts",
    "channel",
    "idempotency_key",
    "lead_id",
    "intervention_id",
    "stage",
    "timezone",
    "crm_contact_id",
    "agent_id",
    "sent_last_day",
    "sent_last_week",
)
# Puts back a row ``churn_claim_send`` claimed, so that the decision is taken
# on the state it found (the guard: nothing else has touched it since).
RESTORE_SQL: Final = """
UPDATE churn_outbox SET status = $2, attempts = attempts - 1, claimed_at = $3
WHERE outbox_id = $1 AND status = 'sending' AND attempts = $4
"""
# A group's rows still to send that no job of their own has taken over.
GROUP_ROWS_SQL: Final = """
SELECT o.outbox_id FROM churn_outbox o
WHERE o.outbox_id = ANY($1::uuid[]) AND o.status IN ('pending', 'sending')
  AND NOT EXISTS (SELECT 1 FROM procrastinate_jobs j
                  WHERE j.queueing_lock = o.outbox_id::text AND j.status IN ('todo', 'doing'))
"""
CONTACTS_SQL: Final = """
SELECT count(DISTINCT intervention_id) FILTER (WHERE coalesce(delivered_at, claimed_at) > $3),
       count(DISTINCT intervention_id)
FROM churn_outbox
WHERE lead_id = $1 AND intervention_id <> $2 AND channel = ANY($4::text[])
  AND (status = 'delivered' OR status = 'sending')
  AND coalesce(delivered_at, claimed_at) > $5
"""


@dataclass(frozen=True)
class DeliveryPolicy:
    """The settings a delivery needs."""

    retry_count: int
    retry_base_seconds: float
    retry_max_seconds: float
    quiet_hours: QuietHours
    max_per_day: int
    max_per_week: int
    #: GHL_TIMEOUT_SECONDS: how long a send may still be in flight after its claim.
    send_timeout_seconds: float

    def backoff(self, retries_done: int, retry_after: float | None) -> float:
        """Exponential backoff for the ``retries_done``-th retry, at least ``retry_after``."""
        delay = min(self.retry_base_seconds * 2 ** max(retries_done - 1, 0), self.retry_max_seconds)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.retry_max_seconds))
        return delay


@dataclass
class Deliverer:
    """Everything `deliver` uses: the pool, the CRM client (None: not configured)."""

    db: Any
    crm: LeadConnectorClient | None
    policy: DeliveryPolicy
    metrics: ChurnMetrics | None = None
    #: True when the tenant is known to be outside the ``churn_prevention``
    #: rollout (the flag read and saying no): its sends are cancelled, since
    #: sending is what the flag turns off (its signals are still stored).
    outside_rollout: Callable[[str], bool] = field(default=lambda _: False)

    async def deliver(
        self, *, tenant_id: str, outbox_id: str, priority: int | None = None
    ) -> Result:
        """Run one delivery job (see the module docstring); return what happened.

        ``priority`` is the job's queue position (detection.py): a retry keeps
        it, so it goes out as soon as its backoff ends instead of behind the
        sends its tenant queued after it (for a tenant with thousands waiting,
        that was the whole backlog on top of the backoff).
        """
        now = datetime.now(UTC)
        claimed = None
        outside = self.outside_rollout(tenant_id)
        if self.crm is not None:
            claimed = await self._claim(tenant_id, outbox_id, now)
            if claimed is not None and claimed["verdict"] == "skipped":
                return "skipped"
        row: Any
        if (
            claimed is not None
            and claimed["verdict"] == "claimed"
            # A resend (the row was left ``sending``: its worker died, its
            # job ran twice) is decided in full: its lead may have
            # re-engaged since (the signal cancels pending rows only).
            and claimed["previous_status"] == "pending"
            and not outside
            and self._contact_allowed(claimed, now)
        ):
            row = claimed
        else:
            decided = await self._claim_deciding(
                tenant_id, outbox_id, now, claimed, outside=outside
            )
            if isinstance(decided, str):
                return decided  # type: ignore[return-value]
            row = decided
        attempt = row["attempts"] + 1
        assert self.crm is not None  # _before_send settled the unconfigured case
        request = SendRequest(
            channel=row["channel"],
            contact_id=row["crm_contact_id"],
            agent_id=row["agent_id"],
            stage=row["stage"],
            idempotency_key=row["idempotency_key"],
        )
        try:
            delivery = await self.crm.send(request)
        except SendError as exc:
            return await self._failed(tenant_id, row, attempt, exc, priority)
        self._count_attempt(row["channel"], "delivered")
        return await self._delivered(tenant_id, row, delivery.provider_id)

    async def deliver_group(
        self,
        *,
        tenant_id: str,
        outbox_ids: Sequence[str],
        priority: int | None = None,
        rerun: bool = False,
    ) -> list[Result]:
        """Run one group job (queue.py): `deliver` each of an intervention's rows in turn.

        Each row keeps its own claim, idempotency key and result; a row that
        has to wait (a retry, quiet hours) gets a ``churn.deliver`` job of its
        own and the group goes on with the next. On a ``rerun`` (the job's
        worker died, or the job failed and procrastinate retried it) a row
        already handed to a job of its own is left to that job: one job per
        row at a time, as with ``churn.deliver`` alone.
        """
        if rerun:
            async with self.db.tenant(tenant_id) as conn:
                owned = {
                    str(row["outbox_id"])
                    for row in await conn.fetch(GROUP_ROWS_SQL, [uuid.UUID(i) for i in outbox_ids])
                }
            outbox_ids = [i for i in outbox_ids if i in owned]
        return [
            await self.deliver(tenant_id=tenant_id, outbox_id=outbox_id, priority=priority)
            for outbox_id in outbox_ids
        ]

    async def _claim(self, tenant_id: str, outbox_id: str, now: datetime) -> dict[str, Any]:
        """``churn_claim_send``: the common claim in one statement (module docstring)."""
        record = await self.db.tenant_call(
            tenant_id,
            CLAIM_FUNCTION,
            uuid.UUID(outbox_id),
            now,
            self.policy.retry_count,
            now - timedelta(days=1),
            now - timedelta(days=7),
            SORTED_LEAD_CHANNELS,
        )
        row = dict(zip(CLAIM_FIELDS, record, strict=True))
        # The keys the decision path's rows have (CLAIM_SQL).
        row["outbox_id"] = uuid.UUID(outbox_id)
        row["status"] = row["previous_status"]
        row["lead_status"] = "active"
        return row

    def _contact_allowed(self, row: Any, now: datetime) -> bool:
        """Whether the contact rules let a claimed row go out now (tasks: always)."""
        if row["channel"] not in LEAD_CHANNELS:
            return True
        return self._quiet_until(row, now) <= now and cap_allows(
            row["sent_last_day"],
            row["sent_last_week"],
            per_day=self.policy.max_per_day,
            per_week=self.policy.max_per_week,
        )

    def _quiet_until(self, row: Any, now: datetime) -> datetime:
        """``now``, or the end of the quiet hours in the lead's zone (UTC for an unknown one)."""
        try:
            return self.policy.quiet_hours.next_allowed(now, row["timezone"])
        except InvalidTimeZone:
            return self.policy.quiet_hours.next_allowed(now, "UTC")

    async def _claim_deciding(
        self,
        tenant_id: str,
        outbox_id: str,
        now: datetime,
        claimed: dict[str, Any] | None,
        *,
        outside: bool = False,
    ) -> Result | Any:
        """Claim in a tenant transaction that decides every case; a `Result` if not sent.

        ``claimed``: what ``churn_claim_send`` returned; a row it claimed is
        put back first, so the decision is taken on the state it found.
        """
        async with self.db.tenant(tenant_id) as conn:
            await conn.execute(LOCK_LEAD_SQL, outbox_id)
            if claimed is not None and claimed["verdict"] == "claimed":
                await conn.execute(
                    RESTORE_SQL,
                    claimed["outbox_id"],
                    claimed["previous_status"],
                    claimed["previous_claimed_at"],
                    claimed["attempts"] + 1,
                )
            row = await conn.fetchrow(CLAIM_SQL, outbox_id)
            if row is None or row["status"] not in ("pending", "sending"):
                return "skipped"
            early = await self._before_send(conn, tenant_id, row, now, outside=outside)
            if early is not None:
                return early
            await conn.execute(
                "UPDATE churn_outbox SET status = 'sending', attempts = attempts + 1, "
                "claimed_at = $2 WHERE outbox_id = $1",
                row["outbox_id"],
                now,
            )
        return row

    async def _before_send(
        self, conn: Any, tenant_id: str, row: Any, now: datetime, *, outside: bool = False
    ) -> Result | None:
        if row["lead_status"] != "active":
            await self._finish(conn, row, "cancelled", f"lead_{row['lead_status']}")
            return "cancelled"
        if row["re_engaged"]:
            await self._finish(conn, row, "cancelled", LEAD_RE_ENGAGED)
            return "cancelled"
        if self.crm is None:
            await self._finish(conn, row, "not_sent", NOT_CONFIGURED)
            return "not_sent"
        if row["status"] == "sending" and row["claimed_at"] is not None:
            # Claimed by another job whose send may still be running (a job
            # run twice: requeued from a worker that was slow, not dead): a
            # second send now could reach the CRM beside it. Look again once
            # that send is over, whatever happened to it.
            abandoned_at = row["claimed_at"] + timedelta(
                seconds=self.policy.send_timeout_seconds + RECORD_MARGIN_SECONDS
            )
            if abandoned_at > now:
                await self._look_again(conn, tenant_id, row, abandoned_at)
                return "in_flight"
        if outside:
            await self._finish(conn, row, "cancelled", FEATURE_DISABLED)
            return "cancelled"
        if row["attempts"] > self.policy.retry_count:
            # Claimed that often without a recorded result: the sends keep
            # killing their worker. Stop before it takes the next one down.
            await self._finish(conn, row, "dead_letter", "too many interrupted attempts")
            return "dead_letter"
        if row["channel"] not in LEAD_CHANNELS:
            return None
        allowed_at = self._quiet_until(row, now)
        if allowed_at > now:
            await self._reschedule(conn, tenant_id, row, allowed_at, status=row["status"])
            return "rescheduled"
        day, week = await conn.fetchrow(
            CONTACTS_SQL,
            row["lead_id"],
            row["intervention_id"],
            now - timedelta(days=1),
            SORTED_LEAD_CHANNELS,
            now - timedelta(days=7),
        )
        if not cap_allows(
            day, week, per_day=self.policy.max_per_day, per_week=self.policy.max_per_week
        ):
            await self._finish(conn, row, "suppressed", "frequency_cap")
            return "suppressed"
        return None

    async def _reschedule(
        self,
        conn: Any,
        tenant_id: str,
        row: Any,
        when: datetime,
        *,
        status: str,
        priority: int | None = None,
    ) -> None:
        await conn.execute(
            "UPDATE churn_outbox SET status = 'pending', not_before = $2 WHERE outbox_id = $1",
            row["outbox_id"],
            when,
        )
        # A retry keeps its own queue position; otherwise (quiet hours, an
        # unknown position) the row goes to the end of its tenant's queue
        # (see detection.py on fairness).
        if priority is None:
            priority = -(await pending_backlog(conn))
        await defer_delivery_jobs(
            conn,
            tenant_id=tenant_id,
            jobs=[SingleDelivery(outbox_id=row["outbox_id"], priority=priority, not_before=when)],
        )

    async def _look_again(self, conn: Any, tenant_id: str, row: Any, when: datetime) -> None:
        """A job for the row at ``when``, its state untouched, unless one is already queued."""
        priority = -(await pending_backlog(conn))
        await defer_unless_queued(
            conn,
            tenant_id=tenant_id,
            job=SingleDelivery(outbox_id=row["outbox_id"], priority=priority, not_before=when),
        )

    async def _finish(self, conn: Any, row: Any, status: str, reason: str) -> None:
        await conn.execute(
            "UPDATE churn_outbox SET status = $2, reason = $3 WHERE outbox_id = $1",
            row["outbox_id"],
            status,
            reason,
        )
        # The intervention takes the send's state unless another channel
        # already delivered (a delivered intervention stays delivered). Two
        # channels finishing at once would each see the other still 'sending'
        # and leave the intervention pending (write skew): lock the intervention
        # first (after the send's row, the order every path takes), so the
        # second one's check below reads the first one's committed state.
        await conn.execute(
            "SELECT 1 FROM churn_interventions WHERE intervention_id = $1 FOR UPDATE",
            row["intervention_id"],
        )
        await conn.execute(
            "UPDATE churn_interventions SET status = $2, reason = $3 "
            "WHERE intervention_id = $1 AND status = 'pending' AND NOT EXISTS ("
            "  SELECT 1 FROM churn_outbox o WHERE o.intervention_id = $1"
            "  AND o.status IN ('pending', 'sending'))",
            row["intervention_id"],
            status,
            reason,
        )
        if self.metrics is not None:
            self.metrics.interventions.labels(row["stage"], row["channel"], status).inc()
            if status == "dead_letter":
                self.metrics.dead_letters.labels(row["channel"]).inc()

    async def _delivered(self, tenant_id: str, row: Any, provider_id: str | None) -> Result:
        recorded, latency = await self.db.tenant_call(
            tenant_id, RECORD_FUNCTION, row["outbox_id"], provider_id
        )
        if not recorded:
            return "skipped"
        if self.metrics is not None:
            self.metrics.interventions.labels(row["stage"], row["channel"], "delivered").inc()
            if latency is not None:
                self.metrics.intervention_latency.observe(latency)
        return "delivered"

    async def _failed(
        self, tenant_id: str, row: Any, attempt: int, exc: SendError, priority: int | None
    ) -> Result:
        retryable = isinstance(exc, RetryableSendError)
        self._count_attempt(row["channel"], "retryable" if retryable else "refused")
        log.warning(
            "churn send %s (%s) attempt %d failed: %s",
            row["outbox_id"],
            row["channel"],
            attempt,
            exc.detail,
        )
        async with self.db.tenant(tenant_id) as conn:
            # The lead first (a re-engaging signal holds it while it cancels
            # the lead's pending sends): either that signal has committed and
            # is seen here, or it comes after and finds this row pending.
            await conn.execute(LOCK_LEAD_SQL, row["outbox_id"])
            current = await conn.fetchrow(CLAIM_SQL, row["outbox_id"])
            if current is None or current["status"] != "sending":
                return "skipped"
            await conn.execute(
                "UPDATE churn_outbox SET last_error = $2 WHERE outbox_id = $1",
                row["outbox_id"],
                exc.detail,
            )
            if current["re_engaged"]:
                # Re-engaged while this send was in flight: no retry.
                await self._finish(conn, row, "cancelled", LEAD_RE_ENGAGED)
                return "cancelled"
            if isinstance(exc, PermanentSendError) or attempt > self.policy.retry_count:
                await self._finish(
                    conn, row, "dead_letter", "retries_exhausted" if retryable else "refused"
                )
                return "dead_letter"
            retry_after = exc.retry_after if isinstance(exc, RetryableSendError) else None
            delay = self.policy.backoff(attempt, retry_after)
            await self._reschedule(
                conn,
                tenant_id,
                row,
                datetime.now(UTC) + timedelta(seconds=delay),
                status="pending",
                priority=priority,
            )
        return "retry"

    def _count_attempt(self, channel: str, result: str) -> None:
        if self.metrics is not None:
            self.metrics.send_attempts.labels(channel, result).inc()
