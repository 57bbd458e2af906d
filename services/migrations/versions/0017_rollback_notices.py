"""Rollback notices: the Slack message of each rollback, kept until Slack took it.

Revision ID: 0017_rollback_notices
Revises: 0016_churn_lead_reopen
Create Date: 2026-12-04

The handler posted its Slack message after committing the incident, so a
handler that died in between lost the message for good: Alertmanager's retry
of the notification is a duplicate and tells nobody. ``rollback_notices`` is
an outbox: the message is inserted in the transaction that records what it
tells (the incident that turned flags off, the outcome of its deployment
undo, or an operator closing a stuck undo), one row per incident and kind.
Whoever posts claims it first (``claimed_until``, a lease taken by an
``UPDATE`` of a row locked ``FOR UPDATE SKIP LOCKED``, so two replicas or two
copies of a webhook never post the same row at once), and ``sent_at`` is set
once Slack answered 2xx.
A failed post counts an attempt and waits ``next_attempt_at``; after the last
attempt the row is ``given_up_at`` and waits for an operator.

Like ``rollback_incidents`` it is a global operator record with no tenant
data, so it has no tenant policy.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0017_rollback_notices"
down_revision: str | Sequence[str] | None = "0016_churn_lead_reopen"


def upgrade() -> None:
    """Create the outbox and the index its delivery pass reads."""
    op.execute(
        """
        CREATE TABLE rollback_notices (
            notice_id bigserial PRIMARY KEY,
            incident_key varchar(160) NOT NULL
                REFERENCES rollback_incidents (incident_key) ON DELETE CASCADE,
            kind varchar(16) NOT NULL CHECK (kind IN ('rollback', 'undo', 'closed_undo')),
            text text NOT NULL CHECK (text <> ''),
            created_at timestamptz NOT NULL DEFAULT now(),
            attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
            next_attempt_at timestamptz NOT NULL DEFAULT now(),
            claimed_until timestamptz,
            claim_token uuid,
            last_error varchar(200),
            sent_at timestamptz,
            given_up_at timestamptz,
            UNIQUE (incident_key, kind)
        )
        """
    )
    op.execute(
        "CREATE INDEX rollback_notices_unsent ON rollback_notices (next_attempt_at) "
        "WHERE sent_at IS NULL"
    )


def downgrade() -> None:
    """Drop the outbox (unsent messages are lost with it)."""
    op.execute("DROP TABLE rollback_notices")
