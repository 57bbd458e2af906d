"""``experiment export`` then ``experiment analyze``, against real Postgres."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from services.cli import main
from services.common.database import Database
from services.common.flags.bucketing import in_treatment
from services.impact.experiment import REQUIRED_COLUMNS, USED

START, END = date(2026, 11, 10), date(2026, 11, 16)
FEATURE = "ai_coaching"
#: tenant -> (variant, bucket, revenue per day of the window, or 0 for no row)
TENANTS = {
    "t-control-1": ("control", 5000, 0.0),
    "t-control-2": ("control", 6000, 0.0),
    "t-control-3": ("control", 7000, 0.0),
    "t-treat-1": ("treatment", 100, 20.0),
    "t-treat-2": ("treatment", 200, 30.0),
    # Exposed at 10 %, in treatment once the rollout reached 25 % (bucket < 2500).
    "t-nested": ("control", 1500, 0.0),
}


async def _seed(owner_db: Database) -> None:
    async with owner_db.unscoped() as conn:
        for tenant, (variant, bucket, revenue) in TENANTS.items():
            await conn.execute(
                "INSERT INTO ab_test_assignments (tenant_id, feature_name, variant, bucket, "
                "rollout_percentage, assigned_at) VALUES ($1, $2, $3, $4, 10, $5)",
                tenant,
                FEATURE,
                variant,
                bucket,
                datetime(2026, 11, 1, tzinfo=UTC),
            )
            for offset in range(7) if revenue else ():
                await conn.execute(
                    "INSERT INTO phase3_business_metrics (tenant_id, metric_date, feature_name, "
                    "usage_count, success_count, revenue_impact) VALUES ($1, $2, $3, 2, 1, $4)",
                    tenant,
                    START + timedelta(days=offset),
                    FEATURE,
                    revenue,
                )
        # Outside the window, another feature, an exposure after the window: none count.
        await conn.execute(
            "INSERT INTO phase3_business_metrics (tenant_id, metric_date, feature_name, "
            "usage_count, revenue_impact) VALUES ('t-treat-1', $1, $2, 5, 999), "
            "('t-treat-1', $3, 'property_vision', 5, 999)",
            END + timedelta(days=1),
            FEATURE,
            START,
        )
        await conn.execute(
            "INSERT INTO ab_test_assignments (tenant_id, feature_name, variant, bucket, "
            "assigned_at) VALUES ('t-late', $1, 'treatment', 10, $2)",
            FEATURE,
            datetime(2026, 11, 17, 1, tzinfo=UTC),
        )


def _export(*extra: str) -> list[str]:
    return [
        "experiment", "export", "--feature", FEATURE,
        "--start", START.isoformat(), "--end", END.isoformat(), *extra,
    ]  # fmt: skip


async def test_export_then_analyze_gives_the_stored_variants(
    settings_env: dict[str, str],
    owner_db: Database,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await _seed(owner_db)
    out = tmp_path / "units.csv"
    assert await asyncio.to_thread(main, _export("--out", str(out))) == 0
    assert "6 unit(s) of ai_coaching" in capsys.readouterr().err
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert tuple(rows[0])[:3] == REQUIRED_COLUMNS
    assert {row["unit_id"]: (row["variant"], float(row["value"])) for row in rows} == {
        tenant: (variant, 7 * revenue) for tenant, (variant, _, revenue) in TENANTS.items()
    }
    argv = ["experiment", "analyze", "--input", str(out), "--expected-split", "0.1"]
    assert await asyncio.to_thread(main, argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["n_control"], result["n_treatment"]) == (4, 2)
    assert result["mean_treatment"] == pytest.approx(7 * 25.0)
    assert result["adoption"] == 1.0


async def test_a_percentage_recomputes_variants_from_the_buckets(
    settings_env: dict[str, str], owner_db: Database, capsys: pytest.CaptureFixture[str]
) -> None:
    await _seed(owner_db)
    assert await asyncio.to_thread(main, _export("--percentage", "25")) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    variants = {row["unit_id"]: row["variant"] for row in rows}
    assert variants == {
        tenant: "treatment" if in_treatment(bucket, 25) else "control"
        for tenant, (_, bucket, _) in TENANTS.items()
    }
    assert variants["t-nested"] == "treatment"
    assert {row[USED] for row in rows if row["unit_id"] == "t-nested"} == {"0"}


async def test_export_pipes_into_analyze(
    settings_env: dict[str, str],
    owner_db: Database,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await _seed(owner_db)
    assert await asyncio.to_thread(main, _export()) == 0
    exported = capsys.readouterr().out
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(exported.encode())))
    argv = ["experiment", "analyze", "--input", "-", "--expected-split", "0.1"]
    assert await asyncio.to_thread(main, argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert (result["n_control"], result["n_treatment"]) == (4, 2)


async def test_export_reads_each_tenant_in_its_own_scope(
    settings_env: dict[str, str], owner_db: Database, db: Database
) -> None:
    # Under the application role a tenant's transaction sees its own rows only:
    # another tenant's metrics never reach its unit.
    from services.impact.export import tenant_unit

    await _seed(owner_db)
    unit = await tenant_unit(
        db, "t-control-1", feature=FEATURE, start=START, end=END, value="revenue_impact"
    )
    assert unit is not None
    assert (unit.variant, unit.value, unit.used) == ("control", 0.0, False)
    assert (
        await tenant_unit(db, "t-late", feature=FEATURE, start=START, end=END, value="usage_count")
        is None
    )
