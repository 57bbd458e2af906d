"""Revision 0015 links every analysis stored before it to its property (real Postgres).

The schema is taken back to 0014, analyses are stored as the service stored
them then (one row per photo, naming the property it was first posted for),
and the upgrade must give each finished one exactly that link, in its own
tenant, dated when it was analysed; a pending claim gets none.
"""

from __future__ import annotations

from datetime import UTC, datetime

from services.common.database import Database
from services.common.settings import CommonSettings
from services.migrations.runner import migrate
from services.ml.vision import store
from tests.schema_history import downgrade_to

BEFORE = "0014_coaching_claims"
AT = datetime(2026, 11, 20, 12, tzinfo=UTC)


async def test_stored_analyses_are_linked_to_their_property(
    settings: CommonSettings, owner_db: Database, db: Database
) -> None:
    await downgrade_to(settings, BEFORE)
    try:
        async with owner_db.unscoped() as conn:
            for tenant, prop, sha, status in [
                ("tenant-a", "p1", "a" * 64, "done"),
                ("tenant-a", "p2", "b" * 64, "done"),
                ("tenant-a", "p3", "c" * 64, "pending"),
                ("tenant-b", "p1", "a" * 64, "done"),
            ]:
                await conn.execute(
                    "INSERT INTO property_vision_analyses (tenant_id, property_id, image_url, "
                    "analysis_results, luxury_score, condition_score, image_sha256, model, "
                    "prompt_version, status, claimed_at, source, created_at) VALUES ($1, $2, "
                    "'s3://b/k', $3, $4, $4, $5, 'claude-sonnet-4-5', 'pv1', $6, $7, 'upload', $7)",
                    tenant,
                    prop,
                    {"room_type": "kitchen"} if status == "done" else None,
                    0.5 if status == "done" else None,
                    sha,
                    status,
                    AT,
                )
    finally:
        await migrate(settings)
    async with owner_db.unscoped() as conn:
        links = await conn.fetch(
            "SELECT l.tenant_id, l.property_id, a.image_sha256, l.posted_at "
            "FROM property_vision_links l JOIN property_vision_analyses a "
            "USING (tenant_id, analysis_id) ORDER BY 1, 2"
        )
        forced = await conn.fetch(
            "SELECT relname, relrowsecurity AND relforcerowsecurity AS forced FROM pg_class "
            "WHERE relname IN ('property_vision_analyses', 'property_vision_links')"
        )
    assert [tuple(row) for row in links] == [
        ("tenant-a", "p1", "a" * 64, AT),
        ("tenant-a", "p2", "b" * 64, AT),
        ("tenant-b", "p1", "a" * 64, AT),
    ]
    assert {row["relname"]: row["forced"] for row in forced} == {
        "property_vision_analyses": True,
        "property_vision_links": True,
    }
    # The service lists them through the links, each tenant its own.
    listed = await store.list_for_property(db, "tenant-a", "p1")
    assert [(row["property_id"], row["image_sha256"]) for row in listed] == [("p1", "a" * 64)]
    assert [row["property_id"] for row in await store.list_for_property(db, "tenant-b", "p1")] == [
        "p1"
    ]
    assert await store.list_for_property(db, "tenant-b", "p2") == []
