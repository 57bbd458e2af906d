"""Coaching: a repeated transcript is found through an index, not a scan.

Revision ID: 0009_coaching_transcript_lookup
Revises: 0008_rollback_incidents
Create Date: 2026-12-03

Every coaching analysis first looks for a stored session of the same
transcript, model and prompt version (the newest one), so a repeat is
answered without a Claude call. The only index the table had for it was
``(tenant_id, created_at)``: the lookup walked the tenant's sessions from the
newest back, checking each transcript hash, so a new transcript (a miss)
read every session the tenant ever stored. This index answers it with one
descent, and serves the ``ORDER BY created_at DESC LIMIT 1`` from its last
column.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009_coaching_transcript_lookup"
down_revision: str | Sequence[str] | None = "0008_rollback_incidents"


def upgrade() -> None:
    """Create the index."""
    op.execute(
        "CREATE INDEX idx_coaching_tenant_transcript ON coaching_sessions "
        "(tenant_id, transcript_sha256, model, prompt_version, created_at)"
    )


def downgrade() -> None:
    """Drop the index."""
    op.execute("DROP INDEX idx_coaching_tenant_transcript")
