"""Multimodal Property Intelligence Dashboard: the tenant's stored photo analyses.

``load_property_intelligence`` reads (under the tenant's row-level security)
the finished analyses: per property the photos analysed and mean luxury and
condition scores (0.00 to 1.00), the room types seen, the photos with major
defects, the latency percentiles and what the analyses cost. Per-property
figures read through ``property_vision_links``: a photo posted for two
properties counts for each; room types, latency and cost count each analysis
once.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from services.common.database import Database

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from services.dashboards.context import PageContext

TITLE = "Property Intelligence"
ICON = "🏠"


async def load_property_intelligence(db: Database, tenant_id: str) -> dict[str, Any]:
    """Per-property scores, room types, defects, latency and cost."""
    async with db.tenant(tenant_id) as conn:
        properties = await conn.fetch(
            "SELECT l.property_id, count(*) AS photos, avg(a.luxury_score)::float8 AS luxury, "
            "avg(a.condition_score)::float8 AS condition, max(l.posted_at) AS last_posted "
            "FROM property_vision_links l JOIN property_vision_analyses a "
            "ON a.tenant_id = l.tenant_id AND a.analysis_id = l.analysis_id "
            "WHERE a.status = 'done' "
            "GROUP BY l.property_id ORDER BY last_posted DESC LIMIT 200"
        )
        rooms = await conn.fetch(
            "SELECT analysis_results->>'room_type' AS room_type, count(*) AS photos "
            "FROM property_vision_analyses WHERE status = 'done' GROUP BY 1 ORDER BY 2 DESC"
        )
        defects = await conn.fetch(
            "SELECT l.property_id, a.image_url, defect->>'description' AS defect "
            "FROM property_vision_links l JOIN property_vision_analyses a "
            "ON a.tenant_id = l.tenant_id AND a.analysis_id = l.analysis_id, "
            "jsonb_array_elements(a.analysis_results->'defects') AS defect "
            "WHERE a.status = 'done' AND defect->>'severity' = 'major' "
            "ORDER BY l.posted_at DESC LIMIT 50"
        )
        totals = await conn.fetchrow(
            "SELECT count(*) AS analyses, coalesce(sum(cost_micro_usd), 0)::bigint AS cost, "
            "percentile_cont(0.5) WITHIN GROUP (ORDER BY analysis_latency_seconds) AS p50, "
            "percentile_cont(0.95) WITHIN GROUP (ORDER BY analysis_latency_seconds) AS p95 "
            "FROM property_vision_analyses WHERE status = 'done' AND source <> 'batch'"
        )
    return {
        "properties": [dict(row) for row in properties],
        "room_types": [dict(row) for row in rooms],
        "major_defects": [dict(row) for row in defects],
        "analyses": int(totals["analyses"]) if totals else 0,
        "cost_micro_usd": int(totals["cost"]) if totals else 0,
        "latency_p50_seconds": totals["p50"] if totals else None,
        "latency_p95_seconds": totals["p95"] if totals else None,
    }


def properties_chart(properties: list[dict[str, Any]]) -> go.Figure:
    """Each property's mean condition and luxury, sized by its photos analysed.

    The property ids are not all validated ids: the backfill names a property
    after the folder or file name of a photo in the tenant's bucket. plotly
    reads ``<a href>``, ``<b>`` and ``<span style>`` in hover text, so they are
    escaped and shown as written.
    """
    import plotly.express as px

    shown = [
        {**row, "property_id": html.escape(str(row["property_id"]), quote=False)}
        for row in properties
    ]
    return px.scatter(
        shown,
        x="condition",
        y="luxury",
        size="photos",
        hover_name="property_id",
        range_x=[0, 1],
        range_y=[0, 1],
    )


def render(ctx: PageContext) -> None:
    """Draw the page (data from ``load_property_intelligence``)."""
    import streamlit as st

    st.title(f"{ICON} {TITLE}")
    data = ctx.run(lambda db: load_property_intelligence(db, ctx.tenant_id))
    if not data["properties"]:
        st.info("No photo analyses yet. Upload a photo to POST /v1/ml/vision/analyses/upload.")
        return
    cols = st.columns(3)
    cols[0].metric("Properties", len(data["properties"]))
    p95 = data["latency_p95_seconds"]
    cols[1].metric("Analysis p95", "n/a" if p95 is None else f"{p95:.2f} s")
    cols[2].metric("Claude cost", f"${data['cost_micro_usd'] / 1_000_000:.2f}")
    st.caption("Scores: 0.00 basic / uninhabitable to 1.00 top-tier luxury / new.")
    st.plotly_chart(properties_chart(data["properties"]))
    st.subheader("Room types")
    st.dataframe(data["room_types"], hide_index=True)
    if data["major_defects"]:
        st.subheader("Major defects")
        st.dataframe(data["major_defects"], hide_index=True)
