"""The seed's ROI validation criteria, judged on a report's numbers.

The seed ("Success Metrics", ROI Validation):

- positive net impact within 30 days;
- 500%+ ROI within 90 days;
- operating costs within budget: below 20% of the revenue impact.

ROI here is (revenue - cost) / cost, the seed's dashboard's (``net_impact /
operating_cost``), not its weekly report's ``revenue / cost``: the two differ
by exactly 100 points, and only the net form is 0 at break-even, so "positive
net impact" and "ROI > 0" say the same thing. Read as revenue / cost, 500%
would be met at revenue 5x cost, which is the budget criterion (cost < 20% of
revenue) a second time; read as net / cost, it needs revenue 6x cost (cost
below 16.7% of revenue), the stricter of the two readings.

A criterion with a deadline ("within N days") counts its days from the
period's first day, so it is meant for a period that starts at the launch:
it is judged on the totals of the period's first N days (all of them, if the
period is shorter). Met there: ``pass``. Not met and the period covers the N
days: ``fail``. Not met and the period is shorter: ``not_yet_measurable``
(the deadline has not passed). The budget has no deadline and is judged on
the whole period. Each is judged on the point estimates; the ROI's interval is
given beside it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

from services.impact.assumptions import Interval, roi

Status = Literal["pass", "fail", "not_yet_measurable"]

NET_IMPACT_DAYS: Final = 30
ROI_DAYS: Final = 90
#: 500%: (revenue - cost) / cost >= 5.
MIN_ROI: Final = 5.0
#: Operating cost below 20% of the revenue impact.
MAX_COST_SHARE: Final = 0.20


@dataclass(frozen=True, slots=True)
class Totals:
    """Revenue (an interval) and operating cost over some days."""

    revenue: Interval
    cost: float


def _deadline(met: bool, days: int, window: int) -> Status:
    if met:
        return "pass"
    return "fail" if days >= window else "not_yet_measurable"


def roi_criteria(*, days: int, first: Callable[[int], Totals]) -> dict[str, dict[str, Any]]:
    """The three criteria for a period of ``days`` days; ``first(n)`` gives the totals
    of its first ``n`` days (``first(days)``: the whole period)."""
    early = first(min(days, NET_IMPACT_DAYS))
    net = early.revenue.point - early.cost
    ninety = first(min(days, ROI_DAYS))
    ratio = roi(ninety.revenue, ninety.cost)
    whole = first(days)
    share = whole.cost / whole.revenue.point if whole.revenue.point > 0 else None
    if share is not None:
        budget: Status = "pass" if share < MAX_COST_SHARE else "fail"
    else:
        # No revenue: any cost is over budget; no cost either is nothing to judge.
        budget = "fail" if whole.cost > 0 else "not_yet_measurable"
    return {
        "positive_net_impact_30d": {
            "criterion": "Positive net impact within 30 days",
            "status": _deadline(net > 0, days, NET_IMPACT_DAYS),
            "net_impact": round(net, 2),
            "threshold": 0.0,
            "window_days": NET_IMPACT_DAYS,
            "days_measured": min(days, NET_IMPACT_DAYS),
        },
        "roi_500_90d": {
            "criterion": "500%+ ROI within 90 days",
            "status": "not_yet_measurable"
            if ratio is None
            else _deadline(ratio.point >= MIN_ROI, days, ROI_DAYS),
            "roi": None if ratio is None else round(ratio.point, 4),
            "roi_low": None if ratio is None else round(ratio.low, 4),
            "roi_high": None if ratio is None else round(ratio.high, 4),
            "threshold": MIN_ROI,
            "window_days": ROI_DAYS,
            "days_measured": min(days, ROI_DAYS),
        },
        "cost_within_budget": {
            "criterion": "Operating costs within budget (<20% of revenue impact)",
            "status": budget,
            "cost_share_of_revenue": None if share is None else round(share, 4),
            "threshold": MAX_COST_SHARE,
            "window_days": None,
            "days_measured": days,
        },
    }
