"""The worker and the scheduler read ``churn_prevention`` through OpenFeature, once per tenant.

Issue 18: services read flags through the OpenFeature SDK with our provider,
so hooks, reasons and a provider swap apply to the background work as to the
routes. A hook on the runtime's client sees every decision; a provider put in
place of ours (OpenFeature's in-memory one) decides which tenants a pass and a
detection job act on, whatever the flag cache says.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import httpx
import pytest
from fastapi import FastAPI
from openfeature import api as openfeature_api
from openfeature.evaluation_context import EvaluationContext
from openfeature.flag_evaluation import FlagEvaluationDetails, FlagResolutionDetails, FlagValueType
from openfeature.hook import Hook, HookContext, HookHints
from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider
from prometheus_client import CollectorRegistry

from services.churn.config import CHURN_FEATURE, ChurnSettings
from services.churn.main import create_app
from services.churn.queue import defer_detection
from services.common.database import Database
from tests.services.churn.conftest import RuntimeFactory, drain, seed_leads

AppClient = Callable[[FastAPI], AbstractAsyncContextManager[httpx.AsyncClient]]

TENANTS = ("t1", "t2", "t3")
LEADS_PER_TENANT = 4


class RecordingHook(Hook):
    """Remembers each resolved evaluation: (flag, tenant, reason)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str | None, str | None]] = []

    def after(
        self,
        hook_context: HookContext,
        details: FlagEvaluationDetails[FlagValueType],
        hints: HookHints,
    ) -> None:
        tenant = hook_context.evaluation_context.targeting_key
        self.seen.append((hook_context.flag_key, tenant, details.reason))


def _only(*tenants: str) -> InMemoryProvider:
    """OpenFeature's in-memory provider: ``churn_prevention`` on for ``tenants`` only."""

    def decide(flag: InMemoryFlag[bool], context: EvaluationContext) -> FlagResolutionDetails[bool]:
        variant = "on" if context.targeting_key in tenants else "off"
        return FlagResolutionDetails(value=flag.variants[variant], variant=variant)

    return InMemoryProvider(
        {
            CHURN_FEATURE: InMemoryFlag(
                default_variant="off",
                variants={"on": True, "off": False},
                context_evaluator=decide,
            )
        }
    )


async def _interventions_by_tenant(owner: Database) -> dict[str, int]:
    async with owner.unscoped() as conn:
        rows = await conn.fetch(
            "SELECT tenant_id, count(*) AS n FROM churn_interventions GROUP BY tenant_id"
        )
    return {row["tenant_id"]: row["n"] for row in rows}


async def test_a_pass_and_a_detection_job_decide_each_tenant_once_through_openfeature(
    make_runtime: RuntimeFactory, db: Database
) -> None:
    for tenant in TENANTS:
        await seed_leads(db, tenant, LEADS_PER_TENANT)
    async with make_runtime() as runtime:
        hook = RecordingHook()
        runtime.flag_client.add_hooks([hook])
        summary = await runtime.run_pass()
        assert sorted(t.tenant_id for t in summary.tenants) == list(TENANTS)
        # One decision per tenant, not one per lead; our provider's reason.
        assert Counter(hook.seen) == {
            (CHURN_FEATURE, tenant, "TARGETING_MATCH"): 1 for tenant in TENANTS
        }
        hook.seen.clear()
        async with db.tenant("t2") as conn:
            await defer_detection(
                conn, tenant_id="t2", lead_ids=[f"lead-{i}" for i in range(LEADS_PER_TENANT)]
            )
        await drain(runtime)
        assert hook.seen == [(CHURN_FEATURE, "t2", "TARGETING_MATCH")]


async def test_the_served_runtime_obeys_the_openfeature_provider_not_the_cache(
    churn_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    app_client: AppClient,
    db: Database,
    owner_db: Database,
) -> None:
    # The flag in Redis (and so the flag cache) says on for every tenant.
    monkeypatch.setenv("CHURN_WORKER_ENABLED", "false")
    monkeypatch.setenv("CHURN_SCHEDULER_ENABLED", "false")
    registry = CollectorRegistry()
    app = create_app(ChurnSettings.from_env(), registry=registry)
    for tenant in TENANTS:
        await seed_leads(db, tenant, LEADS_PER_TENANT, prefix="fresh", at_risk=False)
    async with app_client(app):
        runtime = app.state.churn
        summary = await runtime.run_pass()
        assert len(summary.tenants) == len(TENANTS)
        # Our provider's metrics hook counted the pass's decisions: one per tenant.
        counted = registry.get_sample_value(
            "feature_flag_evaluations_total",
            {"feature": CHURN_FEATURE, "reason": "TARGETING_MATCH"},
        )
        assert counted == len(TENANTS)

        for tenant in TENANTS:
            await seed_leads(db, tenant, LEADS_PER_TENANT)
        assert all(runtime.flags.evaluate(CHURN_FEATURE, t).enabled for t in TENANTS)
        # Another backend behind the same client: on for t2 only.
        openfeature_api.set_provider(_only("t2"), domain=app.state.flag_client.domain)
        summary = await runtime.run_pass()
        assert [t.tenant_id for t in summary.tenants] == ["t2"]
        for tenant in ("t1", "t3"):
            async with db.tenant(tenant) as conn:
                await defer_detection(
                    conn,
                    tenant_id=tenant,
                    lead_ids=[f"lead-{i}" for i in range(LEADS_PER_TENANT)],
                )
        await drain(runtime)
    assert await _interventions_by_tenant(owner_db) == {"t2": LEADS_PER_TENANT}
