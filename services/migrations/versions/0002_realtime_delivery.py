"""Realtime delivery bookkeeping on realtime_intelligence_events (the outbox).

Revision ID: 0002_realtime_delivery
Revises: 0001
Create Date: 2026-01-10

The websocket-manager stores an event before acknowledging it and publishes
it to the tenant's Redis stream afterwards (services/realtime/ingest.py):

- ``agent_id``: the agent an event targets (NULL: every socket of the
  tenant), kept so the outbox relay can republish the event unchanged.
- ``stream_id``: the event's id in ``tenant:{id}:events`` once published, so
  a client resuming with an event UUID is mapped to its stream position.
- ``published_at``: when the event entered the stream. The ingest inserts
  NULL and marks it after XADD; NULL rows older than the relay's grace period
  are the outbox the relay publishes. The default ``now()`` makes rows written
  by anything else (and rows existing before this revision) count as
  published, so the relay never replays history it did not accept.
- A partial index on the outbox rows keeps the relay's per-tenant scan a
  small index probe however large the table grows.
- An expression index on the stream position (the two numbers of
  ``stream_id``) serves the replay of events a reconnecting client missed
  that the stream no longer holds (trimmed by MAXLEN, or lost by Redis).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002_realtime_delivery"
down_revision: str | Sequence[str] | None = "0001"


def upgrade() -> None:
    """Add the delivery columns and the outbox index."""
    op.execute(
        """
        ALTER TABLE realtime_intelligence_events
            ADD COLUMN agent_id varchar(255),
            ADD COLUMN stream_id varchar(48),
            ADD COLUMN published_at timestamptz DEFAULT now()
        """
    )
    op.execute(
        "CREATE INDEX idx_rie_tenant_unpublished ON realtime_intelligence_events "
        "(tenant_id, created_at) WHERE published_at IS NULL"
    )
    op.execute(
        "CREATE INDEX idx_rie_tenant_stream_position ON realtime_intelligence_events "
        "(tenant_id, (split_part(stream_id, '-', 1)::bigint), "
        "(split_part(stream_id, '-', 2)::bigint)) WHERE stream_id IS NOT NULL"
    )


def downgrade() -> None:
    """Drop what ``upgrade`` added."""
    op.execute("DROP INDEX idx_rie_tenant_stream_position")
    op.execute("DROP INDEX idx_rie_tenant_unpublished")
    op.execute(
        """
        ALTER TABLE realtime_intelligence_events
            DROP COLUMN published_at,
            DROP COLUMN stream_id,
            DROP COLUMN agent_id
        """
    )
