"""Property vision: which properties a stored analysis belongs to.

Revision ID: 0015_vision_property_links
Revises: 0014_coaching_claims
Create Date: 2026-12-04

A photo is analysed once per tenant (one ``property_vision_analyses`` row per
image sha256, model and prompt version), but the same photo is posted for
several properties (building amenities, a neighbourhood shot). The row's
``property_id`` names only the property it was first analysed for, so a
second property's upload answered with the first property's id and its
listing stayed empty. ``property_vision_links`` records every (property,
analysis) pair a photo was posted for, with when it first was; the listing
and the dashboard's per-property figures read through it. The analysis row
keeps its ``property_id`` (the property it was first claimed for).

The link's foreign key includes ``tenant_id``, so a link can only name an
analysis of its own tenant (foreign-key checks do not see row-level
security); it cascades when an analysis row is deleted. Every stored analysis
gets the link of its own ``property_id``.
"""

from collections.abc import Sequence

from alembic import op

from services.migrations.tenancy import TENANT_COLUMN, across_tenants, tenant_isolation_sql

revision: str = "0015_vision_property_links"
down_revision: str | Sequence[str] | None = "0014_coaching_claims"

TABLE = "property_vision_links"


def upgrade() -> None:
    """Create the link table, its tenant policy, and a link per stored analysis."""
    op.execute(
        "CREATE UNIQUE INDEX uq_vision_tenant_analysis "
        "ON property_vision_analyses (tenant_id, analysis_id)"
    )
    op.execute(
        f"""
        CREATE TABLE {TABLE} (
            {TENANT_COLUMN},
            property_id varchar(255) NOT NULL,
            analysis_id uuid NOT NULL,
            posted_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (tenant_id, property_id, analysis_id),
            FOREIGN KEY (tenant_id, analysis_id)
                REFERENCES property_vision_analyses (tenant_id, analysis_id) ON DELETE CASCADE
        )
        """
    )
    # The cascade from an analysis, and "which properties show this photo".
    op.execute(f"CREATE INDEX idx_vision_links_analysis ON {TABLE} (tenant_id, analysis_id)")
    # Every tenant's analyses are read (across_tenants), and the link table is
    # filled before its own policy exists.
    for statement in across_tenants(
        "property_vision_analyses",
        "INSERT INTO property_vision_links (tenant_id, property_id, analysis_id, posted_at) "
        "SELECT tenant_id, property_id, analysis_id, created_at FROM property_vision_analyses "
        "WHERE status = 'done'",
    ):
        op.execute(statement)
    for statement in tenant_isolation_sql(TABLE):
        op.execute(statement)


def downgrade() -> None:
    """Drop the links (each analysis row still names its first property)."""
    op.execute(f"DROP TABLE {TABLE}")
    op.execute("DROP INDEX uq_vision_tenant_analysis")
