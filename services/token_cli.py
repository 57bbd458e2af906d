"""``enterprisehub token revoke`` and ``enterprisehub token revocations``.

    enterprisehub token revoke --tenant T (--jti J | --subject S) --reason WHY [--actor WHO]
    enterprisehub token revocations --tenant T

``revoke`` stores a revocation in the tenant's ``auth_token_revocations``
(``services.common.revocation_store``): one token by its ``jti`` (which
``enterprisehub token`` prints when it mints), or every token of a subject
issued until now ("sign out everywhere"). Every service refuses the token
within AUTH_REVOCATION_REFRESH_SECONDS (401 ``revoked_token``) and closes a
feed socket opened with it. Revoking the same token again changes nothing;
the same subject again moves its time to now. ``revocations`` lists the
tenant's revocations that can still refuse a token.

The command needs the environment's DATABASE_URL, never a signing key: how
long a row is kept follows from the largest lifetimes the settings accept
(``TokenLifetimeSettings.revocation_keep_seconds``), not from this shell's.
Bad input is one line before anything is written.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from services.cli import CommandError
from services.common.database import Database, DatabaseUnavailable
from services.common.identifiers import AGENT_ID_FORMAT, TOKEN_ID_TEXT
from services.common.settings import DatabaseSettings, TokenLifetimeSettings
from services.operator_cli import (
    ENVIRONMENTS,
    actor_argument,
    check_environment,
    default_actor,
    environment_argument,
    open_database,
    reason_argument,
    tenant_argument,
)


def token_id_argument(value: str) -> str:
    """argparse type: a ``jti`` as ``enterprisehub token`` prints it (32 hex digits)."""
    if TOKEN_ID_TEXT.fullmatch(value) is None:
        raise argparse.ArgumentTypeError(
            f"{value[:80]!r} is not a token id: the jti `enterprisehub token` printed "
            "(32 lower-case hex digits)"
        )
    return value


def subject_argument(value: str) -> str:
    """argparse type: an agent id, the subject ``enterprisehub token`` mints for."""
    if not AGENT_ID_FORMAT.matches(value):
        raise argparse.ArgumentTypeError(
            f"{value[:80]!r} is not an agent id ({AGENT_ID_FORMAT.description})"
        )
    return value


@asynccontextmanager
async def _database(settings: DatabaseSettings) -> AsyncIterator[Database]:
    db = await open_database(settings, application_name="enterprisehub-token")
    try:
        yield db
    except DatabaseUnavailable as exc:
        raise CommandError(
            f"environment {settings.environment} unreachable: {exc.reason}"
        ) from None
    finally:
        await db.close()


async def _revoke(args: argparse.Namespace, settings: DatabaseSettings) -> str:
    # Here, not at the top: the store imports the services' metrics, and every
    # `enterprisehub` command builds the `token` parser (this module's arguments).
    from services.common.revocation_store import revoke

    async with _database(settings) as db:
        stored, existed = await revoke(
            db,
            args.tenant,
            jti=args.jti,
            subject=args.subject,
            actor=args.actor or default_actor(),
            reason=args.reason,
            keep_seconds=TokenLifetimeSettings.revocation_keep_seconds(),
        )
    what = f"token {stored.jti}" if stored.jti is not None else f"every token of {stored.subject}"
    at = stored.revoked_at.isoformat(timespec="seconds")
    if stored.jti is not None and existed:
        outcome = f"already revoked at {at} by {stored.actor}; nothing changed"
    elif stored.subject is not None:
        moved = " (an earlier revocation of it moved to now)" if existed else ""
        outcome = f"revoked: those issued until {at}{moved}"
    else:
        outcome = f"revoked at {at}"
    return (
        f"{what} of tenant {stored.tenant_id} ({settings.environment}) {outcome}; "
        "services refuse it within AUTH_REVOCATION_REFRESH_SECONDS"
    )


def _revoke_command(args: argparse.Namespace) -> int:
    settings = DatabaseSettings.from_env()
    # A revocation written to another environment's database leaves the token
    # working where it leaked, while the operator believes it revoked.
    check_environment(args.environment, settings)
    print(asyncio.run(_revoke(args, settings)))
    return 0


async def _list(tenant_id: str, settings: DatabaseSettings) -> list[str]:
    from services.common.revocation_store import list_active

    async with _database(settings) as db:
        return [revocation.line() for revocation in await list_active(db, tenant_id)]


def _list_command(args: argparse.Namespace) -> int:
    settings = DatabaseSettings.from_env()
    lines = asyncio.run(_list(args.tenant, settings))
    for line in lines:
        print(line)
    if not lines:
        print(f"no active revocations in tenant {args.tenant} ({settings.environment})")
    return 0


def add_revocation_commands(token: argparse.ArgumentParser) -> None:
    """``revoke`` and ``revocations`` under ``enterprisehub token`` (which mints without them)."""
    actions = token.add_subparsers(
        dest="token_action",
        title="revocation",
        metavar="{revoke,revocations}",
        description="Without one of these, `enterprisehub token` mints a token.",
    )
    revoke_parser = actions.add_parser(
        "revoke",
        help="revoke one token (--jti) or every token of an agent (--subject)",
        description="Revoke a token of a tenant: every service refuses it (401 revoked_token) "
        "within AUTH_REVOCATION_REFRESH_SECONDS, and closes a feed socket opened with it.",
    )
    revoke_parser.add_argument(
        "--environment",
        required=True,
        type=environment_argument,
        help=f"where the token works ({', '.join(ENVIRONMENTS)}); must match ENVIRONMENT",
    )
    revoke_parser.add_argument("--tenant", required=True, type=tenant_argument, help="tenant id")
    which = revoke_parser.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--jti", type=token_id_argument, help="the token's id (printed when it was minted)"
    )
    which.add_argument(
        "--subject",
        type=subject_argument,
        help="an agent: every token of it issued until now (sign out everywhere)",
    )
    revoke_parser.add_argument(
        "--reason", required=True, type=reason_argument, help="why (kept with the revocation)"
    )
    revoke_parser.add_argument(
        "--actor", type=actor_argument, default=None, help="who (default: SUDO_USER or login name)"
    )
    revoke_parser.set_defaults(handler=_revoke_command)
    listing = actions.add_parser(
        "revocations",
        help="list a tenant's revocations that still refuse tokens",
        description="A tenant's active revocations, oldest first: when, which token or agent, "
        "who, until when the revocation is kept, and why.",
    )
    listing.add_argument("--tenant", required=True, type=tenant_argument, help="tenant id")
    listing.set_defaults(handler=_list_command)
