"""Phase 3 ROI: the signed-in tenant's business impact, and the experiments behind it.

Everything is read from stored rows: the tenant's ``phase3_business_metrics``
(under row-level security), the newest ``experiment_results`` per feature
and the newest ``rollout_decisions`` (platform-level aggregates, no tenant
data). Revenue uses the measured lift with its interval where an experiment
has measured one, else the assumed lift and its range (say which); cost here
is this tenant's per-use cost plus an equal share of the infrastructure
allocation among the tenants active in the period. The features are priced
with the assumptions in force (IMPACT_ASSUMPTIONS, from the dashboards'
settings), as ``enterprisehub impact report`` and the daily aggregate price
them.

What the page draws is loaded once per (tenant, start, end, assumptions) and
kept ``CACHE_SECONDS`` (the seed's ``@st.cache_data(ttl=300)``), so a rerun
(a widget touched) does not query again. The tenant is part of the key:
Streamlit's data cache is shared by every session of the process.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

import plotly.graph_objects as go
import streamlit as st

from services.common.database import Database
from services.common.flags import FEATURES
from services.impact.aggregate import active_tenants, day_bounds
from services.impact.assumptions import FeatureAssumptions
from services.impact.report import measured_lifts, summarize, tenant_rows
from services.rollout.schedule import PLANS

if TYPE_CHECKING:
    from services.dashboards.context import PageContext

TITLE = "Phase 3 ROI"
ICON = "💰"
#: How long loaded data is reused (the seed's ttl=300).
CACHE_SECONDS: Final = 300
#: The longest period the page prices: a year and a day, past the criteria's 90
#: days and the annual projection. Each (tenant, start, end) is its own cache
#: entry holding the period's rows, so an unbounded period let one session
#: fill the process's memory by stepping through start dates of years of rows.
MAX_PERIOD_DAYS: Final = 366

LABELS = {
    "realtime_intelligence": "Real-Time Intelligence",
    "property_vision": "Property Vision",
    "churn_prevention": "Churn Prevention",
    "ai_coaching": "AI Coaching",
}
#: One colour per feature in every chart. Left to plotly, a pie colours its
#: slices by size, so one colour named a different feature in each pie.
COLORS = {
    "realtime_intelligence": "#0068c9",
    "property_vision": "#83c9ff",
    "churn_prevention": "#ff2b2b",
    "ai_coaching": "#ffabab",
}


@dataclass(frozen=True)
class RoiData:
    """What the page draws."""

    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    experiments: dict[str, dict[str, Any]]
    decisions: dict[str, dict[str, Any]]


async def load_decisions(db: Database) -> dict[str, dict[str, Any]]:
    """Feature -> the newest ``rollout advance`` decision."""
    async with db.unscoped() as conn:
        rows = await conn.fetch(
            "SELECT DISTINCT ON (feature_name) feature_name, decided_at, stage_percentage, "
            "decision, reason FROM rollout_decisions "
            "ORDER BY feature_name, decided_at DESC, decision_id DESC"
        )
    return {row["feature_name"]: dict(row) for row in rows}


async def load_roi(
    db: Database,
    tenant_id: str,
    start: date,
    end: date,
    *,
    assumptions: Mapping[str, FeatureAssumptions],
) -> RoiData:
    """The tenant's rows for ``[start, end]`` and the platform's experiments, priced
    with ``assumptions``."""
    rows = await tenant_rows(db, tenant_id, start, end)
    experiments = await measured_lifts(db)
    since, _ = day_bounds(start)
    _, until = day_bounds(end)
    # An equal share of the shared infrastructure (an assumption, like the cost itself).
    tenants = len(await active_tenants(db, since, until))
    summary = summarize(
        rows,
        start=start,
        end=end,
        assumptions=assumptions,
        lifts=experiments,
        infra_share=1 / tenants if tenants else 0.0,
    )
    return RoiData(rows, summary, experiments, await load_decisions(db))


# At most MAX_PERIOD_DAYS x 4 features rows an entry (~1.5 MB): 200 entries
# bound the cache to a few hundred MB; an evicted entry is one query again.
@st.cache_data(ttl=CACHE_SECONDS, show_spinner=False, max_entries=200)
def _cached_roi(
    tenant_id: str,
    start: date,
    end: date,
    assumptions_text: str,
    _ctx: PageContext,
) -> RoiData:
    # Streamlit hashes the arguments not starting with "_": the tenant, the dates
    # and IMPACT_ASSUMPTIONS as set are the key; the context is not.
    assumptions = _ctx.settings.assumptions
    return _ctx.run(lambda db: load_roi(db, tenant_id, start, end, assumptions=assumptions))


def cached_roi(ctx: PageContext, start: date, end: date) -> RoiData:
    """``load_roi`` for ``ctx``'s tenant with its settings' assumptions, reused for
    ``CACHE_SECONDS`` by every session asking for the same tenant, dates and assumptions."""
    text = ctx.settings.impact_assumptions or ""
    return _cached_roi(ctx.tenant_id, start, end, text, ctx)


def to_csv(rows: list[dict[str, Any]]) -> str:
    """The stored rows as CSV (the export)."""
    out = io.StringIO()
    fields = [
        "metric_date",
        "feature_name",
        "usage_count",
        "success_count",
        "revenue_impact",
        "operating_cost",
        "estimated_operating_cost",
        "performance_p50_seconds",
        "performance_p95_seconds",
        "performance_p99_seconds",
    ]
    writer = csv.DictWriter(out, fieldnames=fields, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _money(value: float) -> str:
    return f"${value:,.0f}"


def _interval(value: dict[str, float] | None, fmt: str = "{:,.0f}") -> str:
    if value is None:
        return "n/a"
    return (
        f"{fmt.format(value['point'])} ({fmt.format(value['low'])} to {fmt.format(value['high'])})"
    )


_STATUS = {"pass": "pass", "fail": "fail", "not_yet_measurable": "not yet measurable"}


def _criteria_table(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """The seed's ROI criteria (services/impact/criteria.py) with their numbers."""
    criteria = summary["criteria"]
    net = criteria["positive_net_impact_30d"]
    ratio = criteria["roi_500_90d"]
    budget = criteria["cost_within_budget"]
    roi_measured = (
        "n/a (no cost)"
        if ratio["roi"] is None
        else f"{ratio['roi']:.0%} ({ratio['roi_low']:.0%} to {ratio['roi_high']:.0%})"
    )
    share = budget["cost_share_of_revenue"]
    rows = [
        (net, "net impact > $0 by day 30", _money(net["net_impact"])),
        (ratio, f"ROI >= {ratio['threshold']:.0%} by day 90", roi_measured),
        (
            budget,
            f"operating cost < {budget['threshold']:.0%} of revenue",
            "no revenue" if share is None else f"{share:.1%} of revenue",
        ),
    ]
    return [
        {
            "Criterion": item["criterion"],
            "Target": target,
            "Measured": measured,
            "Days measured": item["days_measured"],
            "Status": _STATUS[item["status"]],
        }
        for item, target, measured in rows
    ]


def _performance(summary: dict[str, Any]) -> list[dict[str, Any]]:
    table = []
    for feature in FEATURES:
        p95 = summary["features"][feature]["worst_daily_p95_seconds"]
        target = PLANS[feature].latency_target_seconds
        status = "no data" if p95 is None else ("meets target" if p95 <= target else "above target")
        table.append(
            {
                "Feature": LABELS[feature],
                "Worst daily p95 (s)": None if p95 is None else round(p95, 3),
                "Target p95 (s)": target,
                "Status": status,
            }
        )
    return table


def _annual_table(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Each feature's revenue at a year's pace beside the seed's yearly value for it."""
    table = []
    for feature in FEATURES:
        projected = summary["features"][feature]["projected_annual_revenue"]
        goal = summary["features"][feature]["annual_goal"]
        table.append(
            {
                "Feature": LABELS[feature],
                "Projected annual": _interval(projected),
                "Goal (platform, a year)": f"{_money(goal['low'])}-{_money(goal['high'])}",
            }
        )
    return table


def _experiment_table(data: RoiData) -> list[dict[str, Any]]:
    table = []
    for feature in FEATURES:
        result = data.experiments.get(feature)
        decision = data.decisions.get(feature)
        row: dict[str, Any] = {"Feature": LABELS[feature]}
        if result:
            row.update(
                {
                    "Metric": result.get("metric"),
                    "Tenants (C/T)": f"{result.get('n_control')}/{result.get('n_treatment')}",
                    "Lift": f"{result['lift']:+.1%}" if "lift" in result else "n/a",
                    "95% CI": f"{result['lift_ci_low']:+.1%} to {result['lift_ci_high']:+.1%}"
                    if "lift_ci_low" in result
                    else "n/a",
                    "Always-valid CI": f"{result['seq_lift_ci_low']:+.1%} to "
                    f"{result['seq_lift_ci_high']:+.1%}"
                    if "seq_lift_ci_low" in result
                    else "n/a",
                    "p (Welch)": round(result["p_value"], 4) if "p_value" in result else None,
                    # Holm across every stored (feature, metric): the family this table shows.
                    "p (Holm)": round(result["p_value_adjusted"], 4)
                    if result.get("p_value_adjusted") is not None
                    else None,
                    "SRM p": round(result["srm_p_value"], 4) if "srm_p_value" in result else None,
                }
            )
        else:
            row["Metric"] = "no experiment stored"
        row["Decision"] = (
            f"{decision['decision']} at {float(decision['stage_percentage']):g}%: "
            f"{decision['reason']}"
            if decision
            else "none recorded"
        )
        table.append(row)
    return table


def period_problem(start: object, end: object, *, today: date) -> str | None:
    """Why ``[start, end]`` is not a period the page prices, or None if it is.

    The date inputs' bounds already put a value outside them back to its
    default; the end is checked here too so the rule stays in one place.
    """
    if not isinstance(start, date) or not isinstance(end, date) or start > end:
        return "Choose a start date on or before the end date."
    if end > today:
        # Days not yet lived count in the period's length and dilute every
        # per-day figure (the annual projection is revenue x 365 / days).
        return f"Choose an end date on or before today ({today.isoformat()})."
    if (end - start).days + 1 > MAX_PERIOD_DAYS:
        return f"Choose a period of at most {MAX_PERIOD_DAYS} days."
    return None


def render(ctx: PageContext) -> None:
    """Draw the page for ``ctx.tenant_id``."""
    st.title(TITLE)
    st.caption(
        "Revenue = usage x lift x value per unit. Lift: measured (experiment) where available, "
        "else assumed (see the assumptions in docs/architecture.md); intervals throughout."
    )
    today = datetime.now(UTC).date()
    earliest = today - timedelta(days=10 * 365)
    left, right = st.columns(2)
    start = left.date_input(
        "Start date",
        today - timedelta(days=30),
        min_value=earliest,
        max_value=today,
        key="roi_start",
    )
    end = right.date_input("End date", today, min_value=earliest, max_value=today, key="roi_end")
    problem = period_problem(start, end, today=today)
    if problem is not None:
        st.error(problem)
        return

    data = cached_roi(ctx, start, end)
    total = data.summary["total_platform"]
    if not data.rows:
        st.info("No business-impact rows for this period yet (the daily job writes them).")

    st.header("Summary")
    a, b, c, d = st.columns(4)
    a.metric("Revenue impact", _money(total["revenue"]["point"]),
             help=f"interval {_interval(total['revenue'])}")  # fmt: skip
    b.metric("Operating cost", _money(total["operating_cost"]),
             help=f"of which {_money(total['estimated_operating_cost'])} is estimated: the "
             "upper bound of Claude calls that got no answer")  # fmt: skip
    c.metric("Net impact", _money(total["net_impact"]))
    roi = total["roi"]
    d.metric("ROI", "n/a" if roi is None else f"{roi['point']:.0%}",
             help=None if roi is None else _interval(roi, "{:.0%}"))  # fmt: skip

    st.header("ROI success criteria")
    st.dataframe(_criteria_table(data.summary), hide_index=True, use_container_width=True)
    st.caption(
        "The seed's ROI validation. ROI = (revenue - cost) / cost, 0 at break-even (the seed's "
        "dashboard's net / cost; its weekly report's revenue / cost reads 100 points higher). "
        "The 30- and 90-day deadlines count from the start date, judged on the totals of the "
        "period's first 30 or 90 days: to judge them, start at the day the features reached "
        "you. Not met with the deadline still ahead is not yet measurable."
    )

    st.header("Revenue trend by feature")
    trend = go.Figure()
    for feature in FEATURES:
        points = [r for r in data.rows if r["feature_name"] == feature]
        trend.add_trace(
            go.Scatter(
                x=[r["metric_date"] for r in points],
                y=[r["revenue_impact"] for r in points],
                mode="lines+markers",
                name=LABELS[feature],
                line_color=COLORS[feature],
            )
        )
    trend.update_layout(
        xaxis_title="Date", yaxis_title="Revenue impact at the assumed lift ($)", height=380
    )
    st.plotly_chart(trend, use_container_width=True)

    st.header("Usage and revenue distribution")
    features = data.summary["features"]
    labels = [LABELS[f] for f in FEATURES]
    colors = [COLORS[f] for f in FEATURES]
    left, right = st.columns(2)
    usage = go.Figure(
        go.Pie(
            labels=labels,
            values=[features[f]["usage"] for f in FEATURES],
            hole=0.3,
            sort=False,
            marker_colors=colors,
        )
    )
    usage.update_layout(title="Usage", height=320)
    left.plotly_chart(usage, use_container_width=True)
    revenue = go.Figure(
        go.Pie(
            labels=labels,
            values=[features[f]["revenue"]["point"] for f in FEATURES],
            hole=0.3,
            sort=False,
            marker_colors=colors,
        )
    )
    revenue.update_layout(title="Revenue", height=320)
    right.plotly_chart(revenue, use_container_width=True)

    st.header("Performance against targets")
    st.dataframe(_performance(data.summary), hide_index=True, use_container_width=True)

    st.header("Projected annual impact")
    annual = total["projected_annual_revenue"]
    goal = total["annual_goal"]
    midpoint = (goal["low"] + goal["high"]) / 2
    x, y, z = st.columns(3)
    x.metric("Projected annual (this tenant)", _money(annual["point"]),
             help=_interval(annual))  # fmt: skip
    y.metric("Platform goal", f"{_money(goal['low'])}-{_money(goal['high'])}")
    z.metric("Share of goal midpoint", f"{annual['point'] / midpoint:.1%}",
             help=f"{annual['low'] / midpoint:.1%} to {annual['high'] / midpoint:.1%}")  # fmt: skip
    st.caption(
        f"Share of the goal's midpoint, {_money(midpoint)}: the true midpoint of "
        f"{_money(goal['low'])}-{_money(goal['high'])} (the seed's dashboard divides by "
        "$350,000, a rounded midpoint)."
    )
    st.dataframe(_annual_table(data.summary), hide_index=True, use_container_width=True)

    st.header("Experiments and rollout decisions")
    st.dataframe(_experiment_table(data), hide_index=True, use_container_width=True)
    family = max((r.get("family_size", 0) for r in data.experiments.values()), default=0)
    st.caption(
        f"p (Holm): Welch p-values adjusted across the {family} stored feature x metric "
        "results read together here; the always-valid interval holds at every daily look."
    )
    sources = {f: features[f]["lift_source"] for f in FEATURES}
    st.caption(
        "Lift used for revenue: "
        + ", ".join(f"{LABELS[f]} {source}" for f, source in sources.items())
    )

    st.download_button(
        "Export data to CSV",
        data=to_csv(data.rows),
        file_name=f"phase3_impact_{ctx.tenant_id}_{start}_{end}.csv",
        mime="text/csv",
    )
