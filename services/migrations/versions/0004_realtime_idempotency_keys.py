"""realtime_idempotency_keys: the CRM's ``Idempotency-Key`` per tenant, stored with its events.

Revision ID: 0004
Revises: 0003_realtime_store_events
Create Date: 2026-12-03

CRMs retry webhooks. A request carrying ``Idempotency-Key`` stores its key,
a SHA-256 of its body and its answer in this table, in the same transaction
as its events: either both exist or neither, so a retry (also one racing the
first request) finds the first answer and stores nothing twice, and a crash
between the two cannot happen. Why Postgres and not Redis: the events are in
Postgres, and only the same transaction makes "stored" and "remembered" one
fact; Redis may be down while the ingest still stores (deferred delivery).

Keys are scoped per tenant (primary key ``(tenant_id, key)``, row-level
security FORCEd like every tenant table) and expire after
`services.realtime.ingest.IDEMPOTENCY_TTL_SECONDS` (24 h, like Stripe): a key is
honoured until ``expires_at``, and expired rows are deleted by the ingest
when the same key comes back and in small batches as keys are stored.
"""

from collections.abc import Sequence

from alembic import op

from services.migrations.tenancy import TENANT_COLUMN, tenant_isolation_sql

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003_realtime_store_events"

TABLE = "realtime_idempotency_keys"


def upgrade() -> None:
    """Create the table, its expiry index and its tenant policy."""
    op.execute(
        f"""
        CREATE TABLE {TABLE} (
            {TENANT_COLUMN},
            key varchar(255) NOT NULL,
            request_sha256 bytea NOT NULL,
            response jsonb,
            created_at timestamptz NOT NULL DEFAULT now(),
            expires_at timestamptz NOT NULL,
            PRIMARY KEY (tenant_id, key)
        )
        """
    )
    op.execute(f"CREATE INDEX idx_idempotency_tenant_expires ON {TABLE} (tenant_id, expires_at)")
    for statement in tenant_isolation_sql(TABLE):
        op.execute(statement)


def downgrade() -> None:
    """Drop the table (its index and policy go with it)."""
    op.execute(f"DROP TABLE {TABLE}")
