"""Adoption and daily active usage of a feature, from the stored daily rows.

``rollout advance`` reads these at 100 %, where every tenant has the feature
and no experiment has a control arm to analyse (before, adoption is the
experiment's share of treatment tenants that used the feature). The seed's
"80%+ feature adoption rate among enabled tenants" and "60%+ daily active
usage rate" are measured as:

- adoption: the tenants with a use of the feature (``usage_count`` > 0 in
  ``phase3_business_metrics``) on any day of ``[start, end]``, over the tenants
  active in that period (a use of any feature on any of its days);
- daily active usage: the mean over the days of ``[start, end]`` of the share
  of the tenants active by that day (their first use in the period on or
  before it) with a use of the feature that day.

The candidates are ``impact_tenants()``'s (revisions 0005 and 0019), which
include every tenant ever assigned in an experiment, long gone ones too
(assignments are kept); only those with a use in the period count, so a
tenant that left is not a non-adopter for ever, and one that joined mid-period
is not absent before it joined. At 100 % every one of them has the feature. A
tenant that used no feature at all in the period is not counted, so both rates
are upper bounds when such tenants are still customers.
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
    """The rates of ``feature`` over ``[start, end]``; None without days or active tenants."""
    if end < start:
        return None
    since, _ = day_bounds(start)
    _, until = day_bounds(end)
    candidates = await active_tenants(db, since, until)
    users: dict[date, set[str]] = defaultdict(set)
    first_use: dict[str, date] = {}
    for tenant in candidates:
        for row in await tenant_rows(db, tenant, start, end):
            if row["usage_count"] <= 0:
                continue
            day = row["metric_date"]
            first_use[tenant] = min(day, first_use.get(tenant, day))
            if row["feature_name"] == feature:
                users[day].add(tenant)
    if not first_use:
        return None
    days = [start + timedelta(days=n) for n in range((end - start).days + 1)]
    shares = []
    for day in days:
        active = sum(1 for first in first_use.values() if first <= day)
        if active:  # a day before any tenant's first use says nothing
            shares.append(len(users[day]) / active)
    adopters = set().union(*users.values())
    return UsageRates(
        adoption=len(adopters) / len(first_use),
        daily_active=sum(shares) / len(shares),
        tenants=len(first_use),
        days=len(days),
    )
