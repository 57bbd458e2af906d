"""Churn: when an intervention became a success, recorded once.

Revision ID: 0013_churn_succeeded_at
Revises: 0012_churn_delivery_calls
Create Date: 2026-12-04

A success is a delivered intervention whose lead responded or re-engaged
(services/churn/success.py). Read from the current ``status`` and ``outcome``,
it disagreed with ``churn_intervention_successes_total``, which counts the
moment it happens: a lead that responded, was later reported churned and then
responded again was counted twice by the counter and not at all by
``/health/churn`` and the impact aggregate while churned, and an outcome
reported before its intervention was delivered became a success in the tables
at delivery but never in the counter. ``succeeded_at`` is set once, by the
statement that writes a success-making outcome on a delivered intervention,
and never cleared: every count reads it, and the counter counts the statement
that set it.

Existing rows that are successes by the old reading get their ``outcome_at``.
"""

from collections.abc import Sequence

from alembic import op

from services.migrations.tenancy import across_tenants

revision: str = "0013_churn_succeeded_at"
down_revision: str | Sequence[str] | None = "0012_churn_delivery_calls"


def upgrade() -> None:
    """Add the column and fill it for the successes stored so far."""
    op.execute("ALTER TABLE churn_interventions ADD COLUMN succeeded_at timestamptz")
    for statement in across_tenants(
        "churn_interventions",
        "UPDATE churn_interventions SET succeeded_at = coalesce(outcome_at, intervened_at) "
        "WHERE status = 'delivered' AND outcome IN ('responded', 're_engaged')",
    ):
        op.execute(statement)


def downgrade() -> None:
    """Drop the column."""
    op.execute("ALTER TABLE churn_interventions DROP COLUMN succeeded_at")
