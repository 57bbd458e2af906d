"""Churn prevention: leads and their risk state, signals, the intervention outbox.

Revision ID: 0007_churn
Revises: 0006_claude_features
Create Date: 2026-12-03

- ``churn_tenants``: the tenants that registered leads. The detection pass
  runs as the application role, which row-level security confines to one
  tenant per transaction, so it needs a list of tenants to visit: this table
  is readable by every scope (a second, SELECT-only policy) and writable only
  for the transaction's own tenant. It holds tenant ids and nothing else.
- ``churn_leads``: one row per lead: contact data the interventions need
  (CRM contact id, agent, IANA time zone), the engagement aggregates the
  model reads (kept up to date by each signal in O(1): last-seen times and
  exponentially decayed counts), and the risk state the last pass computed.
- ``churn_signals``: every accepted engagement signal, idempotent on
  ``(tenant_id, signal_id)`` so a CRM retrying a webhook stores it once.
- ``churn_interventions`` (revision 0001) gains the workflow's columns and a
  unique key per lead, stage and window: the "one intervention per lead,
  stage and window" rule is a constraint, not a hope.
- ``churn_outbox``: one row per channel of an intervention, written in the
  same transaction as the intervention and its delivery job; it carries the
  idempotency key sent to the CRM and the delivery state.
- procrastinate's own schema (its tables, types and functions, version
  pinned by uv.lock), so ``enterprisehub migrate`` prepares the job queue
  too and the application role gets its grants like every other table.

Every table with ``tenant_id`` ENABLEs and FORCEs row-level security.
"""

from collections.abc import Sequence

from alembic import op
from sqlalchemy.util import await_only

from services.migrations.tenancy import TENANT_COLUMN, tenant_isolation_sql

revision: str = "0007_churn"
down_revision: str | Sequence[str] | None = "0006_claude_features"

SIGNAL_TYPES = (
    "message_received",
    "message_sent",
    "reply",
    "email_opened",
    "link_clicked",
    "appointment_booked",
    "appointment_cancelled",
    "stage_changed",
    "lead_lost",
)


def _quoted(values: Sequence[str]) -> str:
    return ", ".join(f"'{value}'" for value in values)


TABLES: dict[str, str] = {
    "churn_tenants": """
        tenant_id varchar(64) PRIMARY KEY DEFAULT current_setting('app.tenant_id', true),
        created_at timestamptz NOT NULL DEFAULT now()
    """,
    "churn_leads": f"""
        {TENANT_COLUMN},
        lead_id varchar(255) NOT NULL,
        agent_id varchar(255),
        crm_contact_id varchar(255) NOT NULL,
        timezone varchar(64) NOT NULL DEFAULT 'UTC',
        pipeline_stage smallint NOT NULL DEFAULT 0 CHECK (pipeline_stage BETWEEN 0 AND 5),
        status varchar(20) NOT NULL DEFAULT 'active'
            CHECK (status IN ('active', 'churned', 'closed')),
        created_at timestamptz NOT NULL DEFAULT now(),
        last_inbound_at timestamptz,
        last_outbound_at timestamptz,
        last_signal_at timestamptz,
        last_signal_received_at timestamptz,
        re_engaged_at timestamptz,
        inbound_recent double precision NOT NULL DEFAULT 0,
        outbound_recent double precision NOT NULL DEFAULT 0,
        opens_recent double precision NOT NULL DEFAULT 0,
        appointments_recent double precision NOT NULL DEFAULT 0,
        decay_at timestamptz NOT NULL DEFAULT now(),
        unanswered_outbound integer NOT NULL DEFAULT 0 CHECK (unanswered_outbound >= 0),
        churn_probability numeric(5,4) CHECK (churn_probability BETWEEN 0 AND 1),
        risk_stage varchar(20),
        scored_at timestamptz,
        model_version varchar(64),
        PRIMARY KEY (tenant_id, lead_id)
    """,
    "churn_signals": f"""
        {TENANT_COLUMN},
        signal_id uuid NOT NULL,
        lead_id varchar(255) NOT NULL,
        signal_type varchar(40) NOT NULL CHECK (signal_type IN ({_quoted(SIGNAL_TYPES)})),
        occurred_at timestamptz NOT NULL,
        received_at timestamptz NOT NULL DEFAULT now(),
        data jsonb NOT NULL DEFAULT '{{}}',
        PRIMARY KEY (tenant_id, signal_id),
        FOREIGN KEY (tenant_id, lead_id) REFERENCES churn_leads (tenant_id, lead_id)
            ON DELETE CASCADE
    """,
    "churn_outbox": f"""
        outbox_id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
        {TENANT_COLUMN},
        intervention_id uuid NOT NULL
            REFERENCES churn_interventions (intervention_id) ON DELETE CASCADE,
        lead_id varchar(255) NOT NULL,
        channel varchar(10) NOT NULL CHECK (channel IN ('sms', 'email', 'task')),
        idempotency_key varchar(200) NOT NULL,
        status varchar(20) NOT NULL DEFAULT 'pending' CHECK (status IN (
            'pending', 'sending', 'delivered', 'not_sent', 'suppressed', 'cancelled',
            'dead_letter')),
        reason varchar(200),
        attempts integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
        not_before timestamptz NOT NULL DEFAULT now(),
        last_error text,
        provider_message_id varchar(255),
        claimed_at timestamptz,
        delivered_at timestamptz,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        CONSTRAINT churn_outbox_once UNIQUE (tenant_id, idempotency_key)
    """,
}

INTERVENTION_COLUMNS = (
    "window_start timestamptz",
    "status varchar(20) NOT NULL DEFAULT 'pending' CHECK (status IN ("
    "'pending', 'delivered', 'not_sent', 'suppressed', 'cancelled', 'dead_letter'))",
    "reason varchar(200)",
    "detected_at timestamptz",
    "intervened_at timestamptz",
    "outcome_at timestamptz",
    "model_version varchar(64)",
)

INDEXES: tuple[tuple[str, str, str], ...] = (
    ("idx_churn_leads_tenant_status", "churn_leads", "tenant_id, status"),
    ("idx_churn_signals_tenant_lead", "churn_signals", "tenant_id, lead_id, occurred_at"),
    ("idx_churn_outbox_tenant_status", "churn_outbox", "tenant_id, status, not_before"),
    ("idx_churn_outbox_tenant_lead", "churn_outbox", "tenant_id, lead_id, status"),
    ("idx_churn_interventions_tenant_created", "churn_interventions", "tenant_id, created_at"),
)


def _procrastinate_schema() -> str:
    from procrastinate.schema import SchemaManager

    return SchemaManager.get_schema()


def upgrade() -> None:
    """Create the churn tables, policies and procrastinate's schema."""
    for table, columns in TABLES.items():
        op.execute(f"CREATE TABLE {table} ({columns})")
    for column in INTERVENTION_COLUMNS:
        op.execute(f"ALTER TABLE churn_interventions ADD COLUMN {column}")
    op.execute(
        "ALTER TABLE churn_interventions ADD CONSTRAINT churn_interventions_once "
        "UNIQUE (tenant_id, lead_id, intervention_stage, window_start)"
    )
    for name, table, columns in INDEXES:
        op.execute(f"CREATE INDEX {name} ON {table} ({columns})")
    op.execute(
        "CREATE TRIGGER churn_outbox_updated_at BEFORE UPDATE ON churn_outbox "
        "FOR EACH ROW EXECUTE FUNCTION set_updated_at()"
    )
    for table in TABLES:
        for statement in tenant_isolation_sql(table):
            op.execute(statement)
    # The tenant directory (see the module docstring): readable by any scope.
    op.execute("CREATE POLICY churn_tenants_directory ON churn_tenants FOR SELECT USING (true)")
    # procrastinate's schema is a script of many statements with dollar-quoted
    # bodies: sent as one simple-protocol message on the raw asyncpg
    # connection, inside the migration's transaction.
    raw = op.get_bind().connection.driver_connection
    if raw is None:
        raise RuntimeError("revision 0007 needs a live asyncpg connection (not offline mode)")
    await_only(raw.execute(_procrastinate_schema()))


def downgrade() -> None:
    """Drop everything ``upgrade`` created (procrastinate's schema included)."""
    op.execute(
        """
        DO $$
        DECLARE item record;
        BEGIN
            FOR item IN SELECT c.relname FROM pg_class c
                JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = 'public' AND c.relkind = 'r'
                  AND c.relname LIKE 'procrastinate\\_%' LOOP
                EXECUTE format('DROP TABLE IF EXISTS %I CASCADE', item.relname);
            END LOOP;
            FOR item IN SELECT p.oid::regprocedure AS signature FROM pg_proc p
                JOIN pg_namespace n ON n.oid = p.pronamespace
                WHERE n.nspname = 'public' AND p.proname LIKE 'procrastinate\\_%' LOOP
                EXECUTE format('DROP FUNCTION IF EXISTS %s CASCADE', item.signature);
            END LOOP;
            FOR item IN SELECT t.typname FROM pg_type t
                JOIN pg_namespace n ON n.oid = t.typnamespace
                WHERE n.nspname = 'public' AND t.typname LIKE 'procrastinate\\_%'
                  AND t.typtype IN ('e', 'c') LOOP
                EXECUTE format('DROP TYPE IF EXISTS %I CASCADE', item.typname);
            END LOOP;
        END
        $$
        """
    )
    for table in reversed(TABLES):
        op.execute(f"DROP TABLE {table}")
    op.execute("ALTER TABLE churn_interventions DROP CONSTRAINT churn_interventions_once")
    for column in INTERVENTION_COLUMNS:
        op.execute(f"ALTER TABLE churn_interventions DROP COLUMN {column.split()[0]}")
