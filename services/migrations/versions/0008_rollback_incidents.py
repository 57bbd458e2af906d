"""Rollback incidents: one row per incident that turned feature flags off.

Revision ID: 0008_rollback_incidents
Revises: 0007_churn
Create Date: 2026-12-03

``rollback_incidents`` is what makes an automatic rollback happen once:
Alertmanager resends a notification (retries, repeat intervals, every peer of
an HA cluster), and every copy of one incident carries the same key (the
alert's fingerprint and start time). The handler inserts the row with
``ON CONFLICT DO NOTHING`` in the transaction that writes the flag audit rows,
so the flags flip and the audit is written once per incident, whatever the
number of copies. Operator rollbacks get a row too (key ``operator:<uuid>``).
Like ``flag_audit`` it is a global operator record with no tenant data, so it
has no tenant policy.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008_rollback_incidents"
down_revision: str | Sequence[str] | None = "0007_churn"


def upgrade() -> None:
    """Create the table and its index."""
    op.execute(
        """
        CREATE TABLE rollback_incidents (
            incident_key varchar(160) PRIMARY KEY,
            source varchar(16) NOT NULL CHECK (source IN ('alertmanager', 'operator')),
            alertname varchar(200) NOT NULL CHECK (alertname <> ''),
            feature_name varchar(100) NOT NULL CHECK (feature_name IN (
                'realtime_intelligence', 'property_vision', 'churn_prevention',
                'ai_coaching', 'all')),
            environment varchar(32) NOT NULL,
            actor varchar(255) NOT NULL CHECK (actor <> ''),
            reason text NOT NULL CHECK (reason <> ''),
            starts_at timestamptz NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now(),
            flags_changed text[] NOT NULL DEFAULT '{}',
            resolved_at timestamptz
        )
        """
    )
    op.execute(
        "CREATE INDEX rollback_incidents_feature_received "
        "ON rollback_incidents (feature_name, received_at DESC)"
    )


def downgrade() -> None:
    """Drop the table."""
    op.execute("DROP TABLE rollback_incidents")
