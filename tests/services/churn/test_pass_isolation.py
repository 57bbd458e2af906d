"""One tenant's failure in a scheduler pass does not stop the pass for the others."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from localrun.standins.leadconnector import StandinServer
from services.churn import runtime as runtime_module
from services.common.database import Database
from tests.services.churn.conftest import RuntimeFactory, seed_leads

pytestmark = pytest.mark.integration


async def test_a_tenant_whose_detection_fails_does_not_stop_the_others(
    make_runtime: RuntimeFactory,
    standin: StandinServer,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only DatabaseUnavailable was caught per tenant: any other error (a deadlock,
    a row the code did not expect) ended the pass for every tenant after it."""
    await seed_leads(db, "t1", 2)
    await seed_leads(db, "t2", 2)
    detect = runtime_module.detect_tenant

    async def failing_for_t1(db: Database, *, tenant_id: str, **kwargs: Any) -> Any:
        if tenant_id == "t1":
            raise asyncpg.DeadlockDetectedError("deadlock detected")
        return await detect(db, tenant_id=tenant_id, **kwargs)

    monkeypatch.setattr(runtime_module, "detect_tenant", failing_for_t1)
    async with make_runtime(standin=standin) as runtime:
        summary = await runtime.run_pass()
    assert summary.failed_tenants == ["t1"]
    assert [result.tenant_id for result in summary.tenants] == ["t2"]


async def test_a_tenant_whose_orphans_were_queued_meanwhile_does_not_stop_the_others(
    make_runtime: RuntimeFactory,
    standin: StandinServer,
    db: Database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two schedulers finding the same orphan: the second's insert hits the job's
    queueing lock, and that error ended the recovery of every tenant after it."""
    await seed_leads(db, "t1", 1)
    await seed_leads(db, "t2", 1)
    recovered: list[str] = []

    async with make_runtime(standin=standin) as runtime:

        async def recover(tenant_id: str) -> int:
            if tenant_id == "t1":
                raise asyncpg.UniqueViolationError("duplicate key value (queueing lock)")
            recovered.append(tenant_id)
            return 1

        monkeypatch.setattr(runtime, "_recover_tenant_orphans", recover)
        assert await runtime.recover_orphans() == 1
    assert recovered == ["t2"]
