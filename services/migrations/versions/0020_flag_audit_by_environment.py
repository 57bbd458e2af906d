"""Flag audit reads go by environment, feature and write order through one index.

Revision ID: 0020_flag_audit_by_environment
Revises: 0019_impact_tenants_ledger
Create Date: 2026-12-05

Every read of ``flag_audit`` (revision 0005) asks for one environment's rows of
a feature in write order (``audit_id``): each feature's record, which the
rollback handler's keeper reads every 10 seconds; the last change that
``rollout status`` prints; when the current stage began, for ``rollout
advance``. The index of revision 0005, ``(feature_name, changed_at)``, serves
none of them, so each read scanned the whole table, a table that only grows.
``(environment, feature_name, audit_id DESC)`` is the order of those reads;
the old index, which no query uses, goes.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0020_flag_audit_by_environment"
down_revision: str | Sequence[str] | None = "0019_impact_tenants_ledger"


def upgrade() -> None:
    """The index in the reads' order in place of the unused one."""
    op.execute(
        "CREATE INDEX idx_flag_audit_environment_feature "
        "ON flag_audit (environment, feature_name, audit_id DESC)"
    )
    op.execute("DROP INDEX idx_flag_audit_feature_time")


def downgrade() -> None:
    """Revision 0005's index again."""
    op.execute("CREATE INDEX idx_flag_audit_feature_time ON flag_audit (feature_name, changed_at)")
    op.execute("DROP INDEX idx_flag_audit_environment_feature")
