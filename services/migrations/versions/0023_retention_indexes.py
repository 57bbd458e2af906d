"""Indexes the daily retention prune deletes by, tenant by tenant.

Revision ID: 0023_retention_indexes
Revises: 0022_realtime_stored_at
Create Date: 2026-12-07

``enterprisehub retention prune`` (services/impact/retention.py) deletes each
tenant's rows older than the retention period in bounded batches, the oldest
first, in that tenant's row-level-security transaction: every batch is
``tenant_id = <scope> AND <time> < cutoff ORDER BY <time> LIMIT n``, which
needs an index leading with ``(tenant_id, <time>)`` to be a short range scan
rather than a walk of the tenant's rows. The event tables of revision 0001
and 0007 have theirs (``created_at``); these did not:

- ``churn_signals`` is pruned by ``received_at`` (when the signal was stored,
  which a CRM's retry cannot move back); its only index was
  ``(tenant_id, lead_id, occurred_at)``.
- ``claude_cost_ledger`` had ``(tenant_id, feature, created_at)`` and
  ``(created_at)`` (revision 0019): neither gives one tenant's oldest rows in
  order.
- ``churn_outbox (intervention_id)``: deleting an intervention cascades to its
  outbox rows, and the foreign key had no index on the referencing side, so
  each deleted intervention was a scan of the whole outbox.

A plain ``CREATE INDEX``, as in every revision: the runner applies the whole
chain in one transaction under its advisory lock (services/migrations/runner.py),
where ``CONCURRENTLY`` cannot run. It blocks writes to each table while its
index builds, which is nothing on the tables of a first release (no
environment holds data yet); a revision that indexes a populated table needs a
concurrent build outside the chain's transaction, which the runner does not
offer yet.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0023_retention_indexes"
down_revision: str | Sequence[str] | None = "0022_realtime_stored_at"

INDEXES: tuple[tuple[str, str, str], ...] = (
    ("idx_churn_signals_tenant_received", "churn_signals", "tenant_id, received_at"),
    ("idx_ledger_tenant_created", "claude_cost_ledger", "tenant_id, created_at"),
    ("idx_churn_outbox_intervention", "churn_outbox", "intervention_id"),
)


def upgrade() -> None:
    """Create the indexes."""
    for name, table, columns in INDEXES:
        op.execute(f"CREATE INDEX {name} ON {table} ({columns})")


def downgrade() -> None:
    """Drop them."""
    for name, _, _ in reversed(INDEXES):
        op.execute(f"DROP INDEX {name}")
