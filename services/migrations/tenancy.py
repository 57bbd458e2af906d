"""The tenant column and row-level security every tenant table's revision writes.

Revisions import these instead of writing their own copies, so that no table
can end up with a weaker policy than the others. They are part of the schema's
history: changing a statement here would change what old revisions did, so a
different policy is a new helper and a new revision, never an edit.
``enterprisehub migrate`` refuses to finish while a table with a ``tenant_id``
column lacks forced row-level security and a policy (runner.py).
"""

from __future__ import annotations

from typing import Final

#: A row's tenant, defaulting to the transaction's (``Database.tenant`` sets it).
TENANT_COLUMN: Final = (
    "tenant_id varchar(64) NOT NULL DEFAULT current_setting('app.tenant_id', true)"
)
#: The rows a transaction scoped to a tenant may read and write.
TENANT_CONDITION: Final = "tenant_id = current_setting('app.tenant_id', true)"


def tenant_isolation_sql(table: str) -> list[str]:
    """Statements that confine ``table`` to the transaction's tenant."""
    return [
        f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY",
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
        f"CREATE POLICY tenant_isolation ON {table} "
        f"USING ({TENANT_CONDITION}) WITH CHECK ({TENANT_CONDITION})",
    ]


def across_tenants(table: str, statement: str) -> list[str]:
    """``statement`` over every tenant's rows of ``table``, run by the owner in a revision.

    Forced row-level security applies to the table's owner too, and the role
    that runs migrations on a managed database (RDS's master user) is neither
    a superuser nor BYPASSRLS: with no tenant in scope, a backfill would read
    and change nothing, silently. The policy is unforced for the one statement,
    inside the migration's transaction, so no other session ever sees it off.
    """
    return [
        f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY",
        statement,
        f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY",
    ]
