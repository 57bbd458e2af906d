"""The seed's six Phase 3 tables, in PostgreSQL 15, with row-level security.

Revision ID: 0001
Revises:
Create Date: 2026-01-10

Differences from the seed's sketch, and why:
- Indexes are real ``CREATE INDEX`` statements (the sketch's inline ``INDEX``
  is MySQL syntax). Every query runs under the tenant policy, so composite
  indexes lead with ``tenant_id``.
- Timestamps are ``timestamptz`` and ``NOT NULL DEFAULT now()``.
- Latencies are stored in seconds (``double precision``, base unit), so every
  ``*_latency_ms`` column of the sketch is ``*_latency_seconds`` here
  (``websocket_latency_ms`` -> ``websocket_latency_seconds``) and
  ``performance_p50/p95/p99`` are ``performance_p50_seconds`` etc.
- CHECK constraints: probabilities and scores in [0, 1] (``luxury_score``
  and ``condition_score`` are normalised scores; ``numeric(3,2)`` could not
  hold a 0-10 scale), counts non-negative, ``success_count <= usage_count``,
  percentiles ordered, ``variant`` in control/treatment, ``feature_name`` one
  of the four Phase 3 features.
- ``tenant_id`` defaults to the transaction's ``app.tenant_id``; with the
  policy's WITH CHECK a row can only ever be written for that tenant.
- Every table ENABLEs and FORCEs row-level security with the policy
  ``tenant_id = current_setting('app.tenant_id', true)``: unset, the setting
  is NULL and no row matches (fails closed).
"""

from collections.abc import Sequence

from alembic import op

from services.migrations.tenancy import TENANT_COLUMN, tenant_isolation_sql

revision: str = "0001"
down_revision: str | Sequence[str] | None = None

FEATURES_CHECK = (
    "feature_name IN ('realtime_intelligence', 'property_vision', "
    "'churn_prevention', 'ai_coaching')"
)

TABLES: dict[str, str] = {
    "realtime_intelligence_events": f"""
        event_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        {TENANT_COLUMN},
        lead_id varchar(255) NOT NULL,
        event_type varchar(100) NOT NULL,
        intelligence_data jsonb NOT NULL,
        websocket_latency_seconds double precision
            CHECK (websocket_latency_seconds >= 0),
        created_at timestamptz NOT NULL DEFAULT now()
    """,
    "churn_interventions": f"""
        intervention_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        {TENANT_COLUMN},
        lead_id varchar(255) NOT NULL,
        churn_probability numeric(5,4) NOT NULL
            CHECK (churn_probability BETWEEN 0 AND 1),
        intervention_stage varchar(50) NOT NULL,
        channels_used text[] NOT NULL DEFAULT '{{}}',
        outcome varchar(50),
        detection_latency_seconds double precision
            CHECK (detection_latency_seconds >= 0),
        intervention_latency_seconds double precision
            CHECK (intervention_latency_seconds >= 0),
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now()
    """,
    "coaching_sessions": f"""
        session_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        {TENANT_COLUMN},
        agent_id varchar(255) NOT NULL,
        conversation_id varchar(255),
        analysis_data jsonb NOT NULL,
        coaching_insights jsonb NOT NULL,
        analysis_latency_seconds double precision
            CHECK (analysis_latency_seconds >= 0),
        improvement_areas text[] NOT NULL DEFAULT '{{}}',
        created_at timestamptz NOT NULL DEFAULT now()
    """,
    "property_vision_analyses": f"""
        analysis_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        {TENANT_COLUMN},
        property_id varchar(255) NOT NULL,
        image_url text NOT NULL,
        analysis_results jsonb NOT NULL,
        luxury_score numeric(3,2) CHECK (luxury_score BETWEEN 0 AND 1),
        condition_score numeric(3,2) CHECK (condition_score BETWEEN 0 AND 1),
        analysis_latency_seconds double precision
            CHECK (analysis_latency_seconds >= 0),
        created_at timestamptz NOT NULL DEFAULT now()
    """,
    "phase3_business_metrics": f"""
        metric_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        {TENANT_COLUMN},
        metric_date date NOT NULL,
        feature_name varchar(100) NOT NULL CHECK ({FEATURES_CHECK}),
        usage_count integer NOT NULL DEFAULT 0 CHECK (usage_count >= 0),
        success_count integer NOT NULL DEFAULT 0
            CHECK (success_count >= 0 AND success_count <= usage_count),
        revenue_impact numeric(12,2) NOT NULL DEFAULT 0,
        performance_p50_seconds double precision CHECK (performance_p50_seconds >= 0),
        performance_p95_seconds double precision CHECK (performance_p95_seconds >= 0),
        performance_p99_seconds double precision CHECK (performance_p99_seconds >= 0),
        created_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT phase3_business_metrics_percentiles_ordered CHECK (
            performance_p50_seconds <= performance_p95_seconds
            AND performance_p95_seconds <= performance_p99_seconds
        ),
        CONSTRAINT phase3_business_metrics_one_row_per_day
            UNIQUE (tenant_id, metric_date, feature_name)
    """,
    "ab_test_assignments": f"""
        assignment_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        {TENANT_COLUMN},
        user_id varchar(255) NOT NULL,
        feature_name varchar(100) NOT NULL CHECK ({FEATURES_CHECK}),
        variant varchar(50) NOT NULL CHECK (variant IN ('control', 'treatment')),
        assigned_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT ab_test_assignments_once UNIQUE (tenant_id, user_id, feature_name)
    """,
}

INDEXES: tuple[tuple[str, str, str], ...] = (
    ("idx_rie_tenant_lead", "realtime_intelligence_events", "tenant_id, lead_id"),
    ("idx_rie_tenant_event_type", "realtime_intelligence_events", "tenant_id, event_type"),
    ("idx_rie_tenant_created_at", "realtime_intelligence_events", "tenant_id, created_at"),
    ("idx_churn_tenant_lead", "churn_interventions", "tenant_id, lead_id"),
    ("idx_churn_tenant_probability", "churn_interventions", "tenant_id, churn_probability"),
    ("idx_churn_tenant_outcome", "churn_interventions", "tenant_id, outcome"),
    ("idx_coaching_tenant_agent", "coaching_sessions", "tenant_id, agent_id"),
    ("idx_coaching_tenant_created_at", "coaching_sessions", "tenant_id, created_at"),
    ("idx_vision_tenant_property", "property_vision_analyses", "tenant_id, property_id"),
    ("idx_vision_tenant_luxury", "property_vision_analyses", "tenant_id, luxury_score"),
    ("idx_vision_tenant_created_at", "property_vision_analyses", "tenant_id, created_at"),
    # The A/B analysis and the dashboard read one feature over a date range
    # for all tenants (owner role), so this one does not lead with tenant_id.
    ("idx_metrics_feature_date", "phase3_business_metrics", "feature_name, metric_date"),
    ("idx_ab_tenant_feature", "ab_test_assignments", "tenant_id, feature_name"),
)


def upgrade() -> None:
    """Create the tables, indexes, the updated_at trigger and the tenant policies."""
    for table, columns in TABLES.items():
        op.execute(f"CREATE TABLE {table} ({columns})")
    for name, table, columns in INDEXES:
        op.execute(f"CREATE INDEX {name} ON {table} ({columns})")
    op.execute(
        """
        CREATE FUNCTION set_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.updated_at := now();
            RETURN NEW;
        END
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER churn_interventions_updated_at BEFORE UPDATE ON churn_interventions "
        "FOR EACH ROW EXECUTE FUNCTION set_updated_at()"
    )
    for table in TABLES:
        for statement in tenant_isolation_sql(table):
            op.execute(statement)


def downgrade() -> None:
    """Drop everything ``upgrade`` created."""
    for table in reversed(TABLES):
        op.execute(f"DROP TABLE {table}")
    op.execute("DROP FUNCTION set_updated_at()")
