"""Churn: a send's claim and its delivered record, one round trip each.

Revision ID: 0012_churn_delivery_calls
Revises: 0011_rollback_deployment_undo
Create Date: 2026-12-03

A delivery (services/churn/delivery.py) claimed its outbox row in a tenant
transaction of six round trips (BEGIN and the tenant scope, lock the lead,
read and lock the row, count the lead's recent contacts, mark it ``sending``,
COMMIT) and recorded a delivered send in another four. At 10,000 sends per
pass that was a third of the orchestrator's and Postgres' CPU per send
(docs/benchmarks.md, W4). Both common paths are functions now, called as one
statement (``Database.tenant_call``), each in its own implicit transaction:

- ``churn_claim_send``: scopes itself to the tenant, locks the lead and then
  the outbox row (the order every writer takes), and marks the row
  ``sending`` with one more attempt when nothing needs deciding: the row is
  ``pending`` or ``sending``, its lead ``active``, its attempts within the
  retry count. It returns the verdict (``claimed``, ``skipped`` for a row
  that is no longer claimable or not there, ``decide`` for everything else),
  the row's previous status, claim time and attempts, what the send needs, the lead's
  time zone and, for a channel that contacts the lead, its contacts in the
  last day and week. The contact rules (quiet hours in the lead's zone,
  frequency caps) stay in Python (services/churn/contact_rules.py): when one
  says no, the delivery restores the row in a tenant transaction and takes
  the decision there, as before.
- ``churn_record_delivery``: marks a ``sending`` row ``delivered`` and adds
  the channel, status and first detection-to-delivery latency to its
  intervention; returns whether it recorded and that latency.

Both are ``SECURITY INVOKER``: row-level security applies to them as to any
statement of the application role, after ``set_config('app.tenant_id', ...,
true)`` (transaction-local), and they refuse a call inside another tenant's
transaction, as ``realtime_store_events`` does (revision 0003).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0012_churn_delivery_calls"
down_revision: str | Sequence[str] | None = "0011_rollback_deployment_undo"

CLAIM_SIGNATURE = (
    "churn_claim_send(text, uuid, timestamptz, integer, timestamptz, timestamptz, text[])"
)
RECORD_SIGNATURE = "churn_record_delivery(text, uuid, text)"

# Each function's first step (the name filled in): refuse a call inside another
# tenant's transaction, then scope the call's own transaction to the tenant.
SCOPE_CHECK = """
            IF p_tenant_id IS NULL OR p_tenant_id = '' THEN
                RAISE EXCEPTION '{name}: a tenant id is required'
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            IF scope IS NOT NULL AND scope <> '' AND scope <> p_tenant_id THEN
                RAISE EXCEPTION '{name}: the transaction is scoped to another tenant'
                    USING ERRCODE = 'insufficient_privilege';
            END IF;
            PERFORM set_config('app.tenant_id', p_tenant_id, true);
"""


def upgrade() -> None:
    """Create ``churn_claim_send`` and ``churn_record_delivery``."""
    op.execute(
        """
        CREATE FUNCTION churn_claim_send(
            p_tenant_id text,
            p_outbox_id uuid,
            p_now timestamptz,
            p_retry_count integer,
            p_day_since timestamptz,
            p_week_since timestamptz,
            p_lead_channels text[],
            OUT verdict text,
            OUT previous_status text,
            OUT previous_claimed_at timestamptz,
            OUT attempts integer,
            OUT channel text,
            OUT idempotency_key text,
            OUT lead_id text,
            OUT intervention_id uuid,
            OUT stage text,
            OUT timezone text,
            OUT crm_contact_id text,
            OUT agent_id text,
            OUT sent_last_day bigint,
            OUT sent_last_week bigint
        )
        LANGUAGE plpgsql
        VOLATILE
        SECURITY INVOKER
        SET search_path = public, pg_temp
        AS $$
        DECLARE
            scope text := current_setting('app.tenant_id', true);
            lead_status text;
        BEGIN
            -- scope check --
            -- The lead first, then its outbox row: the order every writer of both follows.
            PERFORM 1 FROM churn_leads l
            WHERE l.lead_id = (SELECT o.lead_id FROM churn_outbox o WHERE o.outbox_id = p_outbox_id)
            FOR UPDATE;
            SELECT o.status, o.claimed_at, o.attempts, o.channel, o.idempotency_key, o.lead_id,
                   o.intervention_id, i.intervention_stage, l.timezone, l.crm_contact_id,
                   l.agent_id, l.status
            INTO previous_status, previous_claimed_at, attempts, channel, idempotency_key, lead_id,
                 intervention_id, stage, timezone, crm_contact_id, agent_id, lead_status
            FROM churn_outbox o
            JOIN churn_interventions i ON i.intervention_id = o.intervention_id
            JOIN churn_leads l ON l.tenant_id = o.tenant_id AND l.lead_id = o.lead_id
            WHERE o.outbox_id = p_outbox_id
            FOR UPDATE OF o;
            IF NOT FOUND OR previous_status NOT IN ('pending', 'sending') THEN
                verdict := 'skipped';
                RETURN;
            END IF;
            IF lead_status <> 'active' OR attempts > p_retry_count THEN
                verdict := 'decide';
                RETURN;
            END IF;
            IF channel = ANY (p_lead_channels) THEN
                SELECT count(DISTINCT c.intervention_id)
                           FILTER (WHERE coalesce(c.delivered_at, c.claimed_at) > p_day_since),
                       count(DISTINCT c.intervention_id)
                INTO sent_last_day, sent_last_week
                FROM churn_outbox c
                WHERE c.lead_id = churn_claim_send.lead_id
                  AND c.intervention_id <> churn_claim_send.intervention_id
                  AND c.channel = ANY (p_lead_channels)
                  AND (c.status = 'delivered' OR c.status = 'sending')
                  AND coalesce(c.delivered_at, c.claimed_at) > p_week_since;
            END IF;
            UPDATE churn_outbox o SET status = 'sending', attempts = o.attempts + 1,
                   claimed_at = p_now
            WHERE o.outbox_id = p_outbox_id;
            verdict := 'claimed';
        END
        $$
        """.replace("-- scope check --", SCOPE_CHECK.format(name="churn_claim_send"))
    )
    op.execute(
        """
        CREATE FUNCTION churn_record_delivery(
            p_tenant_id text,
            p_outbox_id uuid,
            p_provider_id text,
            OUT recorded boolean,
            OUT latency_seconds float8
        )
        LANGUAGE plpgsql
        VOLATILE
        SECURITY INVOKER
        SET search_path = public, pg_temp
        AS $$
        DECLARE
            scope text := current_setting('app.tenant_id', true);
            delivered timestamptz;
            v_intervention uuid;
            v_channel text;
        BEGIN
            -- scope check --
            UPDATE churn_outbox o SET status = 'delivered', delivered_at = now(),
                   provider_message_id = p_provider_id, last_error = NULL, reason = NULL
            WHERE o.outbox_id = p_outbox_id AND o.status = 'sending'
            RETURNING o.delivered_at, o.intervention_id, o.channel
            INTO delivered, v_intervention, v_channel;
            recorded := FOUND;
            IF NOT recorded THEN
                RETURN;
            END IF;
            UPDATE churn_interventions i SET
                channels_used = CASE WHEN v_channel = ANY (i.channels_used) THEN i.channels_used
                                     ELSE array_append(i.channels_used, v_channel) END,
                status = 'delivered', reason = NULL,
                intervened_at = coalesce(i.intervened_at, delivered),
                intervention_latency_seconds = coalesce(i.intervention_latency_seconds,
                    greatest(extract(epoch FROM delivered - i.detected_at), 0))
            WHERE i.intervention_id = v_intervention
            RETURNING CASE WHEN i.intervened_at = delivered
                           THEN i.intervention_latency_seconds END
            INTO latency_seconds;
        END
        $$
        """.replace("-- scope check --", SCOPE_CHECK.format(name="churn_record_delivery"))
    )


def downgrade() -> None:
    """Drop both functions."""
    op.execute(f"DROP FUNCTION {RECORD_SIGNATURE}")
    op.execute(f"DROP FUNCTION {CLAIM_SIGNATURE}")
