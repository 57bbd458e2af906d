"""The cost ledger books calls that got no answer, at an estimated cost, once each.

Revision ID: 0018_claude_unanswered_calls
Revises: 0017_rollback_notices
Create Date: 2026-12-04

A Claude call whose answer did not arrive in CLAUDE_TIMEOUT_SECONDS (or
whose caller stopped waiting while it was in flight) may have been processed
and billed, but no ``usage`` came back: it was never booked, so the ledger
and every spend figure built from it under-counted exactly when the API was
slow. Such a call is now booked too, marked:

- ``claude_cost_ledger.outcome``: ``answered`` (every row so far: the token
  columns are what the API billed) or ``timeout`` / ``cancelled`` / ``dropped``
  (the connection lost before the answer was read; no answer:
  the token columns are NULL, unknown, and ``cost_micro_usd`` is an upper
  bound priced from ``input_tokens_bound`` and ``output_tokens_bound``, the
  request's input tokens and its ``max_tokens``);
- ``claude_cost_ledger.call_id``: the client's id of the call, unique per
  tenant, so that booking a call again (a caller's fallback after a commit
  whose answer was lost) inserts nothing the second time;
- ``phase3_business_metrics.estimated_operating_cost``: the part of
  ``operating_cost`` that is such an estimate, so reports say how much of the
  cost is billed and how much estimated.

Rows written before stay valid: ``outcome`` defaults to ``answered`` and
``call_id`` may be NULL (the unique index ignores NULLs). The downgrade drops
the unanswered rows with the columns that tell them apart from billed ones:
the older schema cannot mark a cost as an estimate.
"""

from collections.abc import Sequence

from alembic import op

from services.migrations.tenancy import across_tenants

revision: str = "0018_claude_unanswered_calls"
down_revision: str | Sequence[str] | None = "0017_rollback_notices"

TOKEN_COLUMNS = ("input_tokens", "output_tokens", "cache_write_tokens", "cache_read_tokens")
#: An answered call has its billed tokens and no bounds; an unanswered one the reverse.
OUTCOME_SHAPE = (
    "(outcome = 'answered' AND input_tokens IS NOT NULL AND output_tokens IS NOT NULL "
    "AND cache_write_tokens IS NOT NULL AND cache_read_tokens IS NOT NULL "
    "AND input_tokens_bound IS NULL AND output_tokens_bound IS NULL) "
    "OR (outcome IN ('timeout', 'cancelled', 'dropped') "
    "AND input_tokens IS NULL AND output_tokens IS NULL "
    "AND cache_write_tokens IS NULL AND cache_read_tokens IS NULL "
    "AND input_tokens_bound IS NOT NULL AND output_tokens_bound IS NOT NULL)"
)


def upgrade() -> None:
    """Add the outcome, the bounds and the call id; let unanswered rows leave tokens NULL."""
    nullable = ", ".join(f"ALTER COLUMN {column} DROP NOT NULL" for column in TOKEN_COLUMNS)
    op.execute(
        "ALTER TABLE claude_cost_ledger "
        "ADD COLUMN outcome varchar(16) NOT NULL DEFAULT 'answered', "
        "ADD COLUMN input_tokens_bound integer CHECK (input_tokens_bound >= 0), "
        "ADD COLUMN output_tokens_bound integer CHECK (output_tokens_bound >= 0), "
        "ADD COLUMN call_id uuid, "
        f"{nullable}, "
        f"ADD CONSTRAINT claude_cost_ledger_outcome_shape CHECK ({OUTCOME_SHAPE})"
    )
    op.execute(
        "CREATE UNIQUE INDEX claude_cost_ledger_one_row_per_call "
        "ON claude_cost_ledger (tenant_id, call_id)"
    )
    op.execute(
        "ALTER TABLE phase3_business_metrics "
        "ADD COLUMN estimated_operating_cost numeric(12,4) NOT NULL DEFAULT 0, "
        "ADD CONSTRAINT phase3_business_metrics_estimate_within_cost "
        "CHECK (estimated_operating_cost >= 0 AND estimated_operating_cost <= operating_cost)"
    )


def downgrade() -> None:
    """Drop the unanswered rows and the columns (see the module docstring)."""
    for statement in across_tenants(
        "claude_cost_ledger", "DELETE FROM claude_cost_ledger WHERE outcome <> 'answered'"
    ):
        op.execute(statement)
    not_null = ", ".join(f"ALTER COLUMN {column} SET NOT NULL" for column in TOKEN_COLUMNS)
    op.execute(
        "ALTER TABLE phase3_business_metrics "
        "DROP CONSTRAINT phase3_business_metrics_estimate_within_cost, "
        "DROP COLUMN estimated_operating_cost"
    )
    op.execute("DROP INDEX claude_cost_ledger_one_row_per_call")
    op.execute(
        "ALTER TABLE claude_cost_ledger DROP CONSTRAINT claude_cost_ledger_outcome_shape, "
        "DROP COLUMN outcome, DROP COLUMN input_tokens_bound, DROP COLUMN output_tokens_bound, "
        f"DROP COLUMN call_id, {not_null}"
    )
