"""Progressive rollout, experiments and business impact.

Revision ID: 0005_rollout_experiments
Revises: 0004
Create Date: 2026-12-03

- ``ab_test_assignments``: randomisation is by tenant, so ``user_id``
  defaults to ``'*'`` (the whole tenant); ``bucket`` (0..9999) and the
  ``rollout_percentage`` at first exposure are kept, so the variant of a
  tenant can be recomputed for any later percentage (nested rollouts).
- ``phase3_business_metrics``: ``operating_cost`` (dollars, from the Claude
  cost ledger where features report it, else the configured assumption) and
  ``updated_at`` (the daily job upserts; re-running a day rewrites its rows).
- ``flag_audit``, ``rollout_decisions``, ``experiment_results``: global
  operator records (no tenant data: who changed which flag, each ``rollout
  advance`` decision with its inputs, and experiment summaries), so no
  tenant policy; the application role gets DML through the default
  privileges the migration runner sets.
- ``impact_tenants(from, to)``: the ids of the tenants with feature activity
  or stored aggregates in ``[from, to)``. The daily job needs the list to open one tenant-scoped
  transaction per tenant; every other read stays under row-level security.
  The function is ``SECURITY DEFINER`` owned by ``enterprisehub_tenant_directory``,
  a NOLOGIN role whose only power is a ``SELECT`` policy on the activity
  tables; it returns ids, never rows, and ``search_path`` is pinned.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005_rollout_experiments"
down_revision: str | Sequence[str] | None = "0004"

DIRECTORY_ROLE = "enterprisehub_tenant_directory"
FEATURES_CHECK = (
    "feature_name IN ('realtime_intelligence', 'property_vision', "
    "'churn_prevention', 'ai_coaching')"
)
ACTIVITY_TABLES: tuple[str, ...] = (
    "realtime_intelligence_events",
    "property_vision_analyses",
    "churn_interventions",
    "coaching_sessions",
    "ab_test_assignments",
    "phase3_business_metrics",
)

GLOBAL_TABLES: dict[str, str] = {
    "flag_audit": f"""
        audit_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        changed_at timestamptz NOT NULL DEFAULT now(),
        environment varchar(32) NOT NULL,
        feature_name varchar(100) NOT NULL CHECK ({FEATURES_CHECK}),
        actor varchar(255) NOT NULL CHECK (actor <> ''),
        from_enabled boolean,
        from_percentage numeric(5,2),
        to_enabled boolean NOT NULL,
        to_percentage numeric(5,2) NOT NULL CHECK (to_percentage BETWEEN 0 AND 100),
        reason text NOT NULL CHECK (reason <> ''),
        command varchar(64) NOT NULL
    """,
    "rollout_decisions": f"""
        decision_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        decided_at timestamptz NOT NULL DEFAULT now(),
        environment varchar(32) NOT NULL,
        feature_name varchar(100) NOT NULL CHECK ({FEATURES_CHECK}),
        stage_percentage numeric(5,2) NOT NULL,
        decision varchar(16) NOT NULL CHECK (decision IN ('advance', 'hold', 'rollback')),
        reason text NOT NULL,
        inputs jsonb NOT NULL,
        applied boolean NOT NULL DEFAULT false,
        actor varchar(255) NOT NULL
    """,
    "experiment_results": f"""
        result_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        computed_at timestamptz NOT NULL DEFAULT now(),
        feature_name varchar(100) NOT NULL CHECK ({FEATURES_CHECK}),
        metric varchar(100) NOT NULL,
        window_start date NOT NULL,
        window_end date NOT NULL CHECK (window_end >= window_start),
        result jsonb NOT NULL
    """,
}
GLOBAL_INDEXES: tuple[tuple[str, str, str], ...] = (
    ("idx_flag_audit_feature_time", "flag_audit", "feature_name, changed_at"),
    ("idx_rollout_decisions_feature_time", "rollout_decisions", "feature_name, decided_at"),
    ("idx_experiment_results_feature_time", "experiment_results", "feature_name, computed_at"),
)


def upgrade() -> None:
    """Columns, operator tables and the tenant directory function."""
    op.execute("ALTER TABLE ab_test_assignments ALTER COLUMN user_id SET DEFAULT '*'")
    op.execute(
        "ALTER TABLE ab_test_assignments "
        "ADD COLUMN bucket integer CHECK (bucket BETWEEN 0 AND 9999), "
        "ADD COLUMN rollout_percentage numeric(5,2) "
        "CHECK (rollout_percentage BETWEEN 0 AND 100)"
    )
    op.execute(
        "ALTER TABLE phase3_business_metrics "
        "ADD COLUMN operating_cost numeric(12,4) NOT NULL DEFAULT 0 "
        "CHECK (operating_cost >= 0), "
        "ADD COLUMN updated_at timestamptz NOT NULL DEFAULT now()"
    )
    for table, columns in GLOBAL_TABLES.items():
        op.execute(f"CREATE TABLE {table} ({columns})")
    for name, table, columns in GLOBAL_INDEXES:
        op.execute(f"CREATE INDEX {name} ON {table} ({columns})")

    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{DIRECTORY_ROLE}') THEN
                CREATE ROLE {DIRECTORY_ROLE} NOLOGIN;
            END IF;
        END
        $$
        """  # noqa: S608 - constants only
    )
    # The migrating role must be a member to hand the function over to it.
    op.execute(f"GRANT {DIRECTORY_ROLE} TO CURRENT_USER")
    op.execute(f"GRANT USAGE ON SCHEMA public TO {DIRECTORY_ROLE}")
    for table in ACTIVITY_TABLES:
        op.execute(f"GRANT SELECT ON {table} TO {DIRECTORY_ROLE}")
        op.execute(
            f"CREATE POLICY tenant_directory ON {table} FOR SELECT TO {DIRECTORY_ROLE} USING (true)"
        )
    op.execute(
        """
        CREATE FUNCTION impact_tenants(p_from timestamptz, p_to timestamptz)
        RETURNS SETOF text
        LANGUAGE sql
        STABLE
        SECURITY DEFINER
        SET search_path = public, pg_temp
        AS $$
            SELECT tenant_id FROM public.realtime_intelligence_events
                WHERE created_at >= p_from AND created_at < p_to
            UNION SELECT tenant_id FROM public.property_vision_analyses
                WHERE created_at >= p_from AND created_at < p_to
            UNION SELECT tenant_id FROM public.churn_interventions
                WHERE created_at >= p_from AND created_at < p_to
            UNION SELECT tenant_id FROM public.coaching_sessions
                WHERE created_at >= p_from AND created_at < p_to
            UNION SELECT tenant_id FROM public.ab_test_assignments
                WHERE assigned_at < p_to
            -- Aggregates outlive the raw events (kept a year, events 30 days).
            UNION SELECT tenant_id FROM public.phase3_business_metrics
                WHERE metric_date >= (p_from AT TIME ZONE 'UTC')::date
                    AND metric_date < (p_to AT TIME ZONE 'UTC')::date
        $$
        """
    )
    # A new owner needs CREATE on the function's schema, which a superuser's
    # migration never checked and RDS's master user's does: granted for the
    # hand-over only (the role owns the function; it creates nothing).
    op.execute(f"GRANT CREATE ON SCHEMA public TO {DIRECTORY_ROLE}")
    op.execute(f"ALTER FUNCTION impact_tenants(timestamptz, timestamptz) OWNER TO {DIRECTORY_ROLE}")
    op.execute(f"REVOKE CREATE ON SCHEMA public FROM {DIRECTORY_ROLE}")


def downgrade() -> None:
    """Drop what ``upgrade`` added (the role stays if other objects use it)."""
    op.execute("DROP FUNCTION impact_tenants(timestamptz, timestamptz)")
    for table in ACTIVITY_TABLES:
        op.execute(f"DROP POLICY tenant_directory ON {table}")
        op.execute(f"REVOKE SELECT ON {table} FROM {DIRECTORY_ROLE}")  # noqa: S608
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {DIRECTORY_ROLE}")
    for table in reversed(GLOBAL_TABLES):
        op.execute(f"DROP TABLE {table}")
    op.execute(
        "ALTER TABLE phase3_business_metrics DROP COLUMN operating_cost, DROP COLUMN updated_at"
    )
    op.execute("ALTER TABLE ab_test_assignments DROP COLUMN bucket, DROP COLUMN rollout_percentage")
    op.execute("ALTER TABLE ab_test_assignments ALTER COLUMN user_id DROP DEFAULT")
