"""Adoption and daily active usage of a feature, from the stored daily rows.

``rollout advance`` reads these at 100 %, where every tenant has the feature
and no experiment has a control arm to analyse (before, adoption is the
experiment's share of treatment tenants that used the feature). The seed's
"80%+ feature adoption rate among enabled tenants" and "60%+ daily active
usage rate" are measured as:

- adoption: the tenants with a use of the feature (``usage_count`` > 0 in
  ``phase3_business_metrics``) on any day of ``[start, end]``, over the tenants
  the platform knows in that period;
- daily active usage: the mean over the days of ``[start, end]`` of the share
  of those tenants with a use of the feature that day.

The tenants the platform knows are ``impact_tenants()``'s (revisions 0005 and
0019): every tenant ever assigned in an experiment of any feature, and every
tenant with activity or Claude spend in the period. At 100 % they all have the
feature. A tenant the platform has never seen at all is not counted, so both
rates are upper bounds when some tenants never touch any feature.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta

from services.common.database import Database
from services.impact.aggregate import active_tenants, day_bounds
from services.impact.report import tenant_rows


@dataclass(frozen=True, slots=True)
class UsageRates:
    """A feature's adoption and daily active usage over some days."""

    adoption: float
    daily_active: float
    tenants: int
    days: int


async def usage_rates(db: Database, feature: str, start: date, end: date) -> UsageRates | None:
    """The rates of ``feature`` over ``[start, end]``; None without days or tenants."""
    if end < start:
        return None
    since, _ = day_bounds(start)
    _, until = day_bounds(end)
    tenants = await active_tenants(db, since, until)
    if not tenants:
        return None
    users: dict[date, set[str]] = defaultdict(set)
    for tenant in tenants:
        for row in await tenant_rows(db, tenant, start, end):
            if row["feature_name"] == feature and row["usage_count"] > 0:
                users[row["metric_date"]].add(tenant)
    days = (end - start).days + 1
    each_day = (start + timedelta(days=n) for n in range(days))
    adopters = set().union(*users.values())
    return UsageRates(
        adoption=len(adopters) / len(tenants),
        daily_active=sum(len(users[day]) for day in each_day) / (days * len(tenants)),
        tenants=len(tenants),
        days=days,
    )
