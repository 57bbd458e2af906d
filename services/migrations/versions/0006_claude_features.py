"""Claude-backed features: vision analyses keyed by image, coaching costs, the cost ledger.

Revision ID: 0006_claude_features
Revises: 0005_rollout_experiments
Create Date: 2026-12-03

- ``property_vision_analyses`` gains what exactly-once needs: the image's
  sha256, the model and prompt version, and a ``status`` (``pending`` while
  one request holds the claim to call Claude, ``done`` with the result).
  ``UNIQUE (tenant_id, image_sha256, model, prompt_version)`` is the rule
  "one billable call per tenant, image, model and prompt version"; a
  ``pending`` row has no result yet, so ``analysis_results`` becomes
  nullable, with a CHECK that ``done`` rows have one. Token counts and the
  cost (integer micro-dollars) are stored per analysis.
- ``coaching_sessions`` gains the transcript's sha256, model, prompt version,
  token counts and cost; ``analysis_data`` holds the local metrics and
  ``coaching_insights`` Claude's structured coaching.
- ``claude_cost_ledger``: one row per billable call (tenant, feature, model,
  tokens by kind, cost in micro-dollars, batch or not).
- ``vision_backfill_items``: the Message Batches backfill's progress, one row
  per photo, so a crashed backfill resumes instead of paying twice.

Every new table ENABLEs and FORCEs row-level security with the tenant policy.
"""

from collections.abc import Sequence

from alembic import op

from services.migrations.tenancy import TENANT_COLUMN, tenant_isolation_sql

revision: str = "0006_claude_features"
down_revision: str | Sequence[str] | None = "0005_rollout_experiments"

FEATURE_CHECK = "feature IN ('property_vision', 'ai_coaching', 'churn_prevention')"
TOKEN_COLUMNS = (
    "input_tokens integer NOT NULL DEFAULT 0 CHECK (input_tokens >= 0)",
    "output_tokens integer NOT NULL DEFAULT 0 CHECK (output_tokens >= 0)",
    "cache_write_tokens integer NOT NULL DEFAULT 0 CHECK (cache_write_tokens >= 0)",
    "cache_read_tokens integer NOT NULL DEFAULT 0 CHECK (cache_read_tokens >= 0)",
    "cost_micro_usd bigint NOT NULL DEFAULT 0 CHECK (cost_micro_usd >= 0)",
)
TOKENS = ",\n".join(TOKEN_COLUMNS)
ADD_TOKENS = ",\n".join(f"ADD COLUMN {column}" for column in TOKEN_COLUMNS)
NEW_TABLES: dict[str, str] = {
    "claude_cost_ledger": f"""
        entry_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        {TENANT_COLUMN},
        feature varchar(50) NOT NULL CHECK ({FEATURE_CHECK}),
        model varchar(100) NOT NULL,
        {TOKENS},
        batch boolean NOT NULL DEFAULT false,
        request_id varchar(100),
        created_at timestamptz NOT NULL DEFAULT now()
    """,
    "vision_backfill_items": f"""
        {TENANT_COLUMN},
        object_key text NOT NULL,
        image_sha256 char(64) NOT NULL CHECK (image_sha256 ~ '^[0-9a-f]{{64}}$'),
        model varchar(100) NOT NULL,
        prompt_version varchar(20) NOT NULL,
        batch_id varchar(100),
        status varchar(20) NOT NULL DEFAULT 'queued'
            CHECK (status IN ('queued', 'submitted', 'done', 'failed')),
        error text,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (tenant_id, object_key, model, prompt_version)
    """,
}
VISION_COLUMNS = f"""
    ADD COLUMN image_sha256 char(64) CHECK (image_sha256 ~ '^[0-9a-f]{{64}}$'),
    ADD COLUMN model varchar(100),
    ADD COLUMN prompt_version varchar(20),
    ADD COLUMN status varchar(20) NOT NULL DEFAULT 'done'
        CHECK (status IN ('pending', 'done')),
    ADD COLUMN claimed_at timestamptz,
    ADD COLUMN source varchar(20) CHECK (source IN ('upload', 'object', 'url', 'batch')),
    {ADD_TOKENS},
    ALTER COLUMN analysis_results DROP NOT NULL,
    ADD CONSTRAINT property_vision_done_has_result
        CHECK (status <> 'done' OR analysis_results IS NOT NULL)
"""
COACHING_COLUMNS = f"""
    ADD COLUMN transcript_sha256 char(64) CHECK (transcript_sha256 ~ '^[0-9a-f]{{64}}$'),
    ADD COLUMN model varchar(100),
    ADD COLUMN prompt_version varchar(20),
    {ADD_TOKENS}
"""


def upgrade() -> None:
    """Add the columns and tables."""
    op.execute(f"ALTER TABLE property_vision_analyses {VISION_COLUMNS}")
    op.execute(
        "CREATE UNIQUE INDEX uq_vision_tenant_image_model_prompt ON property_vision_analyses "
        "(tenant_id, image_sha256, model, prompt_version)"
    )
    op.execute(f"ALTER TABLE coaching_sessions {COACHING_COLUMNS}")
    for table, columns in NEW_TABLES.items():
        op.execute(f"CREATE TABLE {table} ({columns})")
        for statement in tenant_isolation_sql(table):
            op.execute(statement)
    op.execute(
        "CREATE INDEX idx_ledger_tenant_feature_created ON claude_cost_ledger "
        "(tenant_id, feature, created_at)"
    )
    op.execute(
        "CREATE INDEX idx_backfill_tenant_status ON vision_backfill_items (tenant_id, status)"
    )
    op.execute(
        "CREATE TRIGGER vision_backfill_items_updated_at BEFORE UPDATE ON vision_backfill_items "
        "FOR EACH ROW EXECUTE FUNCTION set_updated_at()"
    )


def downgrade() -> None:
    """Drop what ``upgrade`` added."""
    for table in reversed(NEW_TABLES):
        op.execute(f"DROP TABLE {table}")
    op.execute(
        "ALTER TABLE coaching_sessions DROP COLUMN transcript_sha256, DROP COLUMN model, "
        "DROP COLUMN prompt_version, DROP COLUMN input_tokens, DROP COLUMN output_tokens, "
        "DROP COLUMN cache_write_tokens, DROP COLUMN cache_read_tokens, DROP COLUMN cost_micro_usd"
    )
    op.execute("DROP INDEX uq_vision_tenant_image_model_prompt")
    op.execute("DELETE FROM property_vision_analyses WHERE status <> 'done'")
    op.execute(
        "ALTER TABLE property_vision_analyses DROP CONSTRAINT property_vision_done_has_result, "
        "ALTER COLUMN analysis_results SET NOT NULL, DROP COLUMN image_sha256, "
        "DROP COLUMN model, DROP COLUMN prompt_version, DROP COLUMN status, "
        "DROP COLUMN claimed_at, DROP COLUMN source, DROP COLUMN input_tokens, "
        "DROP COLUMN output_tokens, DROP COLUMN cache_write_tokens, "
        "DROP COLUMN cache_read_tokens, DROP COLUMN cost_micro_usd"
    )
