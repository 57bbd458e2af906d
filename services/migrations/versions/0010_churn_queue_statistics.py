"""Churn: the orchestrator can refresh the job queue's planner statistics.

Revision ID: 0010_churn_queue_statistics
Revises: 0009_coaching_transcript_lookup
Create Date: 2026-12-03

procrastinate's worker takes each job with ``procrastinate_fetch_job_v2``:
``ORDER BY priority DESC, id LIMIT 1 ... FOR UPDATE SKIP LOCKED`` over the
``todo`` jobs. With statistics from a near-empty ``procrastinate_jobs`` (as
after start-up, or after a quiet hour) the planner expects one row and reads
and sorts every waiting job instead of descending
``procrastinate_jobs_priority_idx_v1``: with 8,000 jobs just queued by one
pass, 10 ms of Postgres CPU per fetch instead of 0.2 ms, and since each
worker fetches one job at a time, a cap of about 100 fetches per second.
Autovacuum would fix the statistics, but only at its next round (up to a
minute, twice the 30-second intervention budget).

``churn_analyze_queue()`` runs ``ANALYZE procrastinate_jobs``; a detection
pass calls it after queuing many sends (services/churn/runtime.py). ANALYZE
needs the table's owner, so the function is ``SECURITY DEFINER`` owned by the
migrating role (the owner of procrastinate's tables) with a fixed
``search_path``; it takes no argument and touches only that table.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010_churn_queue_statistics"
down_revision: str | Sequence[str] | None = "0009_coaching_transcript_lookup"


def upgrade() -> None:
    """Create ``churn_analyze_queue()``."""
    op.execute(
        """
        CREATE FUNCTION churn_analyze_queue() RETURNS void
        LANGUAGE sql
        SECURITY DEFINER
        SET search_path = public, pg_temp
        AS $$ ANALYZE public.procrastinate_jobs $$
        """
    )


def downgrade() -> None:
    """Drop ``churn_analyze_queue()``."""
    op.execute("DROP FUNCTION churn_analyze_queue()")
