"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

A new table with a tenant_id column must ENABLE and FORCE row level security
with the tenant_isolation policy (services/migrations/tenancy.py);
`enterprisehub migrate` refuses to finish otherwise.
"""

from collections.abc import Sequence

from alembic import op
${imports if imports else ""}

revision: str = ${repr(up_revision)}
down_revision: str | Sequence[str] | None = ${repr(down_revision)}
% if branch_labels:
branch_labels: str | Sequence[str] | None = ${repr(branch_labels)}
% endif
% if depends_on:
depends_on: str | Sequence[str] | None = ${repr(depends_on)}
% endif


def upgrade() -> None:
    """Apply this revision."""
    ${upgrades if upgrades else 'op.execute("SELECT 1")'}


def downgrade() -> None:
    """Revert this revision."""
    ${downgrades if downgrades else 'op.execute("SELECT 1")'}
