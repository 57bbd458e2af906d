"""``enterprisehub experiment export``: the units ``experiment analyze`` reads, from stored rows.

One row per tenant exposed to the feature before the window's end (its first
exposure in ``ab_test_assignments``, ``user_id`` ``'*'``: randomisation is by
tenant), in the CSV shape of ``services.impact.experiment`` (its column
names): ``unit_id`` (the tenant), ``variant``, ``value`` and ``used``.

- ``variant``: the one recorded at first exposure; with ``--percentage P``
  (the rollout's percentage during the window) it is recomputed from the
  stored bucket (``in_treatment``), since a tenant first exposed as control at
  10 % is in treatment at 25 % (nested rollouts), as the exposures' bucket
  was kept for. An exposure without a bucket keeps its recorded variant.
- ``value``: the sum over the window's days of one column of the tenant's
  ``phase3_business_metrics`` rows for the feature (``--value``, the seed's
  A/B analysis joins the two tables the same way); 0 for a tenant without a
  row, which is what the aggregate writes for a day without use.
- ``used``: 1 when the tenant used the feature in the window (usage > 0), the
  adoption ``analyze`` reports.

Tenants are listed by ``impact_tenants`` (ids only) and each is read in its
own row-level-security transaction, as the report does; rows come out sorted
by tenant id.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from typing import Final, TextIO

from services.common.database import Database
from services.common.flags.bucketing import in_treatment
from services.common.flags.exposure import TENANT_UNIT
from services.impact.aggregate import active_tenants, day_bounds
from services.impact.experiment import UNIT_ID, USED, VALUE, VARIANT

#: ``--value``: the ``phase3_business_metrics`` columns a unit's value may sum.
VALUE_COLUMNS: Final = ("revenue_impact", "usage_count", "success_count", "operating_cost")

_UNIT_QUERY: Final = {
    column: (
        "SELECT a.variant, a.bucket, "  # noqa: S608 - a column of VALUE_COLUMNS only
        f"coalesce(sum(m.{column}), 0)::float8 AS value, "
        "coalesce(sum(m.usage_count), 0) AS usage "
        "FROM ab_test_assignments a LEFT JOIN phase3_business_metrics m "
        "ON m.feature_name = a.feature_name AND m.metric_date BETWEEN $3 AND $4 "
        "WHERE a.feature_name = $1 AND a.user_id = $2 AND a.assigned_at < $5 "
        "GROUP BY a.variant, a.bucket"
    )
    for column in VALUE_COLUMNS
}


@dataclass(frozen=True, slots=True)
class Unit:
    """One tenant of the experiment."""

    tenant_id: str
    variant: str
    value: float
    used: bool


async def tenant_unit(
    db: Database,
    tenant_id: str,
    *,
    feature: str,
    start: date,
    end: date,
    value: str,
    percentage: float | None = None,
) -> Unit | None:
    """``tenant_id``'s unit, or None when it was not exposed before the window's end."""
    _, until = day_bounds(end)
    async with db.tenant(tenant_id) as conn:
        row = await conn.fetchrow(_UNIT_QUERY[value], feature, TENANT_UNIT, start, end, until)
    if row is None:
        return None
    variant = row["variant"]
    if percentage is not None and row["bucket"] is not None:
        variant = "treatment" if in_treatment(row["bucket"], percentage) else "control"
    return Unit(tenant_id, variant, float(row["value"]), int(row["usage"]) > 0)


async def export_units(
    db: Database,
    *,
    feature: str,
    start: date,
    end: date,
    value: str,
    percentage: float | None = None,
) -> list[Unit]:
    """Every exposed tenant's unit for ``[start, end]``, by tenant id."""
    if value not in VALUE_COLUMNS:
        raise ValueError(f"value must be one of {', '.join(VALUE_COLUMNS)}, not {value!r}")
    since, _ = day_bounds(start)
    _, until = day_bounds(end)
    units = []
    for tenant_id in await active_tenants(db, since, until):
        unit = await tenant_unit(
            db,
            tenant_id,
            feature=feature,
            start=start,
            end=end,
            value=value,
            percentage=percentage,
        )
        if unit is not None:
            units.append(unit)
    return units


def write_units(units: Iterable[Unit], out: TextIO) -> int:
    """Write ``units`` as the CSV ``read_units`` reads; return how many."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow((UNIT_ID, VARIANT, VALUE, USED))
    written = 0
    for unit in units:
        writer.writerow((unit.tenant_id, unit.variant, repr(unit.value), int(unit.used)))
        written += 1
    return written
