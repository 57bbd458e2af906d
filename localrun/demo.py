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
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

from services.common.auth import issue_token
from services.common.lead_model.features import SOURCES, TIMELINES
from services.common.scopes import CRM_INGEST, DASHBOARDS_VIEW, FEED_READ
from services.common.settings import AuthSettings

log = logging.getLogger(__name__)

DEMO_TENANTS: tuple[str, ...] = ("demo-acme-realty", "demo-summit-homes", "demo-harbor-brokers")
DEMO_AGENTS: tuple[str, ...] = ("agent-1", "agent-2", "agent-3")
WEBHOOK_SUBJECT = "crm-webhook"
DASHBOARDS_SUBJECT = "manager"
EVENT_TYPES: tuple[str, ...] = (
    "lead.created",
    "email.opened",
    "property.viewed",
    "showing.booked",
    "call.connected",
)
DEMO_TOKEN_TTL_S = 12 * 3600
#: ``make run``'s featureFlags: the feed on for everyone, the other features
#: mid-rollout so that the ROI page has experiments to show. The routes are
#: gated per tenant: the percentages are chosen so that the guide's tenant
#: (the first demo tenant) is inside every rollout and demo-summit-homes is
#: outside ai_coaching's, showing the 403 (tests/localrun/test_demo.py).
DEMO_FLAG_SEED = (
    '{"realtime_intelligence": true,'
    ' "property_vision": {"enabled": true, "rolloutPercentage": 50},'
    ' "churn_prevention": {"enabled": true, "rolloutPercentage": 75},'
    ' "ai_coaching": {"enabled": true, "rolloutPercentage": 50}}'
)


@dataclass(frozen=True)
class DemoTenant:
    """A tenant with a CRM webhook token, one feed token per agent and a manager's
    dashboards token (``dashboards:view`` and ``feed:read`` for the live lead hub)."""

    tenant_id: str
    webhook_token: str
    agent_tokens: dict[str, str]
    dashboards_token: str


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
                dashboards_token=issue_token(
                    settings,
                    tenant_id=tenant,
                    subject=DASHBOARDS_SUBJECT,
                    scopes=(DASHBOARDS_VIEW, FEED_READ),
                    ttl_seconds=DEMO_TOKEN_TTL_S,
                ),
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


_IMPACT_ROW_SQL = (
    "INSERT INTO phase3_business_metrics (metric_date, feature_name, usage_count, success_count, "
    "revenue_impact, operating_cost, performance_p50_seconds, performance_p95_seconds, "
    "performance_p99_seconds) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT DO NOTHING"
)


async def seed_impact_history(
    database_url: str, tenants: Sequence[str], *, days: int = 30, today: date | None = None
) -> int:
    """A month of plausible business-impact history, so the ROI page is alive at once.

    Per tenant, feature and day: usage growing with the seed's rollout
    schedule (10 -> 25 -> 50 -> 100 % a week apart), successes at a feature's
    typical rate, latencies around its target, revenue and cost from the
    assumptions. Per feature, an experiment analysed by the real statistics
    on simulated per-tenant units. Deterministic; existing rows are kept.
    """
    import numpy as np

    from services.common.database import Database
    from services.impact.assumptions import ASSUMPTIONS, LOWER_IS_BETTER, PRIMARY_METRICS
    from services.impact.stats import analyze
    from services.rollout.schedule import PLANS

    today = today or datetime.now(UTC).date()
    rng = random.Random(20260110)  # noqa: S311 - reproducible demo data
    db = await Database.open(database_url, max_size=2)
    written = 0
    try:
        for tenant in tenants:
            async with db.tenant(tenant) as conn:
                for age in range(days, 0, -1):
                    day = today - timedelta(days=age)
                    share = (0.10, 0.25, 0.50, 1.0)[min(3, (days - age) // 8)]
                    for feature, a in ASSUMPTIONS.items():
                        usage = max(1, round(rng.gauss(12 * share, 2 * share)))
                        successes = int(usage * rng.uniform(0.6, 0.9))
                        driver = usage if a.driver == "usage" else successes
                        target = PLANS[feature].latency_target_seconds
                        p50 = target * rng.uniform(0.3, 0.5)
                        written += (
                            await conn.execute(
                                _IMPACT_ROW_SQL,
                                day,
                                feature,
                                usage,
                                successes,
                                round(driver * a.lift * a.value_per_unit, 2),
                                round(usage * a.api_cost_per_use, 4),
                                p50,
                                p50 * rng.uniform(1.6, 1.9),
                                p50 * rng.uniform(2.0, 2.4),
                            )
                            == "INSERT 0 1"
                        )
        units = np.random.default_rng(20260110)
        async with db.unscoped() as conn:
            if not await conn.fetchval("SELECT count(*) FROM experiment_results"):
                for feature, a in ASSUMPTIONS.items():
                    # A metric the feature lowers (churn) falls by the assumed lift.
                    sign = -1 if PRIMARY_METRICS[feature] in LOWER_IS_BETTER else 1
                    control = units.gamma(2.0, 50.0, 400)
                    treatment = units.gamma(2.0, 50.0 * (1 + sign * a.lift), 400)
                    result = analyze(control, treatment)
                    await conn.execute(
                        "INSERT INTO experiment_results (feature_name, metric, window_start, "
                        "window_end, result) VALUES ($1, $2, $3, $4, $5)",
                        feature,
                        # The metric the reports and `rollout advance` read.
                        PRIMARY_METRICS[feature],
                        today - timedelta(days=7),
                        today - timedelta(days=1),
                        result,
                    )
    finally:
        await db.close()
    return written
