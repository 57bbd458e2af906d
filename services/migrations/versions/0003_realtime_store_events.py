"""realtime_store_events(): store a group of lead events in one round trip.

Revision ID: 0003_realtime_store_events
Revises: 0002_realtime_delivery
Create Date: 2026-12-02

The ingest stores every accepted event before acknowledging it, so each
round trip to Postgres is on the path of every event's delivery latency. A
tenant transaction from ``Database.tenant()`` costs three (``BEGIN`` with
the scope, the ``INSERT``, ``COMMIT``); on RDS each one is a network hop.
This function does the same work in one call, in the statement's own
implicit transaction:

1. It sets ``app.tenant_id`` for the transaction (``set_config(..., true)``)
   before anything else: plpgsql runs its statements in order, so the
   ``INSERT`` below is checked by the tenant policy (``WITH CHECK``) against
   the scope just set. This is the guarantee the three-step transaction
   gives, and the reason the scope is not set inside the ``INSERT`` itself
   (Postgres does not promise an evaluation order within one statement).
2. It refuses to *change* a scope already set in the transaction, so a
   caller inside another tenant's ``Database.tenant()`` block cannot switch
   the rest of that transaction to a different tenant.
3. ``SECURITY INVOKER`` (the default, stated): it runs with the caller's
   rights, so the application role stays subject to row-level security and
   executing the function grants nothing the caller did not already have.

The table is schema-qualified so the caller's ``search_path`` cannot
redirect the insert.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003_realtime_store_events"
down_revision: str | Sequence[str] | None = "0002_realtime_delivery"

SIGNATURE = "realtime_store_events(text, uuid[], text[], text[], text[], text[], float8[])"


def upgrade() -> None:
    """Create the function."""
    op.execute(
        """
        CREATE FUNCTION realtime_store_events(
            p_tenant_id text,
            p_event_ids uuid[],
            p_lead_ids text[],
            p_event_types text[],
            p_agent_ids text[],
            p_documents text[],
            p_accepted_at float8[]
        ) RETURNS integer
        LANGUAGE plpgsql
        VOLATILE
        SECURITY INVOKER
        AS $$
        DECLARE
            scope text := current_setting('app.tenant_id', true);
            stored integer;
        BEGIN
            IF p_tenant_id IS NULL OR p_tenant_id = '' THEN
                RAISE EXCEPTION 'realtime_store_events: a tenant id is required'
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            IF scope IS NOT NULL AND scope <> '' AND scope <> p_tenant_id THEN
                RAISE EXCEPTION 'realtime_store_events: the transaction is scoped to '
                    'another tenant; call it outside that tenant''s transaction'
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            IF cardinality(p_event_ids) <> ANY (ARRAY[
                   cardinality(p_lead_ids), cardinality(p_event_types),
                   cardinality(p_agent_ids), cardinality(p_documents),
                   cardinality(p_accepted_at)]) THEN
                RAISE EXCEPTION 'realtime_store_events: the arrays differ in length'
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            PERFORM set_config('app.tenant_id', p_tenant_id, true);
            INSERT INTO public.realtime_intelligence_events
                (event_id, tenant_id, lead_id, event_type, agent_id, intelligence_data,
                 created_at, published_at)
            SELECT u.event_id, p_tenant_id, u.lead_id, u.event_type, u.agent_id,
                   u.document::jsonb, to_timestamp(u.accepted_at), NULL
            FROM unnest(p_event_ids, p_lead_ids, p_event_types, p_agent_ids, p_documents,
                        p_accepted_at)
                 AS u(event_id, lead_id, event_type, agent_id, document, accepted_at);
            GET DIAGNOSTICS stored = ROW_COUNT;
            RETURN stored;
        END
        $$
        """
    )


def downgrade() -> None:
    """Drop the function."""
    op.execute(f"DROP FUNCTION {SIGNATURE}")
