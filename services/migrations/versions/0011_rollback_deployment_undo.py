"""Rollback incidents: the deployment undo, claimed and recorded once per incident.

Revision ID: 0011_rollback_deployment_undo
Revises: 0010_churn_queue_statistics
Create Date: 2026-12-03

When the stack lets the rollback handler undo deployments
(``rollback.undoDeployments``), the incident that turned a feature's flag off
also undoes the latest rollout of the feature's Deployments. The transaction
that writes the incident row sets ``deployments_state = 'pending'`` with the
Deployments to undo; one copy of the incident then claims it (``pending`` ->
``claimed``, a single-row UPDATE that only one transaction can win), calls the
Kubernetes API and records each Deployment's outcome (``done``). A duplicate
webhook never claims a second time, so no Deployment is patched twice; one
that arrives after a crash between the flag write and the claim picks the
pending undo up. NULL: the incident has nothing to undo (flags only).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011_rollback_deployment_undo"
down_revision: str | Sequence[str] | None = "0010_churn_queue_statistics"


def upgrade() -> None:
    """Add the undo's state, its Deployments and their outcomes."""
    op.execute(
        """
        ALTER TABLE rollback_incidents
            ADD COLUMN deployments_state varchar(16)
                CHECK (deployments_state IN ('pending', 'claimed', 'done')),
            ADD COLUMN deployments_planned text[] NOT NULL DEFAULT '{}',
            ADD COLUMN deployments_outcome jsonb NOT NULL DEFAULT '[]'
                CHECK (jsonb_typeof(deployments_outcome) = 'array'),
            ADD COLUMN deployments_claimed_at timestamptz,
            ADD COLUMN deployments_done_at timestamptz
        """
    )


def downgrade() -> None:
    """Drop the undo's columns."""
    op.execute(
        """
        ALTER TABLE rollback_incidents
            DROP COLUMN deployments_done_at,
            DROP COLUMN deployments_claimed_at,
            DROP COLUMN deployments_outcome,
            DROP COLUMN deployments_planned,
            DROP COLUMN deployments_state
        """
    )
