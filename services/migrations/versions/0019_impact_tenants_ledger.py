"""The daily impact aggregate sees a tenant whose only activity of a day was Claude spend.

Revision ID: 0019_impact_tenants_ledger
Revises: 0018_claude_unanswered_calls
Create Date: 2026-12-04

``impact_tenants(from, to)`` (revision 0005) listed the tenants with feature
rows in the period. A feature's Claude calls are booked in
``claude_cost_ledger`` even when they produced no row: every call of the day
timed out, or its caller gave up (revision 0018 books those at an estimate).
Such a tenant was never aggregated, so that spend never reached
``phase3_business_metrics`` and every report built on it under-counted cost.
The function now lists the ledger's tenants too (ids only, as before: the
tenant directory role gets a ``SELECT`` policy on the ledger like on the
other activity tables), and an index on ``created_at`` keeps its day's scan
from reading the whole ledger.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0019_impact_tenants_ledger"
down_revision: str | Sequence[str] | None = "0018_claude_unanswered_calls"

DIRECTORY_ROLE = "enterprisehub_tenant_directory"

#: The function's body as revision 0005 wrote it; the upgrade adds the ledger.
FEATURE_ACTIVITY = """
            SELECT tenant_id FROM public.realtime_intelligence_events
                WHERE created_at >= p_from AND created_at < p_to
            UNION SELECT tenant_id FROM public.property_vision_analyses
                WHERE created_at >= p_from AND created_at < p_to
            UNION SELECT tenant_id FROM public.churn_interventions
                WHERE created_at >= p_from AND created_at < p_to
            UNION SELECT tenant_id FROM public.coaching_sessions
                WHERE created_at >= p_from AND created_at < p_to
            UNION SELECT tenant_id FROM public.ab_test_assignments
                WHERE assigned_at < p_to
            -- Aggregates outlive the raw events (kept a year, events 30 days).
            UNION SELECT tenant_id FROM public.phase3_business_metrics
                WHERE metric_date >= (p_from AT TIME ZONE 'UTC')::date
                    AND metric_date < (p_to AT TIME ZONE 'UTC')::date
"""
LEDGER_ACTIVITY = """
            -- Claude spend without a feature row (revision 0019).
            UNION SELECT tenant_id FROM public.claude_cost_ledger
                WHERE created_at >= p_from AND created_at < p_to
"""


def _replace_function(body: str) -> None:
    # CREATE OR REPLACE keeps the owner (the directory role, revision 0005) and
    # the grants, and needs membership in the owner. Revision 0005 granted it to
    # whoever ran it; the role running this one may be another (a database an
    # older `make run` migrated as the superuser, since handed to the migration
    # owner, which has CREATEROLE as RDS's master user does).
    op.execute(f"GRANT {DIRECTORY_ROLE} TO CURRENT_USER")
    op.execute(
        f"""
        CREATE OR REPLACE FUNCTION impact_tenants(p_from timestamptz, p_to timestamptz)
        RETURNS SETOF text
        LANGUAGE sql
        STABLE
        SECURITY DEFINER
        SET search_path = public, pg_temp
        AS $${body}$$
        """
    )


def upgrade() -> None:
    """Let the directory role read ledger tenant ids, and list them."""
    op.execute("CREATE INDEX idx_ledger_created ON claude_cost_ledger (created_at)")
    op.execute(f"GRANT SELECT ON claude_cost_ledger TO {DIRECTORY_ROLE}")
    op.execute(
        "CREATE POLICY tenant_directory ON claude_cost_ledger "
        f"FOR SELECT TO {DIRECTORY_ROLE} USING (true)"
    )
    _replace_function(FEATURE_ACTIVITY + LEDGER_ACTIVITY)


def downgrade() -> None:
    """The function of revision 0005 again, without the ledger."""
    _replace_function(FEATURE_ACTIVITY)
    op.execute("DROP POLICY tenant_directory ON claude_cost_ledger")
    op.execute(f"REVOKE SELECT ON claude_cost_ledger FROM {DIRECTORY_ROLE}")  # noqa: S608
    op.execute("DROP INDEX idx_ledger_created")
