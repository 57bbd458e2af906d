"""``enterprisehub flags ...`` and ``enterprisehub rollout ...`` (registered by services/cli.py).

    enterprisehub flags init [--seed JSON]
    enterprisehub flags assign --feature F --percentage P --tenant-file FILE
    enterprisehub rollout set (--feature F | --all-features) --percentage P --environment E
                              --reason WHY [--actor WHO] [--yes]
    enterprisehub rollout enable-all --environment E --reason WHY [--actor WHO] [--yes]
    enterprisehub rollout status --environment E
    enterprisehub rollout advance --feature F --environment E [--dry-run] [--yes]
                                  [--selector PROMQL_MATCHERS] [--window 1d]

A command that changes flags shows the change and asks for confirmation
(``--yes`` for scripts; without a terminal and without ``--yes`` it refuses).
``--environment`` must name the environment the shell's settings point at
(ENVIRONMENT): services/operator_cli.py, shared with the other operator commands.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from services.cli import EXIT_USAGE, CommandError, url_argument
from services.common.flags import (
    FEATURES,
    FlagState,
    InvalidFlag,
    bucket,
    check_percentage,
    parse_seed,
    read_flags,
)
from services.common.tenancy import InvalidTenantId, validate_tenant_id
from services.operator_cli import (
    Connections,
    add_operator_arguments,
    confirm,
    connect,
    default_actor,
    environment_argument,
    feature_argument,
    reason_argument,
)
from services.rollout.operations import (
    Change,
    FlagChangedMeanwhile,
    apply_changes,
    audit_trail,
    plan_changes,
    recorded_states,
)
from services.rollout.restore import Outcome, restore_missing, unrecorded
from services.rollout.schedule import PLANS, Verdict, decide, stage_for


def _percentage(value: str) -> float:
    try:
        percentage = check_percentage(float(value))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a percentage between 0 and 100"
        ) from None
    if percentage == 0 and float(value) > 0:
        # Rounded to the buckets' 0.01 resolution, 0.001 became 0: `rollout set`
        # turned the feature off when the operator asked for a sliver of it.
        raise argparse.ArgumentTypeError(
            f"{value!r} rounds to 0 at the buckets' resolution of 0.01%: "
            "give 0.01 or more, or 0 to turn the feature off"
        )
    return percentage


def _unread(sources: dict[str, Any]) -> list[str]:
    """Why Prometheus gave no numbers: the hold says only "no data for error_rate, ...".

    The cause (PROMETHEUS_URL unset, Prometheus unreachable) was only in the
    recorded inputs, so an operator saw the rollout hold with no hint of it.
    """
    notes = []
    if sources.get("prometheus") == "PROMETHEUS_URL not set":
        notes.append(
            "PROMETHEUS_URL is not set (nor --prometheus-url): error rate and latency not read"
        )
    notes += [
        f"{name.removesuffix('_error')}: {error}"
        for name, error in sources.items()
        if name.endswith("_error")
    ]
    return notes


async def _change(
    conn: Connections,
    changes: Sequence[Change],
    *,
    args: argparse.Namespace,
    reason: str,
    command: str,
) -> None:
    for change in changes:
        print(change.describe() + ("  (unchanged)" if change.is_noop else ""))
    unchanged = all(change.is_noop for change in changes)
    if not unchanged:
        await confirm(f"apply in {conn.settings.environment}?", args.yes)
    # With nothing to change, this writes no flag but records the live state
    # where the record lacks it (a change whose commit failed after Redis took
    # it): otherwise the rollback handler would take it for a stale copy.
    written = await apply_changes(
        redis=conn.redis,
        db=conn.db,
        environment=conn.settings.environment,
        changes=changes,
        actor=args.actor or default_actor(),
        reason=reason,
        command=command,
    )
    if unchanged:
        print("nothing to change")
        return
    print(f"{len(written)} flag(s) changed in {conn.settings.environment}; audit recorded")


def _run(coroutine: Any) -> int:
    try:
        asyncio.run(coroutine)
    except (InvalidFlag, FlagChangedMeanwhile) as exc:
        raise CommandError(str(exc)) from None
    return 0


# -- flags ------------------------------------------------------------------------

_INIT_OUTCOMES = {
    Outcome.SEEDED: "{0}: created ({1})",
    Outcome.RESTORED: "{0}: restored from its last recorded state ({1})",
    Outcome.PRESENT: "{0}: exists, unchanged",
    Outcome.NO_RECORD: "{0}: missing, no recorded state",
}


def _flags_init(args: argparse.Namespace) -> int:
    try:
        seed = parse_seed(args.seed)
    except InvalidFlag as exc:
        raise CommandError(f"flags init: {exc}", EXIT_USAGE) from None

    async def run() -> None:
        async with connect(None) as conn:
            # The last recorded state first: the seed is only the initial state,
            # and re-running init after Redis lost the flags must not undo what
            # operators and rollbacks set since.
            async with conn.db.unscoped() as tx:
                results = await restore_missing(
                    tx,
                    conn.redis,
                    environment=conn.settings.environment,
                    actor=args.actor,
                    seed=seed,
                )
            for result in results:
                shown = result.state.describe() if result.state else ""
                print(_INIT_OUTCOMES[result.outcome].format(result.feature, shown))

    return _run(run())


def read_tenant_file(path: Path) -> list[str]:
    """Tenant ids, one per line (blank lines and ``#`` comments skipped), validated."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise CommandError(f"cannot read {path}: {exc}", EXIT_USAGE) from None
    tenants = []
    for number, line in enumerate(lines, start=1):
        tenant = line.strip()
        if not tenant or tenant.startswith("#"):
            continue
        try:
            validate_tenant_id(tenant)
        except InvalidTenantId as exc:
            raise CommandError(f"{path}:{number}: {exc}", EXIT_USAGE) from None
        tenants.append(tenant)
    return tenants


def _flags_assign(args: argparse.Namespace) -> int:
    threshold = round(args.percentage * 100)
    for tenant in read_tenant_file(args.tenant_file):
        if bucket(args.feature, tenant) < threshold:
            print(tenant)
    return 0


# -- rollout ----------------------------------------------------------------------


def _rollout_set(args: argparse.Namespace) -> int:
    features = FEATURES if args.all_features else (args.feature,)
    percentage = args.percentage

    def target(_: FlagState | None) -> FlagState:
        return FlagState(enabled=percentage > 0, rollout_percentage=percentage)

    async def run() -> None:
        async with connect(args.environment) as conn:
            changes = await plan_changes(conn.redis, features, target)
            await _change(conn, changes, args=args, reason=args.reason, command="rollout set")

    return _run(run())


def _enable_all(args: argparse.Namespace) -> int:
    async def run() -> None:
        async with connect(args.environment) as conn:
            changes = await plan_changes(
                conn.redis, FEATURES, lambda _: FlagState(enabled=True, rollout_percentage=100)
            )
            await _change(
                conn, changes, args=args, reason=args.reason, command="rollout enable-all"
            )

    return _run(run())


def _status(args: argparse.Namespace) -> int:
    async def run() -> None:
        async with connect(args.environment) as conn:
            stored = await read_flags(conn.redis)
            states = stored.states
            async with conn.db.unscoped() as db_conn:
                recorded = await recorded_states(db_conn, conn.settings.environment)
            differing = unrecorded(stored, recorded)
            print(f"environment {conn.settings.environment}")
            for feature in FEATURES:
                state = states.get(feature)
                trail = await audit_trail(conn.db, conn.settings.environment, feature, limit=1)
                last = (
                    f"last change {trail[0]['changed_at']:%Y-%m-%d %H:%M} UTC by "
                    f"{trail[0]['actor']}: {trail[0]['reason']}"
                    if trail
                    else "no recorded change"
                )
                stage = stage_for(state.rollout_percentage) if state else None
                on_schedule = stage is not None and state is not None and state.enabled
                where = f" [{stage.label.split(':')[0]}]" if on_schedule and stage else ""
                shown = state.describe() if state else "missing (run flags init)"
                if feature in stored.invalid:
                    shown = "invalid record"
                print(f"  {feature:<22} {shown:<20}{where}  {last}")
                if feature in differing:
                    # No recorded change wrote it: a stale copy (restore.revert_stale).
                    print(f"  {'':<22} differs from its record: {recorded[feature].describe()}")

    return _run(run())


def _advance(args: argparse.Namespace) -> int:
    # Here, not at the top: it imports SciPy (the SRM test), and every
    # `rollout`/`flags` command would pay for it at start.
    from services.rollout.observe import PrometheusQueryRefused, gather

    feature: str = args.feature
    plan = PLANS[feature]

    async def run() -> None:
        async with connect(args.environment) as conn:
            state = (await read_flags(conn.redis)).valid([feature])[feature]
            if state is None:
                raise CommandError(f"{feature} does not exist yet: run `enterprisehub flags init`")
            if not state.enabled and state.rollout_percentage > 0:
                # Rolled back (the handler, `rollback feature` or an advance keep the
                # percentage): read as 0 %, it advanced to on at 10 % on a window
                # that may predate the incident, undoing the rollback unasked.
                raise CommandError(
                    f"{feature} was rolled back (off, {state.rollout_percentage:g}% kept); "
                    "advance does not turn a rolled-back feature on: once the cause is fixed, "
                    f"`enterprisehub rollout set --feature {feature} --percentage "
                    f"{state.rollout_percentage:g} --environment {conn.settings.environment} "
                    "--reason WHY` resumes it"
                )
            current = state.rollout_percentage if state.enabled else 0.0
            stage = stage_for(current)
            if stage is None:
                raise CommandError(
                    f"{feature} is at {current:g}%, off the schedule (0, 10, 25, 50, 100); "
                    "use `rollout set` to move it onto a stage first"
                )
            try:
                gathered = await gather(
                    db=conn.db,
                    environment=conn.settings.environment,
                    feature=feature,
                    state=state,
                    plan=plan,
                    stage=stage,
                    prometheus_url=args.prometheus_url or conn.settings.prometheus_url,
                    selector=args.selector,
                    window=args.window,
                )
            except PrometheusQueryRefused as exc:
                raise CommandError(f"{exc}; check --selector and --window") from None
            decision = decide(stage, gathered.observations, plan=plan)
            inputs = {
                "observations": gathered.observations.as_dict(),
                "sources": gathered.sources,
                "stage": stage.percentage,
                "state": state.model_dump(),
            }
            verdict = decision.verdict.value
            print(f"{feature} at {stage.percentage:g}%: {verdict}: {decision.reason}")
            for note in _unread(gathered.sources):
                print(f"  {note}")
            print(json.dumps(inputs["observations"], indent=2))
            # Recorded before anything changes, so a decision the operator declines
            # (or that fails to apply) is on record too, with applied = false.
            async with conn.db.unscoped() as tx:
                decision_id = await tx.fetchval(
                    "INSERT INTO rollout_decisions (environment, feature_name, stage_percentage, "
                    "decision, reason, inputs, applied, actor) "
                    "VALUES ($1, $2, $3, $4, $5, $6, false, $7) RETURNING decision_id",
                    conn.settings.environment,
                    feature,
                    stage.percentage,
                    verdict,
                    decision.reason,
                    {**inputs, "decided_at": datetime.now(UTC).isoformat()},
                    args.actor or default_actor(),
                )
            if decision.verdict is Verdict.HOLD or args.dry_run:
                return
            target = (
                FlagState(enabled=True, rollout_percentage=decision.target_percentage or 0)
                if decision.verdict is Verdict.ADVANCE
                else FlagState(enabled=False, rollout_percentage=state.rollout_percentage)
            )
            await _change(
                conn,
                [Change(feature, state, target)],
                args=args,
                reason=f"rollout advance: {verdict}: {decision.reason}",
                command="rollout advance",
            )
            async with conn.db.unscoped() as tx:
                await tx.execute(
                    "UPDATE rollout_decisions SET applied = true WHERE decision_id = $1",
                    decision_id,
                )

    return _run(run())


# -- registration -----------------------------------------------------------------


def register_rollout_commands(subparsers: Any) -> None:
    """Add ``flags`` and ``rollout`` to the top-level subparsers."""
    flags = subparsers.add_parser("flags", help="feature flag records in Redis")
    flag_commands = flags.add_subparsers(dest="flags_command", required=True)
    init = flag_commands.add_parser(
        "init",
        help="create missing flags from their last recorded state, else from the stack's "
        "seed; never overwrites",
    )
    init.add_argument(
        "--seed",
        default=None,
        help='JSON {"feature": {"enabled": bool, "rolloutPercentage": 0-100}}; '
        "features left out start off at 0%%",
    )
    init.set_defaults(handler=_flags_init, actor="flags-init")
    assign = flag_commands.add_parser(
        "assign", help="print the tenants of FILE that the rule puts in treatment"
    )
    assign.add_argument("--feature", required=True, type=feature_argument, help="the feature")
    assign.add_argument(
        "--percentage", required=True, type=_percentage, help="0-100 (0.01 steps): the rollout"
    )
    assign.add_argument("--tenant-file", required=True, type=Path, help="one tenant id a line")
    assign.set_defaults(handler=_flags_assign)

    rollout = subparsers.add_parser("rollout", help="progressive rollout of the features")
    commands = rollout.add_subparsers(dest="rollout_command", required=True)
    set_ = commands.add_parser("set", help="set one feature's (or every feature's) percentage")
    which = set_.add_mutually_exclusive_group(required=True)
    which.add_argument("--feature", type=feature_argument, help="the feature to set")
    which.add_argument("--all-features", action="store_true", help="set every feature")
    set_.add_argument("--percentage", required=True, type=_percentage, help="0-100 (0.01 steps)")
    set_.add_argument(
        "--reason", required=True, type=reason_argument, help="why (kept in the audit)"
    )
    add_operator_arguments(set_)
    set_.set_defaults(handler=_rollout_set)

    # argparse formats help with %: a literal percent sign is written %%.
    enable = commands.add_parser("enable-all", help="every feature on for 100%% of tenants")
    enable.add_argument(
        "--reason", required=True, type=reason_argument, help="why (kept in the audit)"
    )
    add_operator_arguments(enable)
    enable.set_defaults(handler=_enable_all)

    status = commands.add_parser("status", help="each flag's state and its last change")
    status.add_argument(
        "--environment",
        required=True,
        type=environment_argument,
        help="whose flags (must match ENVIRONMENT)",
    )
    status.set_defaults(handler=_status)

    advance = commands.add_parser(
        "advance", help="decide advance/hold/rollback from the schedule's criteria and apply it"
    )
    advance.add_argument(
        "--feature", required=True, type=feature_argument, help="the feature to decide for"
    )
    advance.add_argument("--dry-run", action="store_true", help="decide and record, change nothing")
    advance.add_argument(
        "--prometheus-url",
        type=url_argument("http", "https"),
        default=None,
        help="default: PROMETHEUS_URL",
    )
    advance.add_argument(
        "--selector",
        default=None,
        help=(
            "PromQL label matchers for both queries, in place of the feature's own "
            '(default: job="<service>" and its routes, at 0%% job="<service>" alone; '
            "see services/rollout/schedule.py)"
        ),
    )
    advance.add_argument("--window", default="1d", help="PromQL range for rates (default 1d)")
    add_operator_arguments(advance)
    advance.set_defaults(handler=_advance)
