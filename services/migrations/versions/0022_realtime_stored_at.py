"""When a realtime event's row was written, which the outbox relay's grace counts from.

Revision ID: 0022_realtime_stored_at
Revises: 0021_vision_photo_missing
Create Date: 2026-12-06

``created_at`` is the moment the ingest accepted the event (the latency
clock's start), taken before the event waits for its group's insert and a pool
connection (up to DB_POOL_TIMEOUT). The relay took rows older than
REALTIME_RELAY_GRACE by it: a row committed later than the grace after its
acceptance was the relay's at once, while its own ingest was about to publish
it, and the event reached the stream, and every socket, twice. ``stored_at``
is the insert's transaction time: the grace now starts when the row exists.
``now()`` is stable, so adding the column rewrites nothing (the rows already
there get this migration's time, and wait one grace more).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0022_realtime_stored_at"
down_revision: str | Sequence[str] | None = "0021_vision_photo_missing"


def upgrade() -> None:
    """The column; every insert fills it by its default."""
    op.execute(
        "ALTER TABLE realtime_intelligence_events "
        "ADD COLUMN stored_at timestamptz NOT NULL DEFAULT now()"
    )


def downgrade() -> None:
    """Without the column."""
    op.execute("ALTER TABLE realtime_intelligence_events DROP COLUMN stored_at")
