"""Agent Coaching Dashboard: the signed-in tenant's stored coaching sessions.

``load_coaching`` reads (under the tenant's row-level security) the sessions
of the last ``days`` days: per agent the number of sessions, mean talk/listen
ratio, questions asked and unanswered objections, the most frequent
improvement areas, the recent sessions with Claude's summary, and what the
analyses cost (from the sessions' own micro-dollar costs).
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from services.common.database import Database

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from services.dashboards.context import PageContext

TITLE = "Agent Coaching"
ICON = "🎯"


async def load_coaching(db: Database, tenant_id: str, *, days: int = 30) -> dict[str, Any]:
    """Per-agent aggregates, frequent improvement areas and recent sessions."""
    async with db.tenant(tenant_id) as conn:
        agents = await conn.fetch(
            "SELECT agent_id, count(*) AS sessions, "
            "avg((analysis_data->>'talk_listen_ratio')::float8) AS talk_listen_ratio, "
            "avg((analysis_data->>'questions_asked')::float8) AS questions_asked, "
            "sum((analysis_data->>'objections_unanswered')::int) AS objections_unanswered, "
            "avg(analysis_latency_seconds) AS latency_seconds, "
            "sum(cost_micro_usd)::bigint AS cost_micro_usd "
            "FROM coaching_sessions WHERE created_at > now() - make_interval(days => $1) "
            "GROUP BY agent_id ORDER BY sessions DESC, agent_id",
            days,
        )
        areas = await conn.fetch(
            "SELECT area, count(*) AS sessions FROM coaching_sessions, "
            "unnest(improvement_areas) AS area "
            "WHERE created_at > now() - make_interval(days => $1) "
            "GROUP BY area ORDER BY sessions DESC, area LIMIT 10",
            days,
        )
        # The id as text: a UUID reaches the browser as Arrow's uuid extension
        # type, which Streamlit draws as a dict of its 16 bytes.
        recent = await conn.fetch(
            "SELECT session_id::text AS session_id, agent_id, created_at, "
            "coaching_insights->>'summary' AS summary, improvement_areas "
            "FROM coaching_sessions ORDER BY created_at DESC LIMIT 20"
        )
    return {
        "agents": [dict(row) for row in agents],
        "improvement_areas": [dict(row) for row in areas],
        "recent": [dict(row) for row in recent],
        "cost_micro_usd": sum(int(row["cost_micro_usd"] or 0) for row in agents),
    }


def areas_chart(areas: list[dict[str, Any]]) -> go.Figure:
    """The most frequent improvement areas as horizontal bars.

    The titles are Claude's words about the CRM's transcripts, which whoever
    wrote to the agent can steer; plotly reads ``<a href>``, ``<b>`` and
    ``<span style>`` in labels, so they are escaped and shown as written.
    """
    import plotly.express as px

    shown = [{**area, "area": html.escape(str(area["area"]), quote=False)} for area in areas]
    return px.bar(shown, x="sessions", y="area", orientation="h")


def render(ctx: PageContext) -> None:
    """Draw the page (data from ``load_coaching``)."""
    import streamlit as st

    st.title(f"{ICON} {TITLE}")
    data = ctx.run(lambda db: load_coaching(db, ctx.tenant_id))
    if not data["agents"]:
        st.info(
            "No coaching sessions in the last 30 days. Send a transcript to "
            "POST /v1/coaching/sessions to analyse a conversation."
        )
        return
    sessions = sum(row["sessions"] for row in data["agents"])
    cols = st.columns(3)
    cols[0].metric("Sessions (30 days)", sessions)
    cols[1].metric("Agents coached", len(data["agents"]))
    cols[2].metric("Claude cost", f"${data['cost_micro_usd'] / 1_000_000:.2f}")
    st.subheader("Agents")
    st.dataframe(data["agents"], hide_index=True)
    if data["improvement_areas"]:
        st.subheader("Most frequent improvement areas")
        st.plotly_chart(areas_chart(data["improvement_areas"]))
    st.subheader("Recent sessions")
    st.dataframe(data["recent"], hide_index=True)
