"""Leads and engagement signals in, under the caller's tenant.

`store_signals` validates what the schema cannot (timestamps in the future,
unknown leads, ``stage_changed`` without a known stage), stores new signals
(a retried one is a duplicate, stored once), folds them into the lead's
aggregates (features.py), and, for a lead that re-engages, cancels its
pending sends and their jobs, all in the caller's one transaction: the
cancellation is visible to every delivery worker when the request returns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from services.churn.features import HALF_LIFE_DAYS, PIPELINE_STAGES
from services.churn.schemas import MAX_FUTURE_SKEW, RE_ENGAGEMENT, LeadUpsert, SignalCreate
from services.churn.success import BECAME_SUCCESS, SUCCEEDED_AT_AFTER

INBOUND: Final = frozenset({"message_received", "reply"})
OUTCOME_FOR_SIGNAL: Final[dict[str, str]] = {
    "message_received": "responded",
    "reply": "responded",
    "appointment_booked": "re_engaged",
    "lead_lost": "churned",
}

# Each decayed count is aged to now, then the batch's own (aged) signals are added.
APPLY_SQL: Final = """
UPDATE churn_leads l SET
    inbound_recent = l.inbound_recent * u.k + u.inbound,
        outbound_recent = l.outbound_recent * u.k + u.outbound,
        opens_recent = l.opens_recent * u.k + u.opens,
        appointments_recent = l.appointments_recent * u.k + u.appointments,
        decay_at = $12,
        last_inbound_at = GREATEST(l.last_inbound_at, u.last_inbound),
        last_outbound_at = GREATEST(l.last_outbound_at, u.last_outbound),
        last_signal_at = GREATEST(l.last_signal_at, u.last_signal),
        last_signal_received_at = $12,
        re_engaged_at = GREATEST(l.re_engaged_at, u.re_engaged),
        unanswered_outbound = CASE WHEN u.reset THEN u.added
                                   ELSE l.unanswered_outbound + u.added END,
        pipeline_stage = COALESCE(u.stage, l.pipeline_stage),
        status = CASE WHEN u.lost_at IS NOT NULL THEN 'churned'
                      WHEN u.reopened THEN 'active' ELSE l.status END,
        -- When it last went from watched to churned (revision 0016).
        churned_at = CASE WHEN u.lost_at IS NOT NULL AND (l.status <> 'churned' OR u.reopened)
                          THEN u.lost_at
                          WHEN u.reopened THEN NULL ELSE l.churned_at END
    FROM (
        SELECT v.*, power(2, -greatest(extract(epoch FROM $12 - c.decay_at), 0)
                             / ($15 * 86400.0)) AS k,
               -- Written back after it churned (a late copy of an earlier reply is not).
               coalesce(c.status = 'churned' AND v.re_engaged > c.churned_at, false) AS reopened
        FROM unnest($1::text[], $2::float8[], $3::float8[], $4::float8[], $5::float8[],
                    $6::timestamptz[], $7::timestamptz[], $8::timestamptz[], $9::bool[],
                    $10::int[], $11::int2[], $13::timestamptz[], $14::timestamptz[])
             AS v(lead_id, inbound, outbound, opens, appointments, last_inbound, last_outbound,
                  last_signal, reset, added, stage, lost_at, re_engaged)
        JOIN churn_leads c ON c.lead_id = v.lead_id
    ) u
    WHERE l.lead_id = u.lead_id
"""


class SignalRejected(ValueError):  # noqa: N818 - reads as the condition it names
    """The batch cannot be stored; ``reason`` is the contract's machine-readable reason."""

    def __init__(self, reason: str, detail: str, problems: list[dict[str, Any]]) -> None:
        self.reason = reason
        self.problems = problems
        super().__init__(detail)


@dataclass
class _LeadDelta:
    inbound: float = 0.0
    outbound: float = 0.0
    opens: float = 0.0
    appointments: float = 0.0
    last_inbound: datetime | None = None
    last_outbound: datetime | None = None
    last_signal: datetime | None = None
    unanswered_reset: bool = False
    unanswered_added: int = 0
    stage: int | None = None
    #: The batch's ``lead_lost``, unless a re-engaging signal followed it.
    lost_at: datetime | None = None
    re_engaged_at: datetime | None = None
    outcomes: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class OutcomeChange:
    """A delivered intervention's outcome set by a signal, and whether that made it a success."""

    stage: str
    outcome: str
    became_success: bool


@dataclass(frozen=True, slots=True)
class StoreResult:
    """What `store_signals` did."""

    stored: int
    duplicates: int
    cancelled_sends: int
    changed_leads: list[str]
    #: Each delivered intervention whose outcome the batch changed, for the
    #: outcome and success counters once the transaction commits.
    outcomes: list[OutcomeChange] = field(default_factory=list)


async def upsert_leads(conn: Any, leads: Sequence[LeadUpsert]) -> int:
    """Create or update leads (and register the tenant for the detection pass).

    A churned lead sent with ``status: "active"`` is reopened (`_reopen`).

    Written in lead_id order, the order every writer of leads locks them in:
    in the order sent, two batches of the same leads in different orders (or
    a batch and a signal batch or a detection pass) deadlocked.
    """
    await conn.execute("INSERT INTO churn_tenants DEFAULT VALUES ON CONFLICT DO NOTHING")
    rows = await conn.fetch(
        """
        INSERT INTO churn_leads (lead_id, crm_contact_id, agent_id, timezone, pipeline_stage,
                                 created_at, decay_at)
        SELECT u.lead_id, u.contact, u.agent, u.tz, u.stage, COALESCE(u.created, now()), now()
        FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int2[], $6::timestamptz[])
             AS u(lead_id, contact, agent, tz, stage, created)
        ORDER BY u.lead_id
        ON CONFLICT (tenant_id, lead_id) DO UPDATE SET
            crm_contact_id = EXCLUDED.crm_contact_id,
            agent_id = EXCLUDED.agent_id,
            timezone = EXCLUDED.timezone,
            pipeline_stage = EXCLUDED.pipeline_stage
        RETURNING lead_id
        """,
        [lead.lead_id for lead in leads],
        [lead.crm_contact_id or lead.lead_id for lead in leads],
        [lead.agent_id for lead in leads],
        [lead.timezone for lead in leads],
        [lead.stage_ordinal for lead in leads],
        [lead.created_at for lead in leads],
    )
    reopen = sorted(lead.lead_id for lead in leads if lead.status == "active")
    if reopen:
        await _reopen(conn, reopen)
    return len(rows)


async def _reopen(conn: Any, lead_ids: Sequence[str]) -> None:
    """Watch these leads again if churned (the CRM reopened them; rows locked by the upsert).

    The reopening counts as their re-engagement: every send decided before it
    (while they were still watched, before they churned) is cancelled now if
    pending, and by the delivery (``lead_re_engaged``) if in flight or
    replayed. Only a detection pass after it contacts them again.
    """
    rows = await conn.fetch(
        "UPDATE churn_leads SET status = 'active', churned_at = NULL, "
        "re_engaged_at = GREATEST(re_engaged_at, now()) "
        "WHERE lead_id = ANY($1::text[]) AND status = 'churned' RETURNING lead_id",
        list(lead_ids),
    )
    await _cancel_pending(conn, [row["lead_id"] for row in rows])


def _check(signals: Sequence[SignalCreate], now: datetime) -> None:
    problems: list[dict[str, Any]] = []
    for index, signal in enumerate(signals):
        if signal.occurred_at > now + MAX_FUTURE_SKEW:
            problems.append(
                {"index": index, "field": "occurred_at", "problem": "timestamp in the future"}
            )
        if signal.type == "stage_changed" and signal.data.get("stage") not in PIPELINE_STAGES:
            problems.append(
                {
                    "index": index,
                    "field": "data.stage",
                    "problem": f"stage_changed needs data.stage in {sorted(PIPELINE_STAGES)}",
                }
            )
    if problems:
        reason = (
            "timestamp_in_future"
            if all(p["field"] == "occurred_at" for p in problems)
            else "invalid_signal"
        )
        raise SignalRejected(reason, "some signals are invalid; nothing was stored", problems)


def _weight(occurred: datetime, now: datetime) -> float:
    elapsed = max((now - occurred).total_seconds(), 0.0)
    return math.exp2(-elapsed / (HALF_LIFE_DAYS * 86_400.0))


def _fold(rows: Sequence[Any], now: datetime) -> dict[str, _LeadDelta]:
    deltas: dict[str, _LeadDelta] = {}
    for row in sorted(rows, key=lambda r: r["occurred_at"]):
        delta = deltas.setdefault(row["lead_id"], _LeadDelta())
        kind, occurred = row["signal_type"], row["occurred_at"]
        weight = _weight(occurred, now)
        delta.last_signal = occurred
        if kind in INBOUND:
            delta.inbound += weight
            delta.last_inbound = occurred
            delta.unanswered_reset = True
            delta.unanswered_added = 0
        elif kind == "message_sent":
            delta.outbound += weight
            delta.last_outbound = occurred
            delta.unanswered_added += 1
        elif kind in ("email_opened", "link_clicked"):
            delta.opens += weight
        elif kind == "appointment_booked":
            delta.appointments += weight
        elif kind == "stage_changed":
            delta.stage = PIPELINE_STAGES[row["data"]["stage"]]
        elif kind == "lead_lost":
            delta.lost_at = occurred
        if kind in RE_ENGAGEMENT:
            delta.re_engaged_at = occurred
            delta.lost_at = None
        if kind in OUTCOME_FOR_SIGNAL:
            delta.outcomes.append(OUTCOME_FOR_SIGNAL[kind])
    return deltas


async def store_signals(
    conn: Any, signals: Sequence[SignalCreate], *, now: datetime
) -> StoreResult:
    """Store a batch in the caller's tenant transaction (see the module docstring).

    Raises `SignalRejected` (nothing stored) for invalid timestamps or stages
    and for leads the tenant never registered.
    """
    _check(signals, now)
    lead_ids = sorted({signal.lead_id for signal in signals})
    # Locks the leads' rows: concurrent batches for one lead fold in turn.
    known = {
        row["lead_id"]
        for row in await conn.fetch(
            "SELECT lead_id FROM churn_leads WHERE lead_id = ANY($1::text[]) "
            "ORDER BY lead_id FOR UPDATE",
            lead_ids,
        )
    }
    unknown = [lead for lead in lead_ids if lead not in known]
    if unknown:
        raise SignalRejected(
            "unknown_lead",
            f"{len(unknown)} lead(s) are not registered; PUT them to /v1/churn/leads first",
            [{"lead_id": lead, "problem": "unknown lead"} for lead in unknown[:50]],
        )
    # In signal_id order, after the leads: a batch waits on another's uncommitted
    # signal_id only while holding smaller ones, so batches whose ids cross (the
    # same ids for other leads, in other orders) queue instead of deadlocking.
    stored = await conn.fetch(
        """
        INSERT INTO churn_signals (signal_id, lead_id, signal_type, occurred_at, data)
        SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::jsonb[])
             AS u(signal_id, lead_id, signal_type, occurred_at, data)
        ORDER BY u.signal_id
        ON CONFLICT (tenant_id, signal_id) DO NOTHING
        RETURNING lead_id, signal_type, occurred_at, data
        """,
        [signal.signal_id for signal in signals],
        [signal.lead_id for signal in signals],
        [signal.type for signal in signals],
        [signal.occurred_at for signal in signals],
        [signal.data for signal in signals],
    )
    deltas = _fold(stored, now)
    cancelled = 0
    outcomes: list[OutcomeChange] = []
    if deltas:
        await _apply(conn, deltas, now)
        cancelled = await _cancel_pending(
            conn, [lead for lead, d in deltas.items() if d.re_engaged_at or d.lost_at]
        )
        outcomes = await _record_outcomes(conn, deltas, now)
    return StoreResult(
        stored=len(stored),
        duplicates=len(signals) - len(stored),
        cancelled_sends=cancelled,
        changed_leads=sorted(deltas),
        outcomes=outcomes,
    )


async def _apply(conn: Any, deltas: dict[str, _LeadDelta], now: datetime) -> None:
    ids = list(deltas)
    d = [deltas[i] for i in ids]
    await conn.execute(
        APPLY_SQL,
        ids,
        [x.inbound for x in d],
        [x.outbound for x in d],
        [x.opens for x in d],
        [x.appointments for x in d],
        [x.last_inbound for x in d],
        [x.last_outbound for x in d],
        [x.last_signal for x in d],
        [x.unanswered_reset for x in d],
        [x.unanswered_added for x in d],
        [x.stage for x in d],
        now,
        [x.lost_at for x in d],
        [x.re_engaged_at for x in d],
        HALF_LIFE_DAYS,
    )


async def _cancel_pending(conn: Any, re_engaged: Sequence[str]) -> int:
    """Cancel the pending sends of these (locked) leads, their jobs and interventions."""
    cancelled = 0
    if re_engaged:
        rows = await conn.fetch(
            """
            UPDATE churn_outbox SET status = 'cancelled', reason = 'lead_re_engaged'
            WHERE lead_id = ANY($1::text[]) AND status = 'pending'
            RETURNING outbox_id::text, intervention_id::text
            """,
            re_engaged,
        )
        cancelled = len(rows)
        if rows:
            # The jobs would find their rows cancelled and do nothing; removing
            # them keeps the queue depth honest.
            await conn.execute(
                "UPDATE procrastinate_jobs SET status = 'cancelled' "
                "WHERE status = 'todo' AND queueing_lock = ANY($1::text[])",
                # A row's own job, or its intervention's group job (queue.py):
                # a lead's re-engagement cancels every pending row of it.
                [row["outbox_id"] for row in rows] + [row["intervention_id"] for row in rows],
            )
        await conn.execute(
            """
            UPDATE churn_interventions SET status = 'cancelled', reason = 'lead_re_engaged'
            WHERE lead_id = ANY($1::text[]) AND status = 'pending'
              AND NOT EXISTS (SELECT 1 FROM churn_outbox o
                              WHERE o.intervention_id = churn_interventions.intervention_id
                                AND o.status IN ('pending', 'sending', 'delivered'))
            """,
            re_engaged,
        )
    return cancelled


async def _record_outcomes(
    conn: Any, deltas: dict[str, _LeadDelta], now: datetime
) -> list[OutcomeChange]:
    """Set the batch's outcome on each lead's delivered interventions; return what changed."""
    changed: list[OutcomeChange] = []
    for lead, delta in deltas.items():
        if not delta.outcomes:
            continue
        # The strongest outcome of the batch: churned > re_engaged > responded.
        outcome = max(delta.outcomes, key=("responded", "re_engaged", "churned").index)
        rows = await conn.fetch(
            f"""
            WITH previous AS (
                SELECT intervention_id, succeeded_at FROM churn_interventions
                WHERE lead_id = $1 AND status = 'delivered'
                  AND (outcome IS NULL OR outcome = 'responded' AND $2 <> 'responded')
                  AND intervened_at <= $3
                FOR UPDATE
            )
            UPDATE churn_interventions i SET outcome = $2, outcome_at = $3,
                   succeeded_at = {SUCCEEDED_AT_AFTER}
            FROM previous WHERE i.intervention_id = previous.intervention_id
            RETURNING i.intervention_stage, {BECAME_SUCCESS}
            """,  # noqa: S608 - constants
            lead,
            outcome,
            now,
        )
        changed.extend(
            OutcomeChange(row["intervention_stage"], outcome, row["became_success"]) for row in rows
        )
    return changed
