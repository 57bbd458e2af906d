"""What every operator command (``flags``, ``rollout``, ``rollback``, ``experiment``) shares.

The argument types and the ``--environment/--actor/--yes`` arguments, the
confirmation prompt, who the actor is, and the connections to the target
environment's Redis and Postgres. ``--environment`` must name the environment
the shell's settings point at (ENVIRONMENT), so that a production change is
never made against staging by mistake, and the other way round.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Final, get_args

from services.cli import EXIT_USAGE, CommandError, unreachable
from services.common.database import Database, DatabaseUnavailable
from services.common.flags import FlagWriteConflict, InvalidFlag, check_feature
from services.common.redis import Redis, RedisUnavailable, close_redis, create_redis_from_settings
from services.common.settings import DatabaseSettings, Environment
from services.common.tenancy import InvalidTenantId, validate_tenant_id
from services.rollout.config import RolloutSettings

ENVIRONMENTS: tuple[str, ...] = get_args(Environment)


def feature_argument(value: str) -> str:
    """argparse type: a known feature name."""
    try:
        return check_feature(value)
    except InvalidFlag as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def tenant_argument(value: str) -> str:
    """argparse type: a well-formed tenant id."""
    try:
        return validate_tenant_id(value)
    except InvalidTenantId as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


#: A reason is a sentence or two; the audit's column has no limit of its own.
REASON_MAX_LENGTH: Final = 1000


def reason_argument(value: str) -> str:
    """argparse type: a ``--reason`` that says something (it is kept in the audit), on
    one line of printable characters: a line break split ``rollout status``'s one
    line per flag, and Postgres refused a NUL after the command had started."""
    reason = value.strip()
    if not reason:
        raise argparse.ArgumentTypeError("must say why (it is kept in the audit)")
    if len(reason) > REASON_MAX_LENGTH or not reason.isprintable():
        raise argparse.ArgumentTypeError(
            f"must be one line of at most {REASON_MAX_LENGTH} printable characters"
        )
    return reason


def environment_argument(value: str) -> str:
    """argparse type: one of ``ENVIRONMENTS``."""
    if value not in ENVIRONMENTS:
        raise argparse.ArgumentTypeError(
            f"unknown environment {value!r}; expected one of {', '.join(ENVIRONMENTS)}"
        )
    return value


#: The audit tables' actor column is varchar(255) (revisions 0005 and 0008).
ACTOR_MAX_LENGTH = 255


def actor_argument(value: str) -> str:
    """argparse type: who, as the audit keeps it: 1-255 printable characters.

    Longer was refused by Postgres after the command had started (a traceback,
    and in ``rollback feature`` after the flag was already off); a line break
    split ``rollout status``'s one line per flag.
    """
    actor = value.strip()
    if not actor or len(actor) > ACTOR_MAX_LENGTH or not actor.isprintable():
        raise argparse.ArgumentTypeError(
            f"{value[:80]!r} is not an actor: 1-{ACTOR_MAX_LENGTH} printable characters"
        )
    return actor


def add_operator_arguments(parser: argparse.ArgumentParser, *, environment: bool = True) -> None:
    """Add ``--environment`` (unless ``environment`` is false), ``--actor`` and ``--yes``."""
    if environment:
        parser.add_argument(
            "--environment",
            required=True,
            type=environment_argument,
            help=f"target environment ({', '.join(ENVIRONMENTS)}); must match ENVIRONMENT",
        )
    parser.add_argument(
        "--actor",
        type=actor_argument,
        default=None,
        help="who (default: SUDO_USER or login name)",
    )
    parser.add_argument("--yes", action="store_true", help="do not ask for confirmation")


def default_actor() -> str:
    """Who runs the command: ``SUDO_USER`` or the login name."""
    return os.environ.get("SUDO_USER") or getpass.getuser()


async def confirm(prompt: str, assume_yes: bool) -> None:
    """Ask ``prompt`` on the terminal; raise ``CommandError`` unless answered yes.

    ``assume_yes`` (``--yes``) skips the question; without a terminal and
    without it the command refuses rather than acting unasked.
    """
    if assume_yes:
        return
    if not sys.stdin.isatty():
        # Says what was not done: "change flags" was printed for `close-undo` too,
        # which records an incident's outcome and changes no flag.
        raise CommandError(
            f"refusing without confirmation ({prompt.rstrip('?')}): stdin is not a terminal; "
            "pass --yes",
            EXIT_USAGE,
        )
    answer = await asyncio.to_thread(input, f"{prompt} [y/N] ")
    if answer.strip().lower() not in {"y", "yes"}:
        raise CommandError("aborted: nothing changed")


@dataclass
class Connections:
    """Redis and Postgres of the target environment."""

    settings: RolloutSettings
    redis: Redis
    db: Database


async def open_database(settings: DatabaseSettings, *, application_name: str) -> Database:
    """The environment's Postgres for one operator command: a small pool of the
    application role (row-level security applies), connected on first use."""
    return await Database.open(
        settings.database_url.get_secret_value(),
        max_size=2,
        acquire_timeout=10,
        application_name=application_name,
    )


def check_environment(environment: str | None, settings: DatabaseSettings) -> None:
    """A usage error unless ``environment`` (``--environment``) is the shell's ENVIRONMENT."""
    if environment is not None and environment != settings.environment:
        raise CommandError(
            f"--environment {environment} but this shell's settings are for "
            f"{settings.environment!r} (ENVIRONMENT); run the command with {environment}'s "
            "DATABASE_URL (and REDIS_URL) (for example inside its cluster)",
            EXIT_USAGE,
        )


@asynccontextmanager
async def connect(environment: str | None) -> AsyncIterator[Connections]:
    """Open Redis and Postgres for ``environment`` (must match ENVIRONMENT)."""
    settings = RolloutSettings.from_env()
    check_environment(environment, settings)
    redis = create_redis_from_settings(settings)
    db = await open_database(settings, application_name="enterprisehub-rollout")
    try:
        yield Connections(settings, redis, db)
    except FlagWriteConflict as exc:
        raise CommandError(exc.reason) from None
    except (RedisUnavailable, DatabaseUnavailable) as exc:
        raise CommandError(
            f"environment {settings.environment} unreachable: "
            + unreachable(
                exc,
                "check that its Postgres and Redis are up and that "
                "DATABASE_URL and REDIS_URL are this environment's",
            )
        ) from None
    finally:
        await close_redis(redis)
        await db.close()
