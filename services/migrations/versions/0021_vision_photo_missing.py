"""A finished analysis of an uploaded photo remembers when the photo was not stored.

Revision ID: 0021_vision_photo_missing
Revises: 0020_flag_audit_by_environment
Create Date: 2026-12-05

An upload stores the photo while Claude analyses it. When object storage
refused the photo, the analysis (billed) was stored all the same and the
upload answered 500; the client's retry was answered from that analysis,
and the photo it names was never written. ``photo_missing`` is true from an
upload's claim until its photo is stored; an upload that finds it true (the
retry) stores the photo and clears it. A column read by the lookup every
upload already makes, so an answer from storage stays one read (no ``HEAD``
of the object per hit). A constant default: adding it rewrites nothing.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0021_vision_photo_missing"
down_revision: str | Sequence[str] | None = "0020_flag_audit_by_environment"


def upgrade() -> None:
    """The column, false for every analysis so far."""
    op.execute(
        "ALTER TABLE property_vision_analyses "
        "ADD COLUMN photo_missing boolean NOT NULL DEFAULT false"
    )


def downgrade() -> None:
    """Without the column."""
    op.execute("ALTER TABLE property_vision_analyses DROP COLUMN photo_missing")
