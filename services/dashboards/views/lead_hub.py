"""Real-Time Lead Intelligence Hub: a tenant's live lead events and their scores.

Read through ``WS /v1/feed`` with the signed-in user's token, exactly as an
agent's client reads it. On first open the page replays the last
hour (`LOOKBACK_SECONDS`); every refresh resumes from the last event
seen, so nothing is read twice. Shown: the latest events with their scores,
the score distribution, and counts by event type.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import plotly.graph_objects as go
import streamlit as st

from services.dashboards.context import PageContext
from services.dashboards.feed import FeedRead, FeedUnavailable, read_feed, stream_id_at

TITLE = "Real-Time Lead Intelligence Hub"
ICON = "📡"

HOT_SCORE = 0.7
"""Leads at or above this conversion probability count as hot."""
LATEST_EVENTS = 200
"""Events the page keeps and shows (newest first)."""
LOOKBACK_SECONDS = 3600.0
"""How far back the feed is replayed when the page opens."""
LISTEN_SECONDS = 1.0
FEED_TIMEOUT_SECONDS = 10.0
REFRESH_SECONDS = 5

#: The feed's close code for a refused cursor (or token), RFC 6455 "policy violation".
WS_POLICY_VIOLATION = 1008

_STATE_KEY = "lead_hub"


@dataclass(frozen=True)
class HubView:
    """What the page draws, computed from the events it holds."""

    rows: list[dict[str, Any]]
    scores: list[float]
    by_type: dict[str, int]
    hot: int
    mean_score: float | None


def summarize(events: list[dict[str, Any]], *, latest: int) -> HubView:
    """The newest ``latest`` events (newest first) and their figures."""
    recent = events[-latest:]
    scores = [float(e["score"]) for e in recent if isinstance(e.get("score"), int | float)]
    rows = [
        {
            "accepted": datetime.fromtimestamp(float(e["accepted_at"]), tz=UTC).strftime(
                "%H:%M:%S"
            ),
            "lead": e.get("lead_id"),
            "event": e.get("event_type"),
            "agent": e.get("agent_id") or "all",
            "score": round(float(e["score"]), 3),
        }
        for e in reversed(recent)
    ]
    return HubView(
        rows=rows,
        scores=scores,
        by_type=dict(Counter(str(e.get("event_type")) for e in recent).most_common()),
        hot=sum(score >= HOT_SCORE for score in scores),
        mean_score=sum(scores) / len(scores) if scores else None,
    )


def _state(ctx: PageContext) -> dict[str, Any]:
    state = st.session_state.get(_STATE_KEY)
    if state is None or state["tenant_id"] != ctx.tenant_id:
        state = {
            "tenant_id": ctx.tenant_id,
            "cursor": stream_id_at(datetime.now(UTC).timestamp() - LOOKBACK_SECONDS),
            "events": [],
        }
        st.session_state[_STATE_KEY] = state
    return state


def _read(ctx: PageContext, since: str | None) -> FeedRead:
    return ctx.run_async(
        read_feed(
            ctx.settings.dashboards_feed_url,
            ctx.token,
            since=since,
            listen_seconds=LISTEN_SECONDS,
            open_timeout=FEED_TIMEOUT_SECONDS,
        )
    )


def _refresh(ctx: PageContext, state: dict[str, Any]) -> str | None:
    since = state["cursor"]
    try:
        read = _read(ctx, since)
    except FeedUnavailable as exc:
        if exc.code != WS_POLICY_VIOLATION:
            return exc.reason
        # The feed refuses a cursor past its newest entry, as one it never sent.
        # The first open's "LOOKBACK_SECONDS ago" is such a cursor for a tenant
        # quiet that long (or a clock ahead of Redis's): the hub said "Feed
        # unavailable" on every refresh until the tenant's next event. Nothing
        # lies past it, so the hub goes live from the feed's own position.
        try:
            read = _read(ctx, None)
        except FeedUnavailable as again:
            return again.reason
        restart(state, since, read.cursor)
    merge(state, read.events, read.cursor)
    return None


def _position(stream_id: str) -> tuple[int, int]:
    milliseconds, _, sequence = stream_id.partition("-")
    return int(milliseconds), int(sequence or 0)


#: What the page keeps of an event: what it draws and the cursor. The event's
#: ``data`` is the CRM's own JSON, up to REALTIME_MAX_EVENT_BYTES (64 KiB by
#: default) each: kept, LATEST_EVENTS of them held some 13 MB per open hub,
#: in the server's memory, never drawn.
KEPT_FIELDS = ("stream_id", "lead_id", "event_type", "agent_id", "score", "accepted_at")


# Two runs of one session can read from the same cursor at once: a click
# reruns the page in a new thread while the refreshing fragment's thread is
# still waiting for the feed (Streamlit interrupts a run only at its next st
# call). Merging only what lies past the cursor, under a lock, keeps each
# event once however the two reads interleave.
_MERGE_LOCK = threading.Lock()


def restart(state: dict[str, Any], refused: str, cursor: str | None) -> None:
    """Replace the refused cursor by ``cursor`` (the feed's live position), even
    though it lies behind: the refused one was never a position of the stream."""
    with _MERGE_LOCK:
        if cursor is not None and state["cursor"] == refused:
            state["cursor"] = cursor


def merge(state: dict[str, Any], events: list[dict[str, Any]], cursor: str | None) -> None:
    """Add the events read past ``state["cursor"]`` and move the cursor forward only."""
    with _MERGE_LOCK:
        after = _position(state["cursor"])
        new = [
            {name: e.get(name) for name in KEPT_FIELDS}
            for e in events
            if _position(str(e.get("stream_id", "0-0"))) > after
        ]
        state["events"] = (state["events"] + new)[-LATEST_EVENTS:]
        candidates = [c for c in (cursor, *(str(e["stream_id"]) for e in new)) if c is not None]
        furthest = max(candidates, key=_position, default=None)
        if furthest is not None and _position(furthest) > after:
            state["cursor"] = furthest


def _draw(view: HubView) -> None:
    first, second, third = st.columns(3)
    first.metric("Events shown", len(view.rows))
    second.metric("Mean score", "n/a" if view.mean_score is None else f"{view.mean_score:.2f}")
    third.metric(f"Hot leads (≥ {HOT_SCORE:g})", view.hot)
    if not view.rows:
        st.info("No lead events yet for this tenant; they appear here as the CRM sends them.")
        return
    left, right = st.columns(2)
    histogram = go.Figure(go.Histogram(x=view.scores, xbins={"start": 0, "end": 1, "size": 0.05}))
    histogram.update_layout(title="Score distribution", xaxis_title="score", yaxis_title="events")
    left.plotly_chart(histogram, use_container_width=True)
    bars = go.Figure(go.Bar(x=list(view.by_type), y=list(view.by_type.values())))
    bars.update_layout(title="Events by type", yaxis_title="events")
    right.plotly_chart(bars, use_container_width=True)
    st.subheader("Latest events")
    st.dataframe(view.rows, hide_index=True, use_container_width=True)


def render(ctx: PageContext) -> None:
    """Draw the hub; refreshes itself every REFRESH_SECONDS."""
    st.title(f"{ICON} {TITLE}")
    st.caption(f"Tenant {ctx.tenant_id}: live from the lead feed, refreshed every few seconds.")

    @st.fragment(run_every=REFRESH_SECONDS)
    def live() -> None:
        if not ctx.still_signed_in():
            # Signed out (or the token expired) since the app last ran.
            st.rerun(scope="app")
        state = _state(ctx)
        problem = _refresh(ctx, state)
        if problem is not None:
            st.warning(f"Feed unavailable: {problem}. Showing what was already received.")
        _draw(summarize(state["events"], latest=LATEST_EVENTS))

    live()
