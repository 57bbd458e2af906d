"""``enterprisehub retention prune``: the seed's retention, 30 days of events, a year of metrics.

Run daily (the ``retention-prune`` CronJob). For each tenant (the ids
``impact_tenants`` lists from the beginning of time to the later cutoff, the
churn directory ``churn_tenants`` and the tenants with token revocations; or
the one ``--tenant``), each table
below is pruned in batches of at most RETENTION_BATCH_SIZE rows: one
``DELETE`` of the oldest rows past the cutoff per transaction, scoped to the
tenant by row-level security (``Database.tenant``), until a batch comes back
short. Every batch walks an index leading with ``(tenant_id, <time>)``
(revisions 0001, 0007, 0023), so it is a short range scan and its locks are
held for one small transaction. The rows of a batch are taken ``FOR UPDATE
SKIP LOCKED``: two runs at once (a manual run during the CronJob's) share the
work instead of waiting on each other, and whatever either leaves, the next
run deletes. Deleting what is already gone deletes nothing, so a run is
idempotent.

Pruned (per-event rows: one per thing that happened, read only for the days
``impact aggregate`` restates and the dashboards' recent views):

- ``realtime_intelligence_events`` by ``created_at``, 30 days: the lead
  events of the feed. A client resuming older than that is past any stream.
- ``churn_signals`` by ``received_at``, 30 days: engagement signals. The
  lead's engagement lives on in ``churn_leads`` (its decayed counts and
  last-seen times), which nothing here touches. By ``received_at``, not the
  CRM's ``occurred_at``: a late copy of an old signal must stay long enough
  for the CRM's retries of it to find it (idempotent on ``signal_id``).
- ``churn_interventions`` by ``created_at``, 30 days, *closed ones only*
  (``delivered``, ``not_sent``, ``suppressed``, ``cancelled``) and only when
  none of their outbox rows is still ``pending``, ``sending`` or
  ``dead_letter``: an open intervention and a dead letter waiting for an
  operator are state, kept however old. The outbox rows of a pruned
  intervention go with it (``ON DELETE CASCADE``, indexed by revision 0023).
  Past the churn window (7 days) a closed intervention blocks nothing; a
  delivered one can still become a success when its lead answers, so the
  retention period is also success's attribution window (docs/churn.md).
- ``coaching_sessions`` by ``created_at``, 30 days: one analysis per coached
  conversation. A transcript analysed again after that is a new Claude call.
- ``claude_cost_ledger`` by ``created_at``, 30 days: one row per Claude call.
  Its cost is kept a year in ``phase3_business_metrics.operating_cost``.
- ``phase3_business_metrics`` by ``metric_date``, 365 days: the aggregates.
- ``auth_token_revocations`` by ``keep_until``, once it has passed: a
  revocation is kept as long as a token it names could still verify (its
  longest lifetime after the revocation), and refuses nothing after that.

Kept (state, not events):

- ``property_vision_analyses`` and ``property_vision_links``: a property's
  analysed photos, served by its listing for as long as it is listed, and the
  record that each photo is paid for once (deleting one makes the next upload
  of the photo a new Claude call and empties the listing).
- ``churn_leads``, ``churn_tenants``: each lead's current risk state and the
  directory of tenants; ``churn_outbox`` goes only with its intervention.
- ``ab_test_assignments``: a tenant's first exposure and bucket, which every
  later analysis of the experiment needs (``experiment export``).
- ``realtime_idempotency_keys`` (expire after 24 h, deleted by the ingest),
  ``coaching_claims`` (deleted by their claimant, or taken over when stale)
  and ``vision_backfill_items`` (a backfill's resume state): their own
  lifecycles.
- The global operator records (``flag_audit``, ``rollout_decisions``,
  ``experiment_results``, ``rollback_incidents``, ``rollback_notices``): no
  tenant data, and the audit trail.

Every statement is a constant with bound parameters.

One tenant's failure (a deadlock, a statement timeout) is logged and the run
goes on with the other tenants and tables; the command then exits 1, so the
Job fails and kube-prometheus-stack's ``KubeJobFailed`` reports it, and the
next day's run takes up what was left.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Final, Literal

from services.common.database import Database
from services.common.revocation_store import TABLE as REVOCATIONS
from services.common.revocation_store import revocation_tenants
from services.impact.aggregate import active_tenants

log = logging.getLogger(__name__)

#: An intervention in one of these is finished; ``pending`` and ``dead_letter`` are not.
CLOSED_INTERVENTION: Final = (
    "status IN ('delivered', 'not_sent', 'suppressed', 'cancelled') AND NOT EXISTS ("
    "SELECT 1 FROM churn_outbox o WHERE o.intervention_id = churn_interventions.intervention_id "
    "AND o.status IN ('pending', 'sending', 'dead_letter'))"
)


@dataclass(frozen=True, slots=True)
class Purge:
    """One table's retention: rows whose ``column`` is before the cutoff go."""

    table: str
    #: Indexed together with ``tenant_id`` (revisions 0001, 0007, 0023).
    column: str
    #: Which period applies: ``events`` (RETENTION_EVENT_DAYS), ``metrics``, or
    #: ``expired`` (the column says until when the row is needed: now is the cutoff).
    period: Literal["events", "metrics", "expired"]
    #: What else a row must satisfy to go (state that must stay, stays).
    condition: str = "true"

    @property
    def statement(self) -> str:
        """``DELETE`` at most ``$2`` rows before ``$1``, the oldest first, skipping locked ones."""
        return (
            f"DELETE FROM {self.table} WHERE ctid = ANY (ARRAY("  # noqa: S608 - constants
            f"SELECT ctid FROM {self.table} WHERE {self.column} < $1 AND ({self.condition}) "
            f"ORDER BY {self.column} LIMIT $2 FOR UPDATE SKIP LOCKED))"
        )


PURGES: Final[tuple[Purge, ...]] = (
    Purge("realtime_intelligence_events", "created_at", "events"),
    Purge("churn_signals", "received_at", "events"),
    Purge("churn_interventions", "created_at", "events", CLOSED_INTERVENTION),
    Purge("coaching_sessions", "created_at", "events"),
    Purge("claude_cost_ledger", "created_at", "events"),
    Purge("phase3_business_metrics", "metric_date", "metrics"),
    Purge(REVOCATIONS, "keep_until", "expired"),
)


@dataclass(frozen=True, slots=True)
class Cutoffs:
    """Rows before these go: an instant for events, a day for the metrics, and
    the run's time for rows that say until when they are needed."""

    events: datetime
    metrics: date
    expired: datetime

    @classmethod
    def of(cls, now: datetime, *, event_days: int, metric_days: int) -> Cutoffs:
        """``now`` less each period (the metrics' in whole UTC days)."""
        return cls(
            events=now - timedelta(days=event_days),
            metrics=now.astimezone(UTC).date() - timedelta(days=metric_days),
            expired=now,
        )

    def of_purge(self, purge: Purge) -> datetime | date:
        """The cutoff of ``purge``'s period."""
        cutoffs = {"events": self.events, "metrics": self.metrics, "expired": self.expired}
        return cutoffs[purge.period]

    @property
    def latest(self) -> datetime:
        """The later of the two, as an instant: every row either prunes is before it."""
        metrics = datetime.combine(self.metrics, datetime.min.time(), tzinfo=UTC)
        return max(self.events, metrics)


@dataclass(frozen=True, slots=True)
class Pruned:
    """What one run deleted from one table."""

    table: str
    cutoff: datetime | date
    rows: int
    tenants: int
    #: Tenants whose prune of this table failed (logged; the next run retries).
    failed: int = 0

    def line(self) -> str:
        """What the command prints for it (one line, like ``impact aggregate``'s)."""
        before = (
            self.cutoff.isoformat(timespec="seconds")
            if isinstance(self.cutoff, datetime)
            else self.cutoff.isoformat()
        )
        failed = f"; {self.failed} tenant(s) failed" if self.failed else ""
        return (
            f"{self.table}: {self.rows} row(s) before {before} deleted for "
            f"{self.tenants} tenant(s){failed}"
        )


async def prune_tenant(
    db: Database, tenant_id: str, purge: Purge, cutoff: datetime | date, *, batch_size: int
) -> int:
    """Delete ``tenant_id``'s rows of ``purge`` before ``cutoff``, a batch per transaction."""
    deleted = 0
    while True:
        async with db.tenant(tenant_id) as conn:
            status = await conn.execute(purge.statement, cutoff, batch_size)
        rows = int(status.rsplit(" ", 1)[-1])
        deleted += rows
        if rows < batch_size:
            return deleted


async def retention_tenants(db: Database, cutoffs: Cutoffs) -> list[str]:
    """Every tenant that may have rows to prune (ids only): ``impact_tenants`` before
    the later cutoff, the churn directory (a lead's signals are its tenant's), and
    the tenants with token revocations."""
    listed = set(await active_tenants(db, datetime.min.replace(tzinfo=UTC), cutoffs.latest))
    async with db.unscoped() as conn:
        rows = await conn.fetch("SELECT tenant_id FROM churn_tenants")
    listed.update(row["tenant_id"] for row in rows)
    listed.update(await revocation_tenants(db))
    return sorted(listed)


async def prune(
    db: Database,
    cutoffs: Cutoffs,
    *,
    batch_size: int,
    tenants: Sequence[str] | None = None,
) -> list[Pruned]:
    """Prune every table of ``PURGES`` for ``tenants`` (default: ``retention_tenants``)."""
    chosen = list(tenants) if tenants is not None else await retention_tenants(db, cutoffs)
    totals = []
    for purge in PURGES:
        cutoff = cutoffs.of_purge(purge)
        rows, touched, failed = 0, 0, 0
        for tenant_id in chosen:
            try:
                deleted = await prune_tenant(db, tenant_id, purge, cutoff, batch_size=batch_size)
            except Exception as exc:
                log.error(
                    "retention: %s of tenant %s not pruned: %s",
                    purge.table,
                    tenant_id,
                    type(exc).__name__,
                )
                failed += 1
                continue
            rows += deleted
            touched += deleted > 0
        totals.append(Pruned(purge.table, cutoff, rows, touched, failed))
    return totals
