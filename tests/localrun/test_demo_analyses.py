"""``make run``'s demo photo analyses and coaching sessions, read by the pages' own loaders.

Without them the Property Intelligence and Agent Coaching pages of a demo
tenant were empty (Claude is not configured in ``make run``) while the ROI
page showed a month of both features' usage.
"""

from __future__ import annotations

from localrun.demo import DEMO_AGENTS
from localrun.demo_analyses import PHOTOS, SEED_MODEL, seed_analyses
from services.common.database import Database
from services.dashboards.views.coaching import load_coaching
from services.dashboards.views.property import load_property_intelligence


async def test_demo_tenants_pages_show_analyses_and_sessions(
    app_database_url: str, db: Database, owner_db: Database
) -> None:
    written = await seed_analyses(app_database_url, ["tenant-a", "tenant-b"])
    sessions_per_tenant = 7 * len(DEMO_AGENTS)
    assert written == 2 * (2 * len(PHOTOS) + sessions_per_tenant)

    photos = await load_property_intelligence(db, "tenant-a")
    assert {p["property_id"] for p in photos["properties"]} == {p.property_id for p in PHOTOS}
    assert sum(r["photos"] for r in photos["room_types"]) == len(PHOTOS)
    assert {d["defect"] for d in photos["major_defects"]} == {
        d.description for p in PHOTOS for d in p.defects if d.severity == "major"
    }
    assert photos["cost_micro_usd"] > 0
    assert photos["latency_p95_seconds"] is not None

    coaching = await load_coaching(db, "tenant-a")
    assert [a["agent_id"] for a in coaching["agents"]] == sorted(DEMO_AGENTS)
    assert sum(a["sessions"] for a in coaching["agents"]) == sessions_per_tenant
    # The metrics are the coaching service's own, over the demo transcript.
    assert all(a["talk_listen_ratio"] > 0 for a in coaching["agents"])
    assert len(coaching["improvement_areas"]) > 1
    assert all("demo data" in r["summary"] for r in coaching["recent"])

    # Each tenant sees its own rows only, and none passes for a Claude answer.
    assert (await load_property_intelligence(db, "tenant-z"))["properties"] == []
    assert (await load_coaching(db, "tenant-z"))["agents"] == []
    async with owner_db.unscoped() as conn:
        models = await conn.fetch(
            "SELECT model FROM property_vision_analyses UNION SELECT model FROM coaching_sessions"
        )
    assert [row["model"] for row in models] == [SEED_MODEL]

    # A second run (make run again on the same state) adds nothing.
    assert await seed_analyses(app_database_url, ["tenant-a", "tenant-b"]) == 0
