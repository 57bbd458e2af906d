"""``experiment analyze``, ``impact aggregate`` and ``impact report`` against real Postgres."""

from __future__ import annotations

import asyncio
import csv
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from services.cli import main
from services.common.database import Database
from services.impact.aggregate import aggregate_day
from services.impact.assumptions import ASSUMPTIONS, PRIMARY_METRICS

DAY = date(2026, 11, 20)


async def _cli(*argv: str) -> int:
    return await asyncio.to_thread(main, list(argv))


def _write_csv(path: Path, control: np.ndarray, treatment: np.ndarray, pre: bool = False) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["unit_id", "variant", "value", *(["pre_value"] if pre else [])])
        for arm, values in (("control", control), ("treatment", treatment)):
            for index, value in enumerate(values):
                extra = [value * 0.8 + 1] if pre else []
                writer.writerow([f"{arm}-{index}", arm, repr(float(value)), *extra])


async def test_analyze_prints_the_issue_fields_matching_scipy(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(3)
    control, treatment = rng.gamma(2, 40, 240), rng.gamma(2, 44, 260)
    path = tmp_path / "units.csv"
    _write_csv(path, control, treatment, pre=True)
    assert (
        await _cli(
            "experiment",
            "analyze",
            "--input",
            str(path),
            "--expected-split",
            "0.5",
            "--alpha",
            "0.05",
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    reference = scipy_stats.ttest_ind(treatment, control, equal_var=False)
    assert (out["n_control"], out["n_treatment"]) == (240, 260)
    assert abs(out["p_value"] - reference.pvalue) < 1e-9
    low, high = reference.confidence_interval(0.95)
    assert abs(out["diff_ci_low"] - low) < 1e-9
    assert abs(out["diff_ci_high"] - high) < 1e-9
    assert abs(out["mean_treatment"] - treatment.mean()) < 1e-9
    for key in ("lift", "lift_ci_low", "lift_ci_high", "srm_p_value", "seq_diff_ci_low", "mde"):
        assert isinstance(out[key], float)
    assert out["cuped"]["variance_reduction"] > 0.99


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("unit_id,variant\nu1,control\n", "missing column(s): value"),
        (
            "unit_id,variant,value\nu1,control,1\nu1,treatment,2\n",
            "line 3: unit 'u1' appears twice",
        ),
        ("unit_id,variant,value\nu1,control,abc\n", "line 2: value 'abc' is not a number"),
        ("unit_id,variant,value\nu1,placebo,1\n", "line 2: variant must be"),
        ("unit_id,variant,value\nu1,control,inf\n", "must be finite"),
        ("unit_id,variant,value\nu1,control,1\nu2,treatment,1\n", "at least 2"),
    ],
)
async def test_bad_input_is_one_clear_line(
    tmp_path: Path, content: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(content)
    assert await _cli("experiment", "analyze", "--input", str(path), "--expected-split", "0.5") == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("line", [1, 2], ids=["header", "row"])
async def test_a_field_over_the_csv_modules_limit_is_one_clear_line(
    tmp_path: Path, line: int, capsys: pytest.CaptureFixture[str]
) -> None:
    # The csv module's own refusal was a traceback.
    rows = ["unit_id,variant,value", "u1,control,1"]
    rows[line - 1] += "x" * 200_000
    path = tmp_path / "long.csv"
    path.write_text("\n".join(rows) + "\n")
    assert await _cli("experiment", "analyze", "--input", str(path), "--expected-split", "0.5") == 2
    err = capsys.readouterr().err
    assert f"line {line}: field larger than field limit" in err
    assert "Traceback" not in err


async def test_used_column_gives_the_adoption(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "units.csv"
    rows = ["unit_id,variant,value,used"]
    rows += [f"c{i},control,{i % 7},0" for i in range(10)]
    rows += [f"t{i},treatment,{i % 5},{int(i < 6)}" for i in range(8)]
    path.write_text("\n".join(rows) + "\n")
    assert await _cli("experiment", "analyze", "--input", str(path), "--expected-split", "0.5") == 0
    assert json.loads(capsys.readouterr().out)["adoption"] == 0.75
    path.write_text("unit_id,variant,value,used\nc1,control,1,0\nt1,treatment,1,yes\n")
    assert await _cli("experiment", "analyze", "--input", str(path), "--expected-split", "0.5") == 2
    assert "used must be 0 or 1" in capsys.readouterr().err


async def test_store_records_the_result(
    settings_env: dict[str, str],
    tmp_path: Path,
    owner_db: Database,
    capsys: pytest.CaptureFixture[str],
) -> None:
    rng = np.random.default_rng(4)
    path = tmp_path / "units.csv"
    _write_csv(path, rng.normal(10, 2, 50), rng.normal(11, 2, 50))
    code = await _cli(
        "experiment",
        "analyze",
        "--input",
        str(path),
        "--expected-split",
        "0.5",
        "--store",
        "--feature",
        "ai_coaching",
        "--metric",
        "revenue_impact",
        "--window-start",
        "2026-11-01",
        "--window-end",
        "2026-11-07",
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    async with owner_db.unscoped() as conn:
        row = await conn.fetchrow("SELECT feature_name, metric, result FROM experiment_results")
    assert row["feature_name"] == "ai_coaching"
    assert row["result"]["p_value"] == printed["p_value"]
    # Without --metric the result is the feature's primary metric's, the one
    # `rollout advance` and the reports read.
    code = await _cli(
        "experiment", "analyze", "--input", str(path), "--expected-split", "0.5", "--store",
        "--feature", "ai_coaching", "--window-start", "2026-11-01", "--window-end", "2026-11-07",
    )  # fmt: skip
    assert code == 0
    async with owner_db.unscoped() as conn:
        metrics = await conn.fetch("SELECT metric FROM experiment_results ORDER BY result_id")
    assert [r["metric"] for r in metrics] == ["revenue_impact", PRIMARY_METRICS["ai_coaching"]]


async def _seed_activity(owner_db: Database) -> None:
    at = datetime(2026, 11, 20, 12, tzinfo=UTC)
    async with owner_db.unscoped() as conn:
        for tenant, count in (("tenant-a", 4), ("tenant-b", 2)):
            for index in range(count):
                await conn.execute(
                    "INSERT INTO realtime_intelligence_events (tenant_id, lead_id, event_type, "
                    "intelligence_data, websocket_latency_seconds, created_at, published_at) "
                    "VALUES ($1, $2, 'lead.created', '{}'::jsonb, $3, $4, $5)",
                    tenant,
                    f"lead-{index}",
                    0.01 * (index + 1),
                    at,
                    at if index else None,
                )
        await conn.execute(
            "INSERT INTO coaching_sessions (tenant_id, agent_id, analysis_data, coaching_insights, "
            "analysis_latency_seconds, created_at) VALUES ('tenant-a', 'agent-1', '{}'::jsonb, "
            "'[\"slow down\"]'::jsonb, 1.2, $1)",
            at,
        )
        # The day after: not part of DAY.
        await conn.execute(
            "INSERT INTO coaching_sessions (tenant_id, agent_id, analysis_data, coaching_insights, "
            "created_at) VALUES ('tenant-c', 'agent-1', '{}'::jsonb, '[]'::jsonb, $1)",
            at + timedelta(days=1),
        )


async def test_aggregate_writes_one_row_per_tenant_feature_day_and_is_idempotent(
    settings_env: dict[str, str],
    owner_db: Database,
    db: Database,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await _seed_activity(owner_db)
    assert await _cli("impact", "aggregate", "--date", DAY.isoformat()) == 0
    assert "3 row(s) for 2 tenant(s)" in capsys.readouterr().out
    query = (
        "SELECT tenant_id, feature_name, usage_count, success_count, revenue_impact::float8 AS r, "
        "operating_cost::float8 AS c, performance_p50_seconds AS p50, "
        "performance_p99_seconds AS p99 FROM phase3_business_metrics ORDER BY 1, 2"
    )
    async with owner_db.unscoped() as conn:
        first = [dict(r) for r in await conn.fetch(query)]
    assert [
        (r["tenant_id"], r["feature_name"], r["usage_count"], r["success_count"]) for r in first
    ] == [
        ("tenant-a", "ai_coaching", 1, 1),
        ("tenant-a", "realtime_intelligence", 4, 3),
        ("tenant-b", "realtime_intelligence", 2, 1),
    ]
    realtime = ASSUMPTIONS["realtime_intelligence"]
    assert first[1]["r"] == pytest.approx(4 * realtime.lift * realtime.value_per_unit)
    assert first[1]["c"] == pytest.approx(4 * realtime.api_cost_per_use)
    assert first[1]["p50"] == pytest.approx(0.025)
    # Re-running gives the same rows.
    assert await _cli("impact", "aggregate", "--date", DAY.isoformat()) == 0
    async with owner_db.unscoped() as conn:
        assert [dict(r) for r in await conn.fetch(query)] == first
    # Under the application role a tenant sees only its own rows.
    async with db.tenant("tenant-b") as conn:
        assert await conn.fetchval("SELECT count(*) FROM phase3_business_metrics") == 1


async def test_report_sums_stored_rows_with_assumed_then_measured_lift(
    settings_env: dict[str, str],
    owner_db: Database,
    db: Database,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await _seed_activity(owner_db)
    await aggregate_day(db, DAY, ASSUMPTIONS)
    assert await _cli("impact", "report", "--start", DAY.isoformat(), "--days", "7") == 0
    report = json.loads(capsys.readouterr().out)
    realtime = report["features"]["realtime_intelligence"]
    a = ASSUMPTIONS["realtime_intelligence"]
    assert realtime["usage"] == 6
    assert realtime["lift_source"] == "assumed"
    assert realtime["revenue"]["point"] == pytest.approx(6 * a.lift * a.value_per_unit)
    assert realtime["revenue"]["high"] == pytest.approx(6 * a.lift_high * a.value_per_unit)
    # Infrastructure for each of the 7 days, not only the one with rows.
    cost = 6 * a.api_cost_per_use + 7 * a.infra_cost_per_day
    assert realtime["operating_cost"] == pytest.approx(cost, abs=0.01)
    assert realtime["roi"]["low"] <= realtime["roi"]["point"] <= realtime["roi"]["high"]
    total = report["total_platform"]
    assert total["projected_annual_revenue"]["point"] == pytest.approx(
        total["revenue"]["point"] * 365 / 7
    )
    async with owner_db.unscoped() as conn:
        await conn.execute(
            "INSERT INTO experiment_results (feature_name, metric, window_start, window_end, "
            "result) VALUES ('realtime_intelligence', $1, $2, $2, $3)",
            PRIMARY_METRICS["realtime_intelligence"],
            DAY,
            {"lift": 0.08, "lift_ci_low": 0.02, "lift_ci_high": 0.14},
        )
    assert await _cli("impact", "report", "--start", DAY.isoformat(), "--days", "7") == 0
    measured = json.loads(capsys.readouterr().out)["features"]["realtime_intelligence"]
    assert measured["lift_source"] == "measured"
    assert measured["revenue"]["low"] == pytest.approx(6 * 0.02 * a.value_per_unit)
    assert measured["revenue"]["point"] == pytest.approx(6 * 0.08 * a.value_per_unit)


async def test_operating_cost_is_the_tenants_claude_ledger_when_it_reports(
    settings_env: dict[str, str], owner_db: Database, db: Database
) -> None:
    await _seed_activity(owner_db)
    at = datetime(2026, 11, 20, 12, tzinfo=UTC)
    async with owner_db.unscoped() as conn:
        for tenant, cost, when in (
            ("tenant-a", 12_000, at),
            ("tenant-a", 345, at),
            ("tenant-b", 999_999, at),  # another tenant's calls
            ("tenant-a", 777_777, at + timedelta(days=1)),  # another day
        ):
            await conn.execute(
                "INSERT INTO claude_cost_ledger (tenant_id, feature, model, cost_micro_usd, "
                "created_at) VALUES ($1, 'ai_coaching', 'claude-test', $2, $3)",
                tenant,
                cost,
                when,
            )
    await aggregate_day(db, DAY, ASSUMPTIONS)
    async with owner_db.unscoped() as conn:
        costs = {
            (r["tenant_id"], r["feature_name"]): r["c"]
            for r in await conn.fetch(
                "SELECT tenant_id, feature_name, operating_cost::float8 AS c "
                "FROM phase3_business_metrics"
            )
        }
    # The ledger's 12,345 micro-dollars, not 1 use x the assumed per-use cost.
    assert costs["tenant-a", "ai_coaching"] == pytest.approx(0.0123)
    assert ASSUMPTIONS["ai_coaching"].api_cost_per_use != pytest.approx(0.0123)
    # A feature that reports nothing to the ledger keeps the assumption.
    realtime = ASSUMPTIONS["realtime_intelligence"]
    assert costs["tenant-a", "realtime_intelligence"] == pytest.approx(
        4 * realtime.api_cost_per_use
    )


async def test_the_report_says_how_much_of_the_cost_is_estimated(
    settings_env: dict[str, str],
    owner_db: Database,
    db: Database,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await _seed_activity(owner_db)
    at = datetime(2026, 11, 20, 12, tzinfo=UTC)
    async with owner_db.unscoped() as conn:
        # One billed call, and one that timed out: booked at its upper bound,
        # with unknown tokens (services/common/claude/estimate.py).
        await conn.execute(
            "INSERT INTO claude_cost_ledger (tenant_id, feature, model, cost_micro_usd, "
            "created_at) VALUES ('tenant-a', 'ai_coaching', 'claude-test', 1250000, $1)",
            at,
        )
        await conn.execute(
            "INSERT INTO claude_cost_ledger (tenant_id, feature, model, cost_micro_usd, "
            "created_at, outcome, input_tokens, output_tokens, cache_write_tokens, "
            "cache_read_tokens, input_tokens_bound, output_tokens_bound) "
            "VALUES ('tenant-a', 'ai_coaching', 'claude-test', 2500000, $1, 'timeout', "
            "NULL, NULL, NULL, NULL, 500000, 2048)",
            at,
        )
    await aggregate_day(db, DAY, ASSUMPTIONS)
    async with db.tenant("tenant-a") as conn:
        stored = await conn.fetchrow(
            "SELECT operating_cost::float8 AS cost, estimated_operating_cost::float8 AS estimated "
            "FROM phase3_business_metrics WHERE feature_name = 'ai_coaching'"
        )
    assert (stored["cost"], stored["estimated"]) == pytest.approx((3.75, 2.5))
    assert await _cli("impact", "report", "--start", DAY.isoformat(), "--days", "1") == 0
    report = json.loads(capsys.readouterr().out)
    coaching = report["features"]["ai_coaching"]
    infra = ASSUMPTIONS["ai_coaching"].infra_cost_per_day
    assert coaching["operating_cost"] == pytest.approx(3.75 + infra, abs=0.01)
    assert coaching["estimated_operating_cost"] == pytest.approx(2.5)
    assert report["features"]["realtime_intelligence"]["estimated_operating_cost"] == 0
    assert report["total_platform"]["estimated_operating_cost"] == pytest.approx(2.5)


async def test_a_day_of_claude_spend_without_results_still_counts(
    settings_env: dict[str, str], owner_db: Database, db: Database
) -> None:
    # tenant-d's only activity of the day: vision calls that all timed out,
    # booked at their estimate, with no analysis stored and no flag exposure.
    at = datetime(2026, 11, 20, 12, tzinfo=UTC)
    async with owner_db.unscoped() as conn:
        await conn.execute(
            "INSERT INTO claude_cost_ledger (tenant_id, feature, model, cost_micro_usd, "
            "created_at, outcome, input_tokens, output_tokens, cache_write_tokens, "
            "cache_read_tokens, input_tokens_bound, output_tokens_bound) "
            "VALUES ('tenant-d', 'property_vision', 'claude-test', 40000, $1, 'timeout', "
            "NULL, NULL, NULL, NULL, 3000, 2048)",
            at,
        )
    totals = await aggregate_day(db, DAY, ASSUMPTIONS)
    assert (totals.tenants, totals.rows) == (1, 1)
    async with db.tenant("tenant-d") as conn:
        row = await conn.fetchrow(
            "SELECT feature_name, usage_count, success_count, revenue_impact::float8 AS r, "
            "operating_cost::float8 AS c, estimated_operating_cost::float8 AS e, "
            "performance_p95_seconds AS p95 FROM phase3_business_metrics"
        )
    assert dict(row) == {
        "feature_name": "property_vision",
        "usage_count": 0,
        "success_count": 0,
        "r": 0.0,
        "c": pytest.approx(0.04),
        "e": pytest.approx(0.04),
        "p95": None,
    }


@pytest.mark.parametrize("days", ["0", "-3", "3661", "seven"])
async def test_report_refuses_a_period_that_is_not_one_to_3660_days(
    days: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # --days 0 divided by zero (a traceback); --days -3 reported a period whose
    # end came before its start.
    with pytest.raises(SystemExit) as exited:
        await _cli("impact", "report", "--start", "2026-12-01", "--days", days)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --days: '{days}' is not a number of days between 1 and 3660" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("days", ["0", "91", "week"])
async def test_aggregate_restates_one_to_90_days(
    days: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        await _cli("impact", "aggregate", "--date", "2026-11-20", "--days", days)
    assert exited.value.code == 2
    assert f"'{days}' is not a number of days between 1 and 90" in capsys.readouterr().err


@pytest.mark.parametrize("units", ["0", "-5", "10000001", "many"])
async def test_planned_units_outside_1_to_the_row_limit_are_usage_errors(
    units: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # 0 was a ZeroDivisionError traceback, -5 "math domain error".
    with pytest.raises(SystemExit) as exited:
        await _cli("experiment", "analyze", "--input", "x.csv", "--planned-units", units)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"'{units}' is not a number of units between 1 and 10000000" in err
    assert "Traceback" not in err


async def test_the_expected_split_has_no_default(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # A default of 0.5 was wrong at the 10 %, 25 % and 100 % stages: 180 control
    # and 20 treatment tenants at 10 % came out as a sample-ratio mismatch of
    # p = 1e-29, which `rollout advance` then read as a broken split.
    path = tmp_path / "units.csv"
    rows = ["unit_id,variant,value"]
    rows += [f"c{i},control,{i % 7}" for i in range(180)]
    rows += [f"t{i},treatment,{i % 5}" for i in range(20)]
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(SystemExit) as exited:
        await _cli("experiment", "analyze", "--input", str(path))
    assert exited.value.code == 2
    assert "--expected-split" in capsys.readouterr().err
    assert await _cli("experiment", "analyze", "--input", str(path), "--expected-split", "0.1") == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["expected_split"], out["srm_detected"]) == (0.1, False)
    assert out["srm_p_value"] == pytest.approx(1.0)


@pytest.mark.parametrize("option", ["--alpha", "--expected-split"])
@pytest.mark.parametrize("value", ["0", "1", "nan", "-0.5", "half"])
async def test_probabilities_outside_0_to_1_exclusive_are_usage_errors(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        await _cli("experiment", "analyze", "--input", "x.csv", option, value)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {option}: '{value}' must be strictly between 0 and 1" in err


@pytest.mark.parametrize(
    "argv",
    [
        ("impact", "report", "--start", "9999-12-31"),
        ("impact", "aggregate", "--date", "9999-12-31"),
        ("impact", "aggregate", "--date", "0001-01-01"),
        ("experiment", "analyze", "--input", "x.csv", "--window-start", "0001-01-01"),
    ],
    ids=["report-overflow", "aggregate-overflow", "aggregate-year-1", "window-year-1"],
)
async def test_days_outside_2000_to_a_year_ahead_are_usage_errors(
    argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    # 9999-12-31 plus a period overflowed (a traceback); 0001-01-01 and
    # 9999-12-31 went to Postgres as asyncpg's -infinity and infinity.
    with pytest.raises(SystemExit) as exited:
        await _cli(*argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"'{argv[-1]}' is not a day from 2000-01-01 to a year from today" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("window", "metric", "message"),
    [
        (("2026-11-07", "2026-11-01"), "revenue_impact", "--window-end is before --window-start"),
        (("2026-11-01", "2026-11-07"), "m" * 101, "--metric must be 1-100 characters"),
        (("2026-11-01", "2026-11-07"), "   ", "--metric must be 1-100 characters"),
    ],
    ids=["reversed-window", "long-metric", "blank-metric"],
)
async def test_store_refuses_what_the_table_would_refuse_before_printing(
    settings_env: dict[str, str],
    tmp_path: Path,
    owner_db: Database,
    capsys: pytest.CaptureFixture[str],
    window: tuple[str, str],
    metric: str,
    message: str,
) -> None:
    # experiment_results refused these rows after the analysis was printed:
    # a CheckViolationError or StringDataRightTruncationError traceback.
    rng = np.random.default_rng(5)
    path = tmp_path / "units.csv"
    _write_csv(path, rng.normal(10, 2, 20), rng.normal(11, 2, 20))
    code = await _cli(
        "experiment", "analyze", "--input", str(path), "--expected-split", "0.5", "--store",
        "--feature", "ai_coaching", "--metric", metric,
        "--window-start", window[0], "--window-end", window[1],
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 2
    assert message in captured.err
    assert "Traceback" not in captured.err
    assert captured.out == ""
    async with owner_db.unscoped() as conn:
        assert await conn.fetchval("SELECT count(*) FROM experiment_results") == 0
