"""Demo tenants, their tokens, and a steady stream of realistic lead events.

``make run`` uses this to give the feed something to show; the W1 benchmark
uses ``lead_event`` so that both systems under test receive exactly the JSON
a CRM webhook would send.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from services.common.auth import CRM_INGEST, FEED_READ, issue_token
from services.common.lead_model.features import SOURCES, TIMELINES
from services.common.settings import AuthSettings

log = logging.getLogger(__name__)

DEMO_TENANTS: tuple[str, ...] = ("demo-acme-realty", "demo-summit-homes", "demo-harbor-brokers")
DEMO_AGENTS: tuple[str, ...] = ("agent-1", "agent-2", "agent-3")
WEBHOOK_SUBJECT = "crm-webhook"
EVENT_TYPES: tuple[str, ...] = (
    "lead.created",
    "email.opened",
    "property.viewed",
    "showing.booked",
    "call.connected",
)
DEMO_TOKEN_TTL_S = 12 * 3600


@dataclass(frozen=True)
class DemoTenant:
    """A tenant with a CRM webhook token and one feed token per agent."""

    tenant_id: str
    webhook_token: str
    agent_tokens: dict[str, str]


def lead_features(rng: random.Random) -> dict[str, Any]:
    """One lead's attributes, shaped as ``LeadFeatures`` expects (strict types)."""
    opens = rng.randint(0, 30)
    return {
        "source": rng.choice(SOURCES),
        "timeline": rng.choice(TIMELINES),
        "budget_usd": float(rng.randrange(150_000, 2_500_000, 5_000)),
        "pre_approved": rng.random() < 0.4,
        "response_time_minutes": round(rng.expovariate(1 / 45), 1),
        "email_opens": opens,
        "email_clicks": rng.randint(0, opens),
        "sms_replies": rng.randint(0, 8),
        "calls_connected": rng.randint(0, 5),
        "property_views": rng.randint(0, 60),
        "saved_searches": rng.randint(0, 4),
        "showings_attended": rng.randint(0, 3),
        "days_since_last_contact": rng.randint(0, 90),
        "days_since_created": rng.randint(0, 365),
    }


def lead_event(*, seq: int, agent_id: str | None = None) -> dict[str, Any]:
    """The CRM webhook body of event ``seq``: deterministic, so runs repeat.

    ``agent_id`` set means the event is for that agent's sockets only;
    ``None`` means every socket of the tenant.
    """
    rng = random.Random(seq)  # noqa: S311 - reproducible demo data, not secrets
    return {
        "lead_id": f"lead-{seq % 5000:05d}",
        "event_type": EVENT_TYPES[seq % len(EVENT_TYPES)],
        "agent_id": agent_id,
        "lead": lead_features(rng),
        "data": {"seq": seq, "note": "demo event"},
    }


def demo_tenants(
    settings: AuthSettings,
    tenants: Sequence[str] = DEMO_TENANTS,
    agents: Sequence[str] = DEMO_AGENTS,
) -> list[DemoTenant]:
    """Mint a webhook token and per-agent feed tokens for each demo tenant."""
    result = []
    for tenant in tenants:
        result.append(
            DemoTenant(
                tenant_id=tenant,
                webhook_token=issue_token(
                    settings,
                    tenant_id=tenant,
                    subject=WEBHOOK_SUBJECT,
                    scopes=(CRM_INGEST,),
                    ttl_seconds=DEMO_TOKEN_TTL_S,
                ),
                agent_tokens={
                    agent: issue_token(
                        settings,
                        tenant_id=tenant,
                        subject=agent,
                        scopes=(FEED_READ,),
                        ttl_seconds=DEMO_TOKEN_TTL_S,
                    )
                    for agent in agents
                },
            )
        )
    return result


async def stream_events(
    *,
    ingest_url: str,
    tenants: Sequence[DemoTenant],
    rate_per_s: float,
    stop: asyncio.Event,
    targeted_every: int = 4,
) -> Counter[str]:
    """Post demo events round-robin over tenants until ``stop`` is set.

    Every ``targeted_every``-th event names an agent, so both broadcast and
    targeted delivery show up in the feed. Returns the answers by status; a
    failure is logged once per kind and retried only by the next event, so a
    stopped service never makes this loop spin faster.
    """
    answers: Counter[str] = Counter()
    interval = 1.0 / rate_per_s
    seq = 0
    async with httpx.AsyncClient(timeout=5.0) as client:
        while not stop.is_set():
            tenant = tenants[seq % len(tenants)]
            agent = None
            if targeted_every and seq % targeted_every == targeted_every - 1:
                agent = DEMO_AGENTS[(seq // targeted_every) % len(DEMO_AGENTS)]
            try:
                response = await client.post(
                    ingest_url,
                    json=lead_event(seq=seq, agent_id=agent),
                    headers={"Authorization": f"Bearer {tenant.webhook_token}"},
                )
                key = str(response.status_code)
                if response.status_code != 202 and answers[key] == 0:
                    log.warning("ingest answered %s: %s", key, response.text[:300])
            except httpx.HTTPError as exc:
                key = type(exc).__name__
                if answers[key] == 0:
                    log.warning("ingest unreachable (%s); will keep trying", exc)
            answers[key] += 1
            seq += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
    return answers
