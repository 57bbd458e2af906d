"""CHECK constraints the seed implies, enforced by the database."""

from __future__ import annotations

import asyncpg
import pytest

from services.common.database import Database


async def test_churn_probability_above_one_is_rejected(db: Database) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        async with db.tenant("tenant-a") as conn:
            await conn.execute(
                "INSERT INTO churn_interventions (lead_id, churn_probability, intervention_stage) "
                "VALUES ('lead-1', 1.5, 'early')"
            )


async def test_ab_variant_outside_control_treatment_is_rejected(db: Database) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        async with db.tenant("tenant-a") as conn:
            await conn.execute(
                "INSERT INTO ab_test_assignments (user_id, feature_name, variant) "
                "VALUES ('u1', 'ai_coaching', 'beta')"
            )


async def test_success_count_cannot_exceed_usage_count(db: Database) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        async with db.tenant("tenant-a") as conn:
            await conn.execute(
                "INSERT INTO phase3_business_metrics "
                "(metric_date, feature_name, usage_count, success_count) "
                "VALUES (current_date, 'ai_coaching', 1, 2)"
            )


async def test_vision_scores_are_normalised(db: Database) -> None:
    with pytest.raises(asyncpg.CheckViolationError):
        async with db.tenant("tenant-a") as conn:
            await conn.execute(
                "INSERT INTO property_vision_analyses "
                "(property_id, image_url, analysis_results, luxury_score) "
                "VALUES ('p1', 's3://b/k.jpg', '{}', 2.5)"
            )


async def test_updated_at_moves_on_update(db: Database) -> None:
    async with db.tenant("tenant-a") as conn:
        await conn.execute(
            "INSERT INTO churn_interventions (lead_id, churn_probability, intervention_stage, "
            "updated_at) VALUES ('lead-1', 0.4, 'early', now() - interval '1 hour')"
        )
    async with db.tenant("tenant-a") as conn:
        await conn.execute("UPDATE churn_interventions SET outcome = 'retained'")
        # now() is the transaction's start time, which the trigger wrote.
        assert await conn.fetchval("SELECT updated_at = now() FROM churn_interventions")
