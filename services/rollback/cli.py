"""``enterprisehub rollback feature NAME|all --environment E``: the seed's rollback, done properly.

    enterprisehub rollback feature NAME|all --environment E --reason WHY
        [--actor WHO] [--yes] [--health-url URL ...] [--wait-seconds N]
        [--stack-rollback STACK]

1. The flags go off at once (every replica's flag cache hears the change over
   pub/sub within a second and stops serving the feature), with an audit row
   per flag and an incident row, in one transaction.
2. The flags are read back from Redis to verify.
3. With ``--stack-rollback STACK``, the stack goes back to its last good update
   (``python -m infra.deploy rollback --stack STACK``, which shows its plan and
   refuses unsafe reverts).
4. Each ``--health-url`` must answer ``/health`` with 200 within ``--wait-seconds``.
5. Slack is told (SLACK_WEBHOOK_URL), when set: the message is queued with the
   incident in step 1 (``services.rollback.notices``) and posted here; should
   the post fail or the command stop early, rollback-handler posts it.

It asks for confirmation unless ``--yes`` (and refuses without a terminal).

    enterprisehub rollback stuck-undos --environment E
    enterprisehub rollback close-undo INCIDENT_KEY --environment E --reason WHY
        (--restored DEPLOYMENT=HASH | --not-restored DEPLOYMENT) ... [--actor WHO] [--yes]

An automatic undo of Deployments whose handler died after claiming it is never
retried (docs/runbooks/RollbackDeploymentUndoStuck.md): ``stuck-undos`` lists
such claims, ``close-undo`` records what the operator found on each Deployment
and tells Slack (the dead handler never did), through the notice outbox.

    enterprisehub rollback notices --environment E [--resend]

lists the rollback notices Slack has not taken (docs/runbooks/RollbackNoticesUnsent.md);
``--resend`` makes the given-up ones due again and, with SLACK_WEBHOOK_URL in the
shell, posts every unsent one from here.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import SecretStr

from services.cli import EXIT_USAGE, CommandError, number_argument, url_argument
from services.common.flags import FEATURES, read_flags
from services.common.settings import EnvSettings, OptionalSecret
from services.operator_cli import (
    add_operator_arguments,
    confirm,
    connect,
    default_actor,
    reason_argument,
)
from services.rollback.alerts import ALL_FEATURES
from services.rollback.notices import deliver, resend_given_up, unsent_notices
from services.rollback.notify import notify_slack
from services.rollback.procedure import RollbackRequest, roll_back
from services.rollback.undo_claims import CloseClaimError, close_claim, stuck_claims


class NotifySettings(EnvSettings):
    """The Slack webhook, when the operator's shell has it."""

    slack_webhook_url: OptionalSecret = None
    """Slack incoming webhook for the notices; unset: the command posts none."""


def _target(value: str) -> str:
    if value != ALL_FEATURES and value not in FEATURES:
        raise argparse.ArgumentTypeError(
            f"unknown feature {value!r}; expected one of {', '.join(FEATURES)} or all"
        )
    return value


_seconds = number_argument(float, 0.0, 3600.0, "is not a number of seconds in 0..3600")


async def _roll_back_flags(
    args: argparse.Namespace, features: tuple[str, ...], key: str, *, notify: bool
) -> list[str]:
    async with connect(args.environment) as conn:
        current = (await read_flags(conn.redis)).writable()
        for feature in features:
            state = current[feature]
            print(f"{feature}: {state.describe() if state else 'missing'} -> off")
        stack = f", then the stack {args.stack_rollback}" if args.stack_rollback else ""
        await confirm(f"roll back {args.feature}{stack} in {conn.settings.environment}?", args.yes)
        outcome = await roll_back(
            db=conn.db,
            redis=conn.redis,
            notify=notify,
            request=RollbackRequest(
                key=key,
                source="operator",
                alertname="operator",
                feature=args.feature,
                features=features,
                environment=conn.settings.environment,
                actor=args.actor or default_actor(),
                reason=args.reason,
                starts_at=datetime.now(UTC),
            ),
        )
        after = (await read_flags(conn.redis)).writable()
    still_on = [f for f in features if (state := after[f]) is not None and state.enabled]
    if still_on:
        raise CommandError(f"verification failed: still enabled in Redis: {', '.join(still_on)}")
    changed = outcome.changed_features
    print(
        f"{len(changed)} flag(s) turned off ({', '.join(changed) or 'all already off'}); "
        "audit and incident recorded; every replica stops serving within seconds"
    )
    return changed


def _stack_rollback(stack: str) -> None:
    # `infra.deploy rollback` asks nothing (it plans, refuses what is unsafe and
    # deploys), so the one confirmation above covers it.
    command = [sys.executable, "-m", "infra.deploy", "rollback", "--stack", stack]
    print("stack rollback: " + " ".join(command[1:]))
    result = subprocess.run(command, check=False)  # noqa: S603 - our own module, fixed argv
    if result.returncode != 0:
        raise CommandError(f"stack rollback of {stack} failed (exit {result.returncode})")


def _wait_healthy(urls: list[str], wait_seconds: float) -> None:
    deadline = time.monotonic() + wait_seconds
    for url in urls:
        target = url.rstrip("/") + "/health"
        while True:
            try:
                if httpx.get(target, timeout=2).status_code == 200:
                    print(f"healthy: {target}")
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise CommandError(f"{target} not healthy within {wait_seconds:g} s")
            time.sleep(0.5)


def _rollback_feature(args: argparse.Namespace) -> int:
    features = FEATURES if args.feature == ALL_FEATURES else (args.feature,)
    webhook_url = NotifySettings.from_env().slack_webhook_url
    key = f"operator:{uuid.uuid4()}"
    changed = asyncio.run(_roll_back_flags(args, features, key, notify=webhook_url is not None))
    if args.stack_rollback:
        _stack_rollback(args.stack_rollback)
    _wait_healthy(args.health_url, args.wait_seconds)
    if changed and webhook_url is not None:
        asyncio.run(_post_notices(args, webhook_url, key))
    return 0


async def _post_notices(args: argparse.Namespace, webhook_url: SecretStr, key: str | None) -> int:
    async with connect(args.environment) as conn:
        return await deliver(conn.db, webhook_url, incident_key=key)


async def _notices(args: argparse.Namespace) -> int:
    webhook_url = NotifySettings.from_env().slack_webhook_url
    async with connect(args.environment) as conn:
        if args.resend:
            print(f"{await resend_given_up(conn.db)} given-up notice(s) due again")
        notices = await unsent_notices(conn.db)
        if not notices:
            print("every rollback notice was sent")
        for notice in notices:
            state = "given up" if notice.given_up else "pending"
            print(
                f"{notice.notice_id}  {notice.incident_key}  {notice.kind}  {state} after "
                f"{notice.attempts} attempt(s) ({notice.last_error or 'not tried yet'})  "
                f"queued {notice.created_at.isoformat()}\n    {notice.text}"
            )
        if args.resend and notices and webhook_url is not None:
            sent = 0
            for key in dict.fromkeys(notice.incident_key for notice in notices):
                sent += await deliver(conn.db, webhook_url, incident_key=key, now=True)
            print(f"posted {sent} of {len(notices)} from this shell")
    return 0


async def _list_stuck_undos(args: argparse.Namespace) -> int:
    async with connect(args.environment) as conn:
        claims = await stuck_claims(conn.db)
    if not claims:
        print("no undo is claimed and unfinished")
    for claim in claims:
        print(
            f"{claim.incident_key}  {claim.feature}  claimed {claim.claimed_at.isoformat()} "
            f"({claim.age_seconds / 60:.0f} min ago)  deployments: {', '.join(claim.planned)}"
        )
    return 0


def _restored_argument(value: str) -> tuple[str, str]:
    name, sep, template_hash = value.partition("=")
    if not sep or not name or not template_hash:
        raise argparse.ArgumentTypeError(
            f"{value!r}: expected DEPLOYMENT=HASH (HASH from the Deployment's "
            "rollback.enterprisehub.io/restored-template-hash annotation)"
        )
    return name, template_hash


async def _close_undo(args: argparse.Namespace) -> int:
    if not args.reason.strip():
        raise CommandError("--reason must say what you found (it is kept on the incident)")
    restored: dict[str, str | None] = {}
    for name, template_hash in [*args.restored, *((name, None) for name in args.not_restored)]:
        if name in restored:
            raise CommandError(f"{name} is named twice", EXIT_USAGE)
        restored[name] = template_hash
    async with connect(args.environment) as conn:
        for name, template_hash in restored.items():
            verdict = f"rolled back to {template_hash}" if template_hash else "not rolled back"
            print(f"{name}: {verdict}")
        await confirm(
            f"close the undo of incident {args.incident} in {conn.settings.environment}?", args.yes
        )
        actor = args.actor or default_actor()
        webhook_url = NotifySettings.from_env().slack_webhook_url
        try:
            closed = await close_claim(
                conn.db,
                args.incident,
                restored,
                actor=actor,
                reason=args.reason,
                environment=conn.settings.environment,
                notify=webhook_url is not None,
            )
        except CloseClaimError as exc:
            raise CommandError(f"{exc}; nothing changed") from None
        print(
            f"incident {args.incident}: undo closed with {len(closed.outcomes)} outcome(s); "
            "RollbackDeploymentUndoStuck resolves within a minute"
        )
        if webhook_url is None:
            await notify_slack(None, closed.message)
        else:
            await deliver(conn.db, webhook_url, incident_key=args.incident)
    return 0


def register_rollback_commands(subparsers: Any) -> None:
    """``enterprisehub rollback feature|stuck-undos|close-undo ...``."""
    rollback = subparsers.add_parser("rollback", help="roll a feature back (flag off)")
    commands = rollback.add_subparsers(dest="rollback_command", required=True)
    feature = commands.add_parser("feature", help="turn a feature (or all) off at once")
    feature.add_argument("feature", type=_target, help=f"{', '.join(FEATURES)} or all")
    add_operator_arguments(feature)
    feature.add_argument(
        "--reason", required=True, type=reason_argument, help="why (recorded in the audit)"
    )
    feature.add_argument(
        "--health-url",
        type=url_argument("http", "https"),
        action="append",
        default=[],
        metavar="URL",
        help="a service base URL whose /health must answer 200 afterwards (repeatable)",
    )
    feature.add_argument(
        "--wait-seconds",
        type=_seconds,
        default=120.0,
        help="how long each --health-url has to answer 200 (default 120)",
    )
    feature.add_argument(
        "--stack-rollback", metavar="STACK", help="also roll the stack back to its last good update"
    )
    feature.set_defaults(handler=_rollback_feature)

    stuck = commands.add_parser(
        "stuck-undos", help="list deployment undos claimed by a handler that never finished"
    )
    add_operator_arguments(stuck)
    stuck.set_defaults(handler=lambda args: asyncio.run(_list_stuck_undos(args)))

    close = commands.add_parser(
        "close-undo", help="record what happened to a stuck undo's Deployments"
    )
    close.add_argument("incident", help="the incident key (from stuck-undos or /health/rollback)")
    add_operator_arguments(close)
    close.add_argument("--reason", required=True, help="what you found (kept on the incident)")
    close.add_argument(
        "--restored",
        action="append",
        default=[],
        type=_restored_argument,
        metavar="DEPLOYMENT=HASH",
        help="this Deployment was rolled back; HASH is its restored-template-hash annotation",
    )
    close.add_argument(
        "--not-restored",
        action="append",
        default=[],
        metavar="DEPLOYMENT",
        help="this Deployment was not rolled back",
    )
    close.set_defaults(handler=lambda args: asyncio.run(_close_undo(args)))

    notices = commands.add_parser(
        "notices", help="list rollback notices Slack has not taken; --resend retries them"
    )
    add_operator_arguments(notices)
    notices.add_argument(
        "--resend",
        action="store_true",
        help="make given-up notices due again (and post them with SLACK_WEBHOOK_URL set)",
    )
    notices.set_defaults(handler=lambda args: asyncio.run(_notices(args)))
