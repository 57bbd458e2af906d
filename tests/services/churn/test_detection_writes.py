"""What a detection pass writes: the leads it may act on, not every lead it scores.

A periodic pass reads every active lead without a lock, and locks (and writes)
only those at ``watch`` or above and those whose stage changed, read again
under the lock (docs/churn.md, "How one lead moves"; docs/benchmarks.md, W4).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import numpy as np

from services.churn.detection import ACTIVE_LEADS_SQL, _rescore, _score
from services.churn.model import ChurnModel
from services.churn.schemas import SignalCreate
from services.churn.signals import store_signals
from services.common.database import Database
from tests.services.churn.conftest import RuntimeFactory, seed_leads


async def _risk(owner: Database, tenant: str) -> dict[str, tuple[str | None, bool]]:
    async with owner.unscoped() as conn:
        rows = await conn.fetch(
            "SELECT lead_id, risk_stage, scored_at IS NOT NULL AS scored FROM churn_leads "
            "WHERE tenant_id = $1",
            tenant,
        )
    return {row["lead_id"]: (row["risk_stage"], row["scored"]) for row in rows}


async def _engage(db: Database, tenant: str, leads: list[str]) -> None:
    """Each lead replied and booked a showing just now: far below ``watch``."""
    now = datetime.now(UTC)
    signals = [
        SignalCreate(signal_id=uuid.uuid4(), lead_id=lead, type=kind, occurred_at=now, data={})
        for lead in leads
        for kind in ("reply", "message_received", "appointment_booked")
    ]
    async with db.tenant(tenant) as conn:
        await store_signals(conn, signals, now=now)


async def test_a_pass_writes_only_leads_at_risk_or_whose_stage_changed(
    make_runtime: RuntimeFactory, db: Database, owner_db: Database
) -> None:
    at_risk = await seed_leads(db, "t1", 4)
    fresh = await seed_leads(db, "t1", 6, prefix="fresh", at_risk=False)
    await _engage(db, "t1", fresh)
    async with make_runtime(standin=None) as runtime:
        (first,) = (await runtime.run_pass()).tenants
        assert (first.scored, first.updated) == (10, 4)
        stored = await _risk(owner_db, "t1")
        assert all(stored[lead][0] is not None and stored[lead][1] for lead in at_risk)
        # Scored, below watch, never written: no lock, no new row version.
        assert all(stored[lead] == (None, False) for lead in fresh)

        # A lead the store says is at watch but that scores below it now: its
        # stage changed, so it is locked and written back.
        async with owner_db.unscoped() as conn:
            await conn.execute(
                "UPDATE churn_leads SET risk_stage = 'watch', churn_probability = 0.35 "
                "WHERE tenant_id = 't1' AND lead_id = $1",
                fresh[0],
            )
        (second,) = (await runtime.run_pass()).tenants
        assert (second.scored, second.updated, second.interventions) == (10, 1, 0)
        assert (await _risk(owner_db, "t1"))[fresh[0]] == (None, True)


async def test_a_lead_changed_between_the_reads_is_scored_on_its_new_row(
    churn_model: ChurnModel, db: Database
) -> None:
    # The unlocked read, then a reply committed before the lock: the locked read
    # must be scored on the reply, every unchanged lead may keep its first score.
    leads = await seed_leads(db, "t1", 5)
    now = datetime.now(UTC)
    async with db.tenant("t1") as conn:
        before = await conn.fetch(ACTIVE_LEADS_SQL + " ORDER BY lead_id")
    p_before, _ = await _score(churn_model, before, now)
    first = {row["lead_id"]: (row, p) for row, p in zip(before, p_before.tolist(), strict=True)}
    reply = SignalCreate(
        signal_id=uuid.uuid4(), lead_id=leads[0], type="reply", occurred_at=now, data={}
    )
    async with db.tenant("t1") as conn:
        await store_signals(conn, [reply], now=now)
    async with db.tenant("t1") as conn:
        after = await conn.fetch(ACTIVE_LEADS_SQL + " ORDER BY lead_id")
    rescored, stages = await _rescore(churn_model, after, now, first)
    expected, expected_stages = await _score(churn_model, after, now)
    assert np.array_equal(rescored, expected)
    assert np.array_equal(stages, expected_stages)
    changed = [row["lead_id"] for row in after if tuple(row) != tuple(first[row["lead_id"]][0])]
    assert changed == [leads[0]]
    index = [row["lead_id"] for row in after].index(leads[0])
    assert rescored[index] < first[leads[0]][1]  # the reply lowered its risk
