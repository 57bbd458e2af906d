"""``enterprisehub``: the one console script of the image.

    enterprisehub serve realtime|ml|coaching|churn|rollback|dashboards [--host H] [--port N]
    enterprisehub migrate [--revision REV]
    enterprisehub flags init|assign ...          (registered by services.rollout.cli)
    enterprisehub rollout set|enable-all|status|advance ...
    enterprisehub experiment export|analyze ... (registered by services.impact.cli)
    enterprisehub impact aggregate|report ...
    enterprisehub retention prune [--tenant T]
    enterprisehub token --tenant T --subject S --scope SCOPE [--scope ...] [--ttl 12h]
    enterprisehub token revoke|revocations ...  (services.token_cli)
    enterprisehub feed --tenant T [--url ws://HOST:8001/v1/feed] [--token JWT]
    enterprisehub model train|publish ...      (registered by services.ml.cli)
    enterprisehub vision backfill ...           (registered by services.ml.cli)
    enterprisehub churn train ...               (registered by services.churn.cli)
    enterprisehub rollback feature|stuck-undos|close-undo ...   (services.rollback.cli)

Adding a service is one entry in ``SERVICES``; adding a command group is one
entry in ``COMMAND_GROUPS`` (a ``module:function`` that receives the
top-level subparsers and sets ``handler`` on its leaf parsers). Handlers take
the parsed namespace and return the exit code. Operator errors (bad settings,
unreachable servers, a service not in this build) print one clear message and
exit non-zero instead of a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.util
import logging
import math
import os
import sys
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

from services.common.scopes import SCOPE_DESCRIPTIONS, SCOPES
from services.common.settings import SettingsError
from services.common.version import package_version

EXIT_USAGE = 2
EXIT_FAILURE = 1


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    """Where a service's app factory lives, its default port (the seed's), and
    whether uvicorn logs every request by default (``--no-access-log`` turns
    it off for any service)."""

    factory: str
    port: int
    access_log: bool = True
    #: ``asgi``: ``factory`` builds a FastAPI app (its settings in
    #: ``app.state.settings``); ``streamlit``: Streamlit's ASGI app (its settings
    #: in ``app.state["settings"]``, no OpenAPI document). Both run on uvicorn.
    kind: Literal["asgi", "streamlit"] = "asgi"
    #: The cap on a client's WebSocket message when it is not the services'
    #: (``services.common.serving.WS_MAX_MESSAGE_BYTES``, 4 KiB).
    ws_max_bytes: int | None = None
    #: ``module:function`` called with the settings, ``host`` and ``app_port``
    #: once before uvicorn runs: what a FastAPI app's lifespan would start, for
    #: an app whose code cannot reach a lifespan (the dashboards' revocations and
    #: metrics listener, ``services.dashboards.process``).
    start: str | None = None


SERVICES: dict[str, ServiceEntry] = {
    # The feed's ingest is its hot path: one log line per event would cost
    # more than storing it; its /metrics count requests and latencies instead.
    "realtime": ServiceEntry("services.realtime.main:create_app", 8001, access_log=False),
    "ml": ServiceEntry("services.ml.main:create_app", 8002),
    "coaching": ServiceEntry("services.coaching.main:create_app", 8003),
    "churn": ServiceEntry("services.churn.main:create_app", 8004),
    "rollback": ServiceEntry("services.rollback.main:create_app", 8005),
    # A Streamlit page sends its widgets' state (a few KB, the token among them):
    # services.dashboards.serve.MAX_CLIENT_MESSAGE_BYTES (not imported here: a
    # build may leave the dashboards out). What Streamlit sends is capped by its
    # own server.maxMessageSize; ws_max_size bounds incoming messages only.
    "dashboards": ServiceEntry(
        "services.dashboards.serve:create_app",
        8501,
        kind="streamlit",
        ws_max_bytes=1_000_000,
        start="services.dashboards.process:start",
    ),
}

#: Each command group's registration, with the top-level commands it adds. A
#: command line imports only the group it names: the model commands alone
#: import scikit-learn, which cost every command, `rollout status` included,
#: about 2 s of CPU at start. `--help` and a name no group has (argparse lists
#: every choice) import them all.
COMMAND_GROUPS: dict[str, tuple[str, ...]] = {
    "services.ml.cli:register_model_commands": ("model",),
    "services.ml.cli:register_vision_commands": ("vision",),
    "services.rollout.cli:register_rollout_commands": ("flags", "rollout"),
    "services.impact.cli:register_impact_commands": ("experiment", "impact", "retention"),
    "services.churn.cli:register_churn_commands": ("churn",),
    "services.rollback.cli:register_rollback_commands": ("rollback",),
}


class CommandError(Exception):
    """An operator-facing failure: printed as one line, exit code attached."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        self.code = code
        super().__init__(message)


#: Loggers whose only warning is a store's outage, written for a service's log. A
#: command says it in its own error line (``unreachable``), where the warning
#: printed it a second time, on a line of its own.
STORE_LOGGERS = ("services.common.database", "services.common.redis")


def unreachable(exc: Exception, fix: str) -> str:
    """One line for a store that could not be reached: the reason, its cause, ``fix``."""
    reason = getattr(exc, "reason", str(exc))
    cause = f": {str(exc.__cause__).rstrip('.')}" if exc.__cause__ is not None else ""
    return f"{reason}{cause}; {fix}"


@contextlib.contextmanager
def _store_warnings_quieted() -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in STORE_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _load(target: str) -> Any:
    """Import ``module:attribute``; None when the module itself is absent."""
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        # Only the target module being absent means "not in this build";
        # a missing dependency inside it is a real error and propagates.
        if exc.name is not None and module_name.startswith(exc.name):
            return None
        raise
    return getattr(module, attribute)


def uvicorn_options(
    args: argparse.Namespace, entry: ServiceEntry, *, log_level: str
) -> dict[str, Any]:
    """The keyword arguments ``serve`` passes to ``uvicorn.run``.

    uvloop and httptools explicitly (``auto`` silently falls back to the
    pure-Python ones when they are missing); the sans-I/O websockets
    protocol, since the default legacy one is deprecated and does more work
    per frame; no permessage-deflate, because feed frames are a few hundred
    bytes of JSON and compressing each one per socket costs CPU on every send
    for little gain. Both protocols come bounded (request line, headers,
    client messages) and the logging configuration redacts credentials
    (`services.common.serving`).
    """
    from services.common.serving import logging_config, uvicorn_protocols

    return {
        "host": args.host,
        "port": args.port or entry.port,
        "log_level": log_level.lower(),
        "access_log": entry.access_log and not args.no_access_log,
        "proxy_headers": True,
        "loop": "uvloop",
        **uvicorn_protocols(),
        **({"ws_max_size": entry.ws_max_bytes} if entry.ws_max_bytes is not None else {}),
        "ws_per_message_deflate": False,
        # Streamlit sets uvicorn's loggers up itself (its format, its handlers):
        # a configuration of ours beside it would write every line twice.
        # Either way the loggers redact (``redact_server_loggers``).
        "log_config": logging_config() if entry.kind == "asgi" else None,
    }


def _serve(args: argparse.Namespace) -> int:
    entry = SERVICES[args.service]
    factory: Callable[..., Any] | None = _load(entry.factory)
    if factory is None:
        raise CommandError(
            f"service {args.service!r} is not part of this build yet "
            f"({entry.factory.partition(':')[0]} is missing); "
            f"available: {', '.join(_available_services())}",
            EXIT_USAGE,
        )
    # Building the app here reads and validates the settings, so a bad
    # variable is reported as one message before uvicorn starts.
    app = factory()
    settings = app.state["settings"] if entry.kind == "streamlit" else app.state.settings
    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s %(message)s")
    from services.common.serving import (
        install_redaction,
        quiet_client_request_logs,
        redact_server_loggers,
        register_secrets,
    )

    register_secrets(settings)
    install_redaction()
    redact_server_loggers()
    quiet_client_request_logs(settings.log_level)
    options = uvicorn_options(args, entry, log_level=settings.log_level)
    if entry.start is not None:
        try:
            _load(entry.start)(settings, host=options["host"], app_port=options["port"])
        except OSError as exc:
            raise CommandError(f"serve {args.service}: {exc}") from None
    import uvicorn

    uvicorn.run(app, **options)
    return 0


def _available_services() -> list[str]:
    available = []
    for name, entry in SERVICES.items():
        try:
            found = importlib.util.find_spec(entry.factory.partition(":")[0]) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            available.append(name)
    return available


def _migrate(args: argparse.Namespace) -> int:
    from services.common.settings import CommonSettings
    from services.migrations.runner import MigrationError, migrate

    settings = CommonSettings.from_env()
    try:
        result = asyncio.run(migrate(settings, revision=args.revision))
    except MigrationError as exc:
        raise CommandError(f"migrate: {exc}") from None
    except OSError as exc:
        raise CommandError(f"migrate: cannot reach Postgres ({exc})") from None
    print(
        f"schema at {result.revision_after} (was {result.revision_before or 'empty'}); "
        f"application role {result.app_role} ready"
    )
    return 0


def _token(args: argparse.Namespace) -> int:
    import jwt

    from services.common.auth import issue_token
    from services.common.settings import AuthSettings
    from services.common.tenancy import InvalidTenantId

    # Required when minting only, so argparse cannot say it (`token revoke` has its own).
    given = (("--tenant", args.tenant), ("--subject", args.subject), ("--scope", args.scope))
    missing = [option for option, value in given if value is None]
    if missing:
        args.token_parser.error(f"the following arguments are required: {', '.join(missing)}")
    settings = AuthSettings.from_env()
    try:
        token = issue_token(
            settings,
            tenant_id=args.tenant,
            subject=args.subject,
            scopes=args.scope,
            ttl_seconds=args.ttl,
        )
    except (InvalidTenantId, ValueError) as exc:
        raise CommandError(f"token: {exc}", EXIT_USAGE) from None
    print(token)
    # On stderr, so that `$(enterprisehub token ...)` still captures the token alone.
    claims = jwt.decode(token, options={"verify_signature": False})
    print(
        f"jti {claims['jti']} (tenant {args.tenant}, subject {args.subject}); revoke it with: "
        f"enterprisehub token revoke --environment ENVIRONMENT --tenant {args.tenant} "
        f"--jti {claims['jti']} --reason WHY",
        file=sys.stderr,
    )
    return 0


def _feed(args: argparse.Namespace) -> int:
    from services.realtime.feed_client import FeedClientError, OutputClosed, watch_feed

    try:
        return asyncio.run(watch_feed(args))
    except KeyboardInterrupt:
        return 0
    except OutputClosed:
        # As Python's docs advise for SIGPIPE: stdout onto devnull, so that the
        # interpreter's last flush of what the pipe refused does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except FeedClientError as exc:
        raise CommandError(f"feed: {exc}", exc.code) from None


_TTL_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_ttl(value: str) -> float:
    """``--ttl``: seconds, or a number with s/m/h/d; positive and finite.

    An argparse type: a bad value is one usage line, never a traceback.
    """
    text = value.strip().lower()
    unit = _TTL_UNITS.get(text[-1:]) if text else None
    number = text[:-1] if unit is not None else text
    try:
        seconds = float(number) * (unit or 1.0)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a duration: use seconds or a number with s, m, h or d (12h)"
        ) from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise argparse.ArgumentTypeError(
            f"{value!r}: a token's lifetime must be a positive, finite duration"
        )
    return seconds


_Number = TypeVar("_Number", int, float)


def number_argument(
    kind: Callable[[str], _Number],
    low: _Number,
    high: _Number,
    problem: str,
    *,
    exclusive: bool = False,
) -> Callable[[str], _Number]:
    """An argparse type: a number ``kind`` reads, from ``low`` to ``high``.

    ``exclusive``: strictly between them. Anything else (a value ``kind``
    cannot read, NaN and infinities included) is one usage line: the value,
    then ``problem`` (``'0' is not a TCP port (1-65535)``), never a traceback.
    """

    def parse(value: str) -> _Number:
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} {problem}") from None
        inside = low < number < high if exclusive else low <= number <= high
        if not inside:
            raise argparse.ArgumentTypeError(f"{value!r} {problem}")
        return number

    return parse


#: A TCP port, 1-65535.
port_argument = number_argument(int, 1, 65535, "is not a TCP port (1-65535)")

#: A seed for numpy's and scikit-learn's generators, which refuse anything
#: outside 0 to 2**32 - 1 (with a traceback, after the data is generated).
seed_argument = number_argument(int, 0, 2**32 - 1, "is not a seed (0-4294967295)")


def url_argument(*schemes: str) -> Callable[[str], str]:
    """An argparse type: an absolute URL of one of ``schemes``, with a host and a valid port.

    Checked before the command does anything: an unparsable URL (``http://[::1``,
    port 99999) otherwise raised from inside httpx or websockets as a traceback,
    in ``rollback feature`` after the flag was already turned off, and a URL
    without a scheme was retried until ``--wait-seconds`` ran out.
    """
    wanted = " or ".join(f"{scheme}://" for scheme in schemes)

    def parse(value: str) -> str:
        problem = f"{value!r} is not a URL with a host ({wanted})"
        if not value.isprintable() or any(char.isspace() for char in value):
            raise argparse.ArgumentTypeError(f"{problem} (it holds spaces or control characters)")
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{problem} ({exc})") from None
        if parts.scheme not in schemes or not parts.hostname or port == 0:
            raise argparse.ArgumentTypeError(problem)
        return value

    return parse


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with every registered command group, or only the one ``argv`` names."""
    parser = argparse.ArgumentParser(
        prog="enterprisehub", description="EnterpriseHub Phase 3 services and operator commands."
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {package_version()}", help="print it"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run one feature service with uvicorn")
    serve.add_argument("service", choices=sorted(SERVICES), help="the service to run")
    serve.add_argument("--host", default="0.0.0.0", help="bind address (default 0.0.0.0)")
    serve.add_argument(
        "--port", type=port_argument, default=None, help="default: the service's port"
    )
    serve.add_argument(
        "--no-access-log",
        action="store_true",
        help="silence per-request logs (the realtime service is silent by default)",
    )
    serve.set_defaults(handler=_serve)

    migrate = commands.add_parser(
        "migrate", help="upgrade the schema as the owner and create/update the application role"
    )
    migrate.add_argument("--revision", default="head", help="target revision (default head)")
    migrate.set_defaults(handler=_migrate)

    token = commands.add_parser(
        "token",
        help="mint a JWT signed with the active key (JWT_SECRET_KEY, JWT_KEY_ID)",
        description="Mint a JWT. Scopes: "
        + "; ".join(f"{scope} ({what})" for scope, what in SCOPE_DESCRIPTIONS.items())
        + ". Lifetimes are capped per scope by JWT_MAX_TTL_<SCOPE> (for example "
        "JWT_MAX_TTL_FEED_READ).",
    )
    token.add_argument("--tenant", help="tenant id (tid claim); required")
    token.add_argument("--subject", help="agent or integration id (sub claim); required")
    token.add_argument(
        "--scope",
        action="append",
        choices=SCOPES,
        help="what the token may do (repeat for several); required",
    )
    token.add_argument(
        "--ttl", type=parse_ttl, default=3600.0, help="lifetime: seconds or 30m, 12h, 7d (1h)"
    )
    token.set_defaults(handler=_token, token_parser=token)
    from services.token_cli import add_revocation_commands

    add_revocation_commands(token)

    feed = commands.add_parser(
        "feed",
        help="print a tenant's live lead feed (WS /v1/feed) until Ctrl-C",
        description="Connect to the websocket-manager's feed and print each event as a line. "
        "Uses --token (or $ENTERPRISEHUB_TOKEN), else mints a feed:read token from "
        "JWT_SECRET_KEY/JWT_KEY_ID. Resumes after a dropped connection without gaps.",
    )
    feed.add_argument("--tenant", required=True, help="tenant id")
    feed.add_argument(
        "--url",
        type=url_argument("ws", "wss"),
        default="ws://127.0.0.1:8001/v1/feed",
        help="feed URL (default ws://127.0.0.1:8001/v1/feed)",
    )
    feed.add_argument("--subject", default="agent-1", help="agent id when minting (agent-1)")
    feed.add_argument("--token", default=None, help="a feed:read token (else minted)")
    feed.add_argument("--last-event-id", default=None, help="resume after this event")
    feed.add_argument("--json", action="store_true", help="print the raw JSON frames")
    feed.add_argument(
        "--count",
        # 0 or less exited at once, printing nothing, as if the feed were empty.
        type=number_argument(int, 1, sys.maxsize, "is not a number of events (1 or more)"),
        default=None,
        help="exit after this many events (default: never)",
    )
    feed.set_defaults(handler=_feed)

    for target in _groups_for(argv, built_in=commands.choices):
        register = _load(target)
        if register is not None:
            register(commands)
    return parser


def _groups_for(argv: Sequence[str] | None, *, built_in: Collection[str]) -> list[str]:
    """The command groups a command line needs (see ``COMMAND_GROUPS``)."""
    first = argv[0] if argv and not argv[0].startswith("-") else None
    if first is None:
        return list(COMMAND_GROUPS)
    if first in built_in:
        return []
    named = [target for target, names in COMMAND_GROUPS.items() if first in names]
    return named or list(COMMAND_GROUPS)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``enterprisehub`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    quiet = contextlib.nullcontext() if args.command == "serve" else _store_warnings_quieted()
    try:
        with quiet:
            code: int = args.handler(args)
        # Inside the try: what the pipe refuses fails here, not at the interpreter's exit.
        sys.stdout.flush()
    except SettingsError as exc:
        print(f"enterprisehub {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CommandError as exc:
        print(f"enterprisehub: {exc}", file=sys.stderr)
        return exc.code
    except BrokenPipeError:
        # The reader went away (`| head`): as Python's docs advise for SIGPIPE,
        # stdout onto devnull so the final flush does not fail again, and exit 1.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILURE
    except OSError as exc:
        # A file the operator named that cannot be read or written (--out in a
        # directory that is a file, --from a directory): the system's one line.
        print(f"enterprisehub {args.command}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    return code


if __name__ == "__main__":
    # Through the imported module, as the console script runs it: run as __main__
    # this file is a second copy of services.cli, and the CommandError the command
    # modules raise (theirs) escaped this copy's main() as a traceback.
    from services.cli import main as imported_main

    sys.exit(imported_main())
