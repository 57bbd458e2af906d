"""Churn: when a lead churned, so that the CRM can reopen it.

Revision ID: 0016_churn_lead_reopen
Revises: 0015_vision_property_links
Create Date: 2026-12-04

A lead marked ``churned`` (a ``lead_lost`` signal, a ``churned`` outcome) was
never watched again: nothing set it back to ``active``, so a lead the CRM
reopened, or who wrote back, was left out of every detection pass for good.
A lead is now reopened by the CRM (``PUT /v1/churn/leads`` with
``status: "active"``) or by a re-engaging signal (reply, message received,
appointment booked) that occurred after it churned; a late copy of one that
occurred before does not reopen it. ``churned_at`` is that instant: the
``lead_lost`` signal's ``occurred_at``, or the time the ``churned`` outcome
was reported; it is set while the lead is churned and cleared when it is
reopened (a check says so).

Leads churned before this revision get the revision's time: only signals of
something that happened after it reopen them.
"""

from collections.abc import Sequence

from alembic import op

from services.migrations.tenancy import across_tenants

revision: str = "0016_churn_lead_reopen"
down_revision: str | Sequence[str] | None = "0015_vision_property_links"


def upgrade() -> None:
    """Add the column, fill it for the churned leads, then require it for them."""
    op.execute("ALTER TABLE churn_leads ADD COLUMN churned_at timestamptz")
    for statement in across_tenants(
        "churn_leads", "UPDATE churn_leads SET churned_at = now() WHERE status = 'churned'"
    ):
        op.execute(statement)
    op.execute(
        "ALTER TABLE churn_leads ADD CONSTRAINT churn_leads_churned_at "
        "CHECK ((status = 'churned') = (churned_at IS NOT NULL))"
    )


def downgrade() -> None:
    """Drop the check and the column."""
    op.execute("ALTER TABLE churn_leads DROP CONSTRAINT churn_leads_churned_at")
    op.execute("ALTER TABLE churn_leads DROP COLUMN churned_at")
