"""Token revocations: one token (by ``jti``) or every token of a subject, per tenant.

Revision ID: 0024_token_revocations
Revises: 0023_retention_indexes
Create Date: 2026-12-06

``auth_token_revocations`` holds what ``enterprisehub token revoke`` wrote: a
tenant and either one token's ``jti`` or a subject (every token of that agent
issued at or before ``revoked_at``), who revoked it and why, and
``keep_until``: the last instant a token it names could still verify (its
longest lifetime and the clock-skew leeway after ``revoked_at``). After that
the row revokes nothing, and ``enterprisehub retention prune`` deletes it. A
tenant table like the others (forced row-level security): the operator
command writes and lists one tenant's rows in that tenant's transaction.
Revoking the same token or subject twice is one row (the unique indexes).

Every service keeps the active revocations of *all* tenants in memory
(``services.common.revocation``), so its verifier needs no query per request.
The application role reads them through ``token_revocations_active()``, a
``SECURITY DEFINER`` function owned by ``enterprisehub_revocation_reader``, a
NOLOGIN role whose only power is a ``SELECT`` policy on this table and a
column grant that leaves out ``actor`` and ``reason``: the function returns
what a verifier compares (tenant, jti, subject, time), never who revoked or
why, and ``search_path`` is pinned, as ``impact_tenants`` (revision 0005) is
for the daily jobs. ``token_revocation_tenants()`` lists the tenants with
rows (ids only), so the retention prune finds every tenant it must visit.
"""

from collections.abc import Sequence

from alembic import op

from services.migrations.tenancy import TENANT_COLUMN, tenant_isolation_sql

revision: str = "0024_token_revocations"
down_revision: str | Sequence[str] | None = "0023_retention_indexes"

READER_ROLE = "enterprisehub_revocation_reader"
TABLE = "auth_token_revocations"
#: What the reader role may see: what a verifier compares, and when it stops mattering.
READER_COLUMNS = "tenant_id, jti, subject, revoked_at, keep_until"
#: Both functions, for the hand-over to the reader role and the downgrade.
FUNCTIONS = ("token_revocations_active()", "token_revocation_tenants()")


def upgrade() -> None:
    """The table, its indexes and policy, the reader role and its two functions."""
    op.execute(
        f"""
        CREATE TABLE {TABLE} (
            revocation_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            {TENANT_COLUMN},
            -- issue_token's jti: uuid4().hex
            jti varchar(32) CHECK (jti ~ '^[0-9a-f]{{32}}$'),
            subject varchar(255) CHECK (subject <> ''),
            revoked_at timestamptz NOT NULL DEFAULT now(),
            keep_until timestamptz NOT NULL,
            actor varchar(255) NOT NULL CHECK (actor <> ''),
            reason text NOT NULL CHECK (reason <> ''),
            CHECK ((jti IS NULL) <> (subject IS NULL)),
            CHECK (keep_until >= revoked_at)
        )
        """
    )
    op.execute(
        f"CREATE UNIQUE INDEX {TABLE}_token ON {TABLE} (tenant_id, jti) WHERE jti IS NOT NULL"
    )
    op.execute(
        f"CREATE UNIQUE INDEX {TABLE}_subject ON {TABLE} (tenant_id, subject) "
        "WHERE subject IS NOT NULL"
    )
    # The prune's batches (tenant, oldest first) and the services' read of what is active.
    op.execute(f"CREATE INDEX {TABLE}_tenant_keep ON {TABLE} (tenant_id, keep_until)")
    op.execute(f"CREATE INDEX {TABLE}_keep ON {TABLE} (keep_until)")
    for statement in tenant_isolation_sql(TABLE):
        op.execute(statement)

    op.execute(
        f"""
        DO $$
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{READER_ROLE}') THEN
                CREATE ROLE {READER_ROLE} NOLOGIN;
            END IF;
        END
        $$
        """  # noqa: S608 - constants only
    )
    # The migrating role must be a member to hand the functions over to it.
    op.execute(f"GRANT {READER_ROLE} TO CURRENT_USER")
    op.execute(f"GRANT USAGE ON SCHEMA public TO {READER_ROLE}")
    op.execute(f"GRANT SELECT ({READER_COLUMNS}) ON {TABLE} TO {READER_ROLE}")
    op.execute(
        f"CREATE POLICY revocation_reader ON {TABLE} FOR SELECT TO {READER_ROLE} USING (true)"
    )
    op.execute(
        f"""
        CREATE FUNCTION token_revocations_active()
        RETURNS TABLE (tenant_id text, jti text, subject text, revoked_at timestamptz)
        LANGUAGE sql
        STABLE
        SECURITY DEFINER
        SET search_path = public, pg_temp
        AS $$
            SELECT r.tenant_id, r.jti, r.subject, r.revoked_at
            FROM public.{TABLE} r
            WHERE r.keep_until > now()
        $$
        """  # noqa: S608 - constants only
    )
    op.execute(
        f"""
        CREATE FUNCTION token_revocation_tenants()
        RETURNS SETOF text
        LANGUAGE sql
        STABLE
        SECURITY DEFINER
        SET search_path = public, pg_temp
        AS $$ SELECT DISTINCT tenant_id FROM public.{TABLE} $$
        """  # noqa: S608 - constants only
    )
    # As in revision 0005: CREATE on the schema for the hand-over only.
    op.execute(f"GRANT CREATE ON SCHEMA public TO {READER_ROLE}")
    for function in FUNCTIONS:
        op.execute(f"ALTER FUNCTION {function} OWNER TO {READER_ROLE}")
    op.execute(f"REVOKE CREATE ON SCHEMA public FROM {READER_ROLE}")


def downgrade() -> None:
    """Drop the functions and the table (the role stays, as revision 0005's does)."""
    for function in FUNCTIONS:
        op.execute(f"DROP FUNCTION {function}")
    op.execute(f"DROP TABLE {TABLE}")
    op.execute(f"REVOKE USAGE ON SCHEMA public FROM {READER_ROLE}")
