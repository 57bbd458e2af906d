"""Adoption and daily active usage from the stored daily rows (the 100 % stage's criteria)."""

from __future__ import annotations

from datetime import date, timedelta

from services.common.database import Database
from services.impact.usage import usage_rates

START = date(2026, 11, 2)


async def seed_usage(owner_db: Database, start: date, days: int) -> None:
    """Four tenants over ``days`` days from ``start``, seen by AI Coaching as:

    tenant-a uses it every day, tenant-b on the second day only (its first use of
    anything), tenant-c has a row of it without a use (and uses another feature),
    tenant-d was only assigned in another feature's experiment a month before
    and has used nothing since (it left): 2 adopters of 3 active tenants.
    """
    rows = [("tenant-a", start + timedelta(days=n), "ai_coaching", 3) for n in range(days)]
    rows += [
        ("tenant-b", start + timedelta(days=1), "ai_coaching", 1),
        ("tenant-c", start, "ai_coaching", 0),
        ("tenant-c", start, "property_vision", 5),
    ]
    async with owner_db.unscoped() as conn:
        await conn.executemany(
            "INSERT INTO phase3_business_metrics (tenant_id, metric_date, feature_name, "
            "usage_count, success_count, revenue_impact, operating_cost) "
            "VALUES ($1, $2, $3, $4, 0, 0, 0)",
            rows,
        )
        await conn.execute(
            "INSERT INTO ab_test_assignments (tenant_id, user_id, feature_name, variant, "
            "assigned_at) VALUES ('tenant-d', 'tenant-d', 'realtime_intelligence', 'control', $1)",
            start - timedelta(days=30),
        )


async def test_adoption_and_daily_active_usage_among_the_active_tenants(
    owner_db: Database, db: Database
) -> None:
    await seed_usage(owner_db, START, 4)
    rates = await usage_rates(db, "ai_coaching", START, START + timedelta(days=3))
    assert rates is not None
    # tenant-d, gone, is not a non-adopter: its assignment is kept, but it used nothing.
    assert (rates.tenants, rates.days) == (3, 4)
    assert rates.adoption == 2 / 3
    # Day by day, over the tenants active by then: a of a, c (b had not joined);
    # a and b of three; a of three; a of three.
    assert rates.daily_active == (1 / 2 + 2 / 3 + 1 / 3 + 1 / 3) / 4
    # A day with no use at all counts as a day of nobody.
    longer = await usage_rates(db, "ai_coaching", START, START + timedelta(days=4))
    assert longer is not None
    assert longer.daily_active == (1 / 2 + 2 / 3 + 1 / 3 + 1 / 3 + 0) / 5
    assert await usage_rates(db, "ai_coaching", START, START - timedelta(days=1)) is None
    vision = await usage_rates(db, "property_vision", START, START + timedelta(days=3))
    assert vision is not None
    assert vision.adoption == 1 / 3
