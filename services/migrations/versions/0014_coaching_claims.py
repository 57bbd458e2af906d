"""Coaching: one Claude call per transcript, however many copies of the request arrive.

Revision ID: 0014_coaching_claims
Revises: 0013_churn_succeeded_at
Create Date: 2026-12-04

A coaching analysis looked for a stored session and, finding none, called
Claude: copies of one request that arrived together (a CRM retrying after its
own timeout, a double click, two replicas behind the load balancer) each
found nothing and each paid for a call and stored a session. A copy now first
inserts its claim here, keyed like the repeat lookup (tenant, transcript,
model, prompt version); only the copy whose insert succeeded calls Claude, and
it deletes the claim in the transaction that stores the session (or when the
call fails). The other copies wait for that session. A claim older than the
stale limit belongs to a copy that died and is taken over by compare-and-set
on ``claimed_at``.
"""

from collections.abc import Sequence

from alembic import op

from services.migrations.tenancy import TENANT_COLUMN, tenant_isolation_sql

revision: str = "0014_coaching_claims"
down_revision: str | Sequence[str] | None = "0013_churn_succeeded_at"

TABLE = "coaching_claims"


def upgrade() -> None:
    """Create the table under the tenant policy."""
    op.execute(
        f"""
        CREATE TABLE {TABLE} (
            {TENANT_COLUMN},
            transcript_sha256 char(64) NOT NULL,
            model varchar(100) NOT NULL,
            prompt_version varchar(50) NOT NULL,
            claimed_at timestamptz NOT NULL DEFAULT clock_timestamp(),
            PRIMARY KEY (tenant_id, transcript_sha256, model, prompt_version)
        )
        """
    )
    for statement in tenant_isolation_sql(TABLE):
        op.execute(statement)


def downgrade() -> None:
    """Drop the table."""
    op.execute(f"DROP TABLE {TABLE}")
