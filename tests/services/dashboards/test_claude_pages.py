"""Data loading of the coaching and property dashboard pages, on the real Postgres,
under row-level security (another tenant's rows never appear)."""

from __future__ import annotations

import asyncio
import hashlib
from uuid import UUID

import pyarrow as pa
import pytest
from streamlit.testing.v1 import AppTest

from services.common.database import Database
from services.dashboards.views.coaching import areas_chart, load_coaching
from services.dashboards.views.property import load_property_intelligence, properties_chart


async def _session(db: Database, tenant: str, agent: str, areas: list[str], cost: int) -> None:
    async with db.tenant(tenant) as conn:
        await conn.execute(
            "INSERT INTO coaching_sessions (agent_id, analysis_data, coaching_insights, "
            "improvement_areas, analysis_latency_seconds, cost_micro_usd) "
            "VALUES ($1, $2, $3, $4, 1.2, $5)",
            agent,
            {"talk_listen_ratio": 1.5, "questions_asked": 3, "objections_unanswered": 1},
            {"summary": f"summary for {agent}"},
            areas,
            cost,
        )


async def test_coaching_page_aggregates_the_tenants_sessions(db: Database) -> None:
    await _session(db, "tenant-a", "agent-1", ["Ask about budget"], 4_000)
    await _session(db, "tenant-a", "agent-1", ["Ask about budget", "Close"], 6_000)
    await _session(db, "tenant-a", "agent-2", ["Close"], 1_000)
    await _session(db, "tenant-b", "agent-9", ["Secret"], 99_000)
    data = await load_coaching(db, "tenant-a")
    assert [(a["agent_id"], a["sessions"]) for a in data["agents"]] == [
        ("agent-1", 2),
        ("agent-2", 1),
    ]
    assert data["agents"][0]["objections_unanswered"] == 2
    assert {a["area"]: a["sessions"] for a in data["improvement_areas"]} == {
        "Ask about budget": 2,
        "Close": 2,
    }
    assert data["cost_micro_usd"] == 11_000
    assert all(r["agent_id"] != "agent-9" for r in data["recent"])
    assert (await load_coaching(db, "tenant-c"))["agents"] == []


async def test_improvement_areas_are_charted_as_written_never_as_plotly_markup(
    db: Database,
) -> None:
    # A lead's message can steer Claude's titles; plotly would draw this one
    # as a link on the manager's page.
    link = '<a href="https://evil.example/login">Call your manager now</a>'
    await _session(db, "tenant-a", "agent-1", [link, "Close & confirm"], 1_000)
    figure = areas_chart((await load_coaching(db, "tenant-a"))["improvement_areas"])
    labels = sorted(str(label) for trace in figure.data for label in trace.y)
    assert labels == [
        '&lt;a href="https://evil.example/login"&gt;Call your manager now&lt;/a&gt;',
        "Close &amp; confirm",
    ]


async def _analysis(
    db: Database, tenant: str, prop: str, luxury: float, severity: str, *also: str
) -> None:
    """A done analysis first posted for ``prop``, also posted for the properties ``also``."""
    async with db.tenant(tenant) as conn:
        analysis_id = await conn.fetchval(
            "INSERT INTO property_vision_analyses (property_id, image_url, analysis_results, "
            "luxury_score, condition_score, analysis_latency_seconds, image_sha256, model, "
            "prompt_version, status, source, cost_micro_usd) "
            "VALUES ($1, 's3://b/k', $2, $3, 0.5, 1.1, $4, "
            "'claude-sonnet-4-5', 'pv1', 'done', 'upload', 5000) RETURNING analysis_id",
            prop,
            {"room_type": "kitchen", "defects": [{"description": "leak", "severity": severity}]},
            luxury,
            hashlib.sha256(f"{prop}{luxury}".encode()).hexdigest(),
        )
        for linked in (prop, *also):
            await conn.execute(
                "INSERT INTO property_vision_links (property_id, analysis_id) VALUES ($1, $2)",
                linked,
                analysis_id,
            )


async def test_property_page_reads_only_the_tenants_analyses(db: Database) -> None:
    await _analysis(db, "tenant-a", "house-1", 0.8, "major")
    await _analysis(db, "tenant-a", "house-1", 0.6, "minor")
    await _analysis(db, "tenant-b", "house-x", 0.1, "major")
    data = await load_property_intelligence(db, "tenant-a")
    [house] = data["properties"]
    assert house["property_id"] == "house-1"
    assert house["photos"] == 2
    assert round(house["luxury"], 2) == 0.70
    assert [d["defect"] for d in data["major_defects"]] == ["leak"]
    assert data["analyses"] == 2
    assert data["cost_micro_usd"] == 10_000
    assert data["room_types"] == [{"room_type": "kitchen", "photos": 2}]


async def test_a_photo_posted_for_two_properties_counts_for_each_and_costs_once(
    db: Database,
) -> None:
    await _analysis(db, "tenant-a", "house-1", 0.8, "major", "house-2")
    await _analysis(db, "tenant-a", "house-2", 0.4, "minor")
    data = await load_property_intelligence(db, "tenant-a")
    by_property = {p["property_id"]: p for p in data["properties"]}
    assert {p: row["photos"] for p, row in by_property.items()} == {"house-1": 1, "house-2": 2}
    assert round(by_property["house-2"]["luxury"], 2) == 0.60
    assert sorted(d["property_id"] for d in data["major_defects"]) == ["house-1", "house-2"]
    assert data["analyses"] == 2
    assert data["cost_micro_usd"] == 10_000


async def test_property_ids_are_charted_as_written_never_as_plotly_markup(
    db: Database,
) -> None:
    # The backfill names a property after a photo's folder or file name in the
    # tenant's bucket, no validated id: plotly drew this one as a link.
    link = '<a href="https://evil.example/login">Listing moved</a>'
    await _analysis(db, "tenant-a", link, 0.8, "minor")
    await _analysis(db, "tenant-a", "house-1", 0.6, "minor")
    figure = properties_chart((await load_property_intelligence(db, "tenant-a"))["properties"])
    shown = sorted(str(name) for trace in figure.data for name in trace.hovertext)
    assert shown == [
        '&lt;a href="https://evil.example/login"&gt;Listing moved&lt;/a&gt;',
        "house-1",
    ]


COACHING_PAGE = """
import asyncio, os
from services.common.database import Database
from services.dashboards.views import coaching

class Context:
    tenant_id = "tenant-a"

    def run(self, fn):
        async def go():
            db = await Database.open(os.environ["PAGE_DATABASE_URL"], max_size=1)
            try:
                return await fn(db)
            finally:
                await db.close()
        return asyncio.run(go())

coaching.render(Context())
"""


async def test_coaching_page_sends_tables_the_browser_can_draw(
    db: Database, app_database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Postgres UUIDs went to the browser as Arrow's uuid extension type, which
    # Streamlit drew as a dict of 16 byte values in the "Recent sessions" table.
    await _session(db, "tenant-a", "agent-1", ["Close"], 1_000)
    monkeypatch.setenv("PAGE_DATABASE_URL", app_database_url)
    at = await asyncio.to_thread(AppTest.from_string(COACHING_PAGE, default_timeout=60).run)
    assert not at.exception, [e.value for e in at.exception]
    for table in at.dataframe:
        schema = pa.ipc.open_stream(table.proto.arrow_data.data).schema
        extension = [f.name for f in schema if isinstance(f.type, pa.BaseExtensionType)]
        assert extension == [], f"columns the browser cannot draw: {extension}"
    recent = at.dataframe[-1].value
    assert str(UUID(recent["session_id"][0])) == recent["session_id"][0]
