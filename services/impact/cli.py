"""``enterprisehub experiment ...`` and ``enterprisehub impact ...``.

    enterprisehub experiment export --feature F --start YYYY-MM-DD --end YYYY-MM-DD
                                    [--value revenue_impact] [--percentage P] [--out FILE]
    enterprisehub experiment analyze --input FILE.csv --expected-split SHARE [--alpha 0.05]
                                     [--planned-units N] [--store --feature F [--metric M]
                                      --window-start D --window-end D]
    enterprisehub impact aggregate --date YYYY-MM-DD [--days 7]
    enterprisehub impact report --start YYYY-MM-DD [--days 7]
    enterprisehub retention prune [--tenant T ...]

``experiment export`` writes the units of a window from the stored exposures
and aggregates (services/impact/export.py) as the CSV ``analyze`` reads, to
``--out`` or standard output (``--input -`` reads it there: ``export |
analyze``). ``experiment analyze`` prints the analysis as JSON (the fields of
``services.impact.stats.analyze``). ``--expected-split`` has no default: it is
the treatment share the rollout assigned during the window (0.10 at 10 %), and
a default of 0.5 was wrong at every stage but one (its sample-ratio test then
flagged every honest 10 % experiment); ``rollout advance`` recomputes that
test against its stage's share anyway. ``--store`` also records it in
``experiment_results``, where ``rollout advance`` and the reports read it:
both read only the feature's primary metric (``PRIMARY_METRICS``, the
default ``--metric``); a result of another metric is shown, never decisive.
``impact aggregate`` is the daily CronJob (idempotent): it rewrites the
week ending with ``--date``, so outcomes reported days late (a churn lead's
answer) reach their day's row; ``impact report``
prints the seed's weekly summary (any number of days) from stored rows.
``retention prune`` is the other daily CronJob (idempotent): it deletes the
per-event rows older than RETENTION_EVENT_DAYS and the aggregates older than
RETENTION_METRIC_DAYS (services/impact/retention.py says which tables and why),
and prints what it deleted per table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from services.cli import EXIT_USAGE, CommandError, number_argument, unreachable
from services.common.database import Database, DatabaseUnavailable
from services.impact.aggregate import RESTATED_DAYS, aggregate_days, day_bounds
from services.impact.assumptions import PRIMARY_METRICS
from services.impact.config import ImpactSettings
from services.impact.experiment import MAX_ROWS, STDIN, InputError, read_units
from services.impact.export import VALUE_COLUMNS, export_units, write_units
from services.impact.report import measured_lifts, platform_rows, summarize
from services.impact.retention import Cutoffs, prune
from services.impact.stats import DEFAULT_PLANNED_UNITS, analyze
from services.operator_cli import feature_argument, tenant_argument

#: The days a command accepts: from this one to a year ahead. Beyond, a day
#: was a traceback (``date`` overflows past 9999 when a period is added) or
#: stored as asyncpg's infinities (0001-01-01 and 9999-12-31 are its -/+infinity).
EARLIEST_DAY = date(2000, 1, 1)
MAX_DAYS_AHEAD = 366


def _day(value: str) -> date:
    today = datetime.now(UTC).date()
    if value in {"today", "yesterday"}:
        # The CronJob passes "yesterday": the UTC day that has just ended.
        return today if value == "today" else today - timedelta(days=1)
    try:
        day = date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date (YYYY-MM-DD)") from None
    if not EARLIEST_DAY <= day <= today + timedelta(days=MAX_DAYS_AHEAD):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a day from {EARLIEST_DAY} to a year from today"
        )
    return day


_percentage = number_argument(float, 0.0, 100.0, "is not a percentage (0-100)")
_probability = number_argument(float, 0.0, 1.0, "must be strictly between 0 and 1", exclusive=True)


#: experiment_results.metric is varchar(100).
MAX_METRIC_CHARS = 100
#: Ten years: a report longer than that is a typo.
MAX_REPORT_DAYS = 3660


_days = number_argument(
    int, 1, MAX_REPORT_DAYS, f"is not a number of days between 1 and {MAX_REPORT_DAYS}"
)
#: Most days one ``impact aggregate`` rewrites: a typo must not restate years.
MAX_RESTATED_DAYS = 90
_restated_days = number_argument(
    int, 1, MAX_RESTATED_DAYS, f"is not a number of days between 1 and {MAX_RESTATED_DAYS}"
)
# --planned-units 0 divided by zero and a negative count was a math domain error.
_planned_units = number_argument(
    int, 1, MAX_ROWS, f"is not a number of units between 1 and {MAX_ROWS}"
)


async def _database(settings: ImpactSettings) -> Database:
    return await Database.open(
        settings.database_url.get_secret_value(),
        max_size=2,
        acquire_timeout=10,
        application_name="enterprisehub-impact",
    )


def _run(coroutine: Any) -> Any:
    try:
        return asyncio.run(coroutine)
    except DatabaseUnavailable as exc:
        raise CommandError(
            "cannot reach Postgres: "
            + unreachable(exc, "check that it is up and that DATABASE_URL points at it")
        ) from None


def _analyze(args: argparse.Namespace) -> int:
    if args.store and not (args.feature and args.window_start and args.window_end):
        raise CommandError("--store needs --feature, --window-start and --window-end", EXIT_USAGE)
    if args.store and args.metric is None:
        args.metric = PRIMARY_METRICS[args.feature]
    # Checked before the analysis is printed: experiment_results would refuse
    # the row afterwards (its CHECK and varchar(100)) with a traceback.
    if args.store and args.window_end < args.window_start:
        raise CommandError("--window-end is before --window-start", EXIT_USAGE)
    if args.store and not (args.metric.strip() and len(args.metric) <= MAX_METRIC_CHARS):
        raise CommandError(f"--metric must be 1-{MAX_METRIC_CHARS} characters", EXIT_USAGE)
    try:
        units = read_units(args.input)
        pre = (
            (units.pre_control, units.pre_treatment)
            if units.pre_control is not None and units.pre_treatment is not None
            else None
        )
        result = analyze(
            units.control,
            units.treatment,
            alpha=args.alpha,
            expected_split=args.expected_split,
            pre=pre,
            planned_units=args.planned_units,
        )
    except (InputError, ValueError) as exc:
        raise CommandError(f"experiment analyze: {exc}", EXIT_USAGE) from None
    if units.adoption is not None:
        result["adoption"] = units.adoption
    print(json.dumps(result, indent=2, sort_keys=True))
    if args.store:
        settings = ImpactSettings.from_env()

        async def store() -> None:
            db = await _database(settings)
            try:
                async with db.unscoped() as conn:
                    await conn.execute(
                        "INSERT INTO experiment_results (feature_name, metric, window_start, "
                        "window_end, result) VALUES ($1, $2, $3, $4, $5)",
                        args.feature,
                        args.metric,
                        args.window_start,
                        args.window_end,
                        result,
                    )
            finally:
                await db.close()

        _run(store())
    return 0


def _cutoffs(settings: ImpactSettings) -> Cutoffs:
    """What retention keeps from now on (RETENTION_EVENT_DAYS, RETENTION_METRIC_DAYS)."""
    return Cutoffs.of(
        datetime.now(UTC),
        event_days=settings.retention_event_days,
        metric_days=settings.retention_metric_days,
    )


def _export(args: argparse.Namespace) -> int:
    if args.end < args.start:
        raise CommandError("--end is before --start", EXIT_USAGE)
    settings = ImpactSettings.from_env()

    async def run() -> Any:
        db = await _database(settings)
        try:
            return await export_units(
                db,
                feature=args.feature,
                start=args.start,
                end=args.end,
                value=args.value,
                percentage=args.percentage,
            )
        finally:
            await db.close()

    units = _run(run())
    if args.out is None:
        write_units(units, sys.stdout)
    else:
        with args.out.open("w", newline="", encoding="utf-8") as out:
            write_units(units, out)
    treatment = sum(unit.variant == "treatment" for unit in units)
    print(
        f"experiment export: {len(units)} unit(s) of {args.feature} from {args.start} to "
        f"{args.end}: {len(units) - treatment} control, {treatment} treatment",
        file=sys.stderr,
    )
    return 0


def _aggregate(args: argparse.Namespace) -> int:
    settings = ImpactSettings.from_env()
    # A day whose events were pruned would be rewritten as a day without activity.
    first = args.date - timedelta(days=args.days - 1)
    kept_since = _cutoffs(settings).events
    if day_bounds(first)[0] < kept_since:
        raise CommandError(
            f"impact aggregate: {first} is before the events kept "
            f"(RETENTION_EVENT_DAYS={settings.retention_event_days}: since "
            f"{kept_since:%Y-%m-%d %H:%M} UTC); restating it would erase its stored row",
            EXIT_USAGE,
        )

    async def run() -> None:
        db = await _database(settings)
        try:
            restated = await aggregate_days(db, args.date, args.days, settings.assumptions)
        finally:
            await db.close()
        for totals in restated:
            print(f"{totals.day}: {totals.rows} row(s) for {totals.tenants} tenant(s)")

    _run(run())
    return 0


def _report(args: argparse.Namespace) -> int:
    settings = ImpactSettings.from_env()
    start = args.start or (datetime.now(UTC).date() - timedelta(days=args.days))
    end = start + timedelta(days=args.days - 1)

    async def run() -> dict[str, Any]:
        db = await _database(settings)
        try:
            rows = await platform_rows(db, start, end)
            lifts = await measured_lifts(db)
        finally:
            await db.close()
        return summarize(rows, start=start, end=end, assumptions=settings.assumptions, lifts=lifts)

    print(json.dumps(_run(run()), indent=2, default=str))
    return 0


def _prune(args: argparse.Namespace) -> int:
    settings = ImpactSettings.from_env()
    cutoffs = _cutoffs(settings)

    async def run() -> bool:
        db = await _database(settings)
        try:
            pruned = await prune(
                db, cutoffs, batch_size=settings.retention_batch_size, tenants=args.tenant
            )
        finally:
            await db.close()
        for table in pruned:
            print(table.line())
        return not any(table.failed for table in pruned)

    # Exit 1 when a tenant failed: the Job fails and KubeJobFailed says so.
    return 0 if _run(run()) else 1


def register_impact_commands(subparsers: Any) -> None:
    """Add ``experiment`` and ``impact`` to the top-level subparsers."""
    experiment = subparsers.add_parser("experiment", help="A/B analysis of per-tenant units")
    commands = experiment.add_subparsers(dest="experiment_command", required=True)
    export = commands.add_parser(
        "export", help="the units of a window (CSV for analyze) from stored exposures and metrics"
    )
    export.add_argument("--feature", required=True, type=feature_argument, help="the feature")
    export.add_argument("--start", required=True, type=_day, help="first day (YYYY-MM-DD)")
    export.add_argument("--end", required=True, type=_day, help="last day (YYYY-MM-DD)")
    export.add_argument(
        "--value",
        choices=VALUE_COLUMNS,
        default=VALUE_COLUMNS[0],
        help="the phase3_business_metrics column a unit's value sums over the window "
        f"(default {VALUE_COLUMNS[0]}); with analyze --store, pass it as --metric",
    )
    export.add_argument(
        "--percentage",
        type=_percentage,
        default=None,
        help="the rollout's percentage in the window: variants recomputed from the stored "
        "buckets (default: the variant recorded at first exposure)",
    )
    export.add_argument("--out", type=Path, default=None, help="CSV file (default: stdout)")
    export.set_defaults(handler=_export)
    analyze_ = commands.add_parser("analyze", help="Welch, lift, SRM, CUPED, sequential, MDE")
    analyze_.add_argument(
        "--input",
        required=True,
        type=Path,
        help=f"CSV unit_id,variant,value; {STDIN} reads standard input (export | analyze)",
    )
    analyze_.add_argument(
        "--alpha", type=_probability, default=0.05, help="significance level (default 0.05)"
    )
    analyze_.add_argument(
        "--expected-split",
        type=_probability,
        required=True,
        help="treatment share the rollout assigned in the window: its percentage / 100 "
        "(0.1 at 10%%, 0.5 at 50%%)",
    )
    analyze_.add_argument(
        "--planned-units",
        type=_planned_units,
        default=DEFAULT_PLANNED_UNITS,
        help="tenants at which the always-valid interval is tightest (fix it in advance)",
    )
    analyze_.add_argument("--store", action="store_true", help="record in experiment_results")
    analyze_.add_argument(
        "--feature", type=feature_argument, help="with --store: the feature the experiment tests"
    )
    analyze_.add_argument(
        "--metric",
        default=None,
        help="with --store: what the values measure (1-100 characters; default: the "
        "feature's primary metric, the one rollout advance and the reports read: "
        + ", ".join(f"{feature} {metric}" for feature, metric in PRIMARY_METRICS.items())
        + ")",
    )
    analyze_.add_argument(
        "--window-start", type=_day, help="with --store: first day of the data (YYYY-MM-DD)"
    )
    analyze_.add_argument(
        "--window-end", type=_day, help="with --store: last day of the data (YYYY-MM-DD)"
    )
    analyze_.set_defaults(handler=_analyze)

    impact = subparsers.add_parser("impact", help="business impact: daily aggregate and reports")
    impact_commands = impact.add_subparsers(dest="impact_command", required=True)
    aggregate = impact_commands.add_parser(
        "aggregate",
        help="rewrite the phase3_business_metrics rows of the days ending with --date (idempotent)",
    )
    aggregate.add_argument(
        "--date", required=True, type=_day, help="last UTC day: YYYY-MM-DD, today or yesterday"
    )
    aggregate.add_argument(
        "--days",
        type=_restated_days,
        default=RESTATED_DAYS,
        help=f"days to rewrite, ending with --date, 1-{MAX_RESTATED_DAYS} (default "
        f"{RESTATED_DAYS}: late outcomes, such as a churn lead's answer, reach their day)",
    )
    aggregate.set_defaults(handler=_aggregate)
    report = impact_commands.add_parser("report", help="summary of stored rows (JSON)")
    report.add_argument("--start", type=_day, default=None, help="first day (default: a week ago)")
    report.add_argument(
        "--days", type=_days, default=7, help="number of days, 1-3660 (7: the weekly report)"
    )
    report.set_defaults(handler=_report)

    retention = subparsers.add_parser("retention", help="data retention (the daily prune)")
    retention_commands = retention.add_subparsers(dest="retention_command", required=True)
    prune_ = retention_commands.add_parser(
        "prune",
        help="delete events older than RETENTION_EVENT_DAYS and aggregates older than "
        "RETENTION_METRIC_DAYS, tenant by tenant, in batches (idempotent)",
    )
    prune_.add_argument(
        "--tenant",
        action="append",
        type=tenant_argument,
        default=None,
        help="prune this tenant only (repeat for several; default: every tenant)",
    )
    prune_.set_defaults(handler=_prune)
