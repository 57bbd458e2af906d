"""``make run``: the whole platform on this machine, on the seed's ports.

    python -m localrun                 # Ctrl-C stops everything
    python -m localrun --realtime-port 9001 --event-rate 5
    python -m localrun stop            # stops a run started elsewhere (make stop)

Starts Postgres and Redis from the local binaries on loopback, runs the
migrations, trains the lead model if its artifact is missing, creates the
feature flags, starts every service that exists on its port (realtime 8001,
ml 8002, coaching 8003, churn 8004, the rollback handler 8005, the dashboards
8501 with their metrics on 9102) and, when they are installed, Prometheus and
Alertmanager as in the cluster (`localrun.monitoring`): one scrape job per
service named as in the catalog, the project's rule files, the project's routing with rollback
triggers sent to the local rollback handler, so the loop from a fault to a
flag turned off is live. Then it mints demo tenants' tokens, streams demo
lead events into the realtime ingest and prints where to look. State (data,
logs, the JWT key of this machine) lives under ``var/run`` unless
``--state-dir`` says otherwise.

The guide it prints is meant to be pasted: every command names the
virtualenv's ``enterprisehub`` by its full path and carries the variables it
needs. A run writes its pid to ``<state-dir>/localrun.pid``; ``make stop``
(``python -m localrun stop``) stops it, and a run started after a hard kill
first stops the servers the killed one left behind (`localrun.leftovers`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import logging
import os
import secrets
import shlex
import shutil
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localrun.children import Child, ChildProcesses, StartupError, wait_http_ok
from localrun.datastores import DEFAULT_MODEL_DIR, SetupStepFailed, start_datastores
from localrun.demo import (
    DEMO_FLAG_SEED,
    DemoTenant,
    demo_tenants,
    seed_impact_history,
    stream_events,
)
from localrun.demo_analyses import seed_analyses
from localrun.leftovers import stop_leftovers, terminate
from localrun.monitoring import ROLLBACK_WEBHOOK_PATH, start_monitoring
from localrun.servers import MissingBinary, ServerFailed
from localrun.standins.aws import create_bucket, moto_server, s3_env
from services.cli import port_argument
from services.common.scopes import SCOPES
from services.common.settings import AuthSettings, ClaudeSettings

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STATE_DIR = REPO_ROOT / "var" / "run"
READY_LINE = "enterprisehub is running"
"""Printed once everything is up; the localrun test waits for it."""
PID_FILE = "localrun.pid"
STOP_TIMEOUT_S = 60.0
#: The bearer token Alertmanager presents to the rollback handler (fresh each run).
WEBHOOK_TOKEN_FILE = "rollback-webhook-token"  # noqa: S105 - a file name, not the token
#: What the operator commands (flags, rollout, rollback, impact, vision, churn)
#: need to reach this run's stores, as shell assignments (mode 0600).
OPERATOR_ENV_FILE = "operator.env"
#: The services' FAULT_INJECTION_FILE (services/common/faults.py), empty: no fault.
FAULT_FILE = "fault.json"
SCRAPE_INTERVAL = "5s"
#: The media bucket of the run's S3 stand-in (photo uploads).
MEDIA_BUCKET = "enterprisehub-media-local"
#: Where the guide's Claude stand-in listens (beside the services' 8001-8005 and 8501).
CLAUDE_STANDIN_PORT = 8090
MONITORING_BINARIES = ("prometheus", "prometheus-alertmanager")


@dataclass(frozen=True)
class ServiceSpec:
    """One service of the platform: its name, port and package."""

    name: str
    default_port: int
    module: str
    #: The catalog name (infra/catalog.py): the Kubernetes name and the
    #: Prometheus job the alert rules select on.
    job: str
    #: The module that must exist for the service to be built (its app or script).
    entry: str = "main"
    #: What answers 200 once the service is up.
    health_path: str = "/health"
    #: Whether it serves /metrics (Prometheus scrapes it then).
    metrics: bool = True
    #: A port of its own for /metrics, when its app's port does not serve them
    #: (the dashboards': Streamlit serves that one), and the setting that says so.
    metrics_port: int | None = None
    metrics_port_setting: str = ""

    def built(self) -> bool:
        """Whether the service's app module exists in this checkout yet."""
        try:
            return importlib.util.find_spec(f"{self.module}.{self.entry}") is not None
        except ModuleNotFoundError:  # the service's package itself is absent
            return False


SERVICES: tuple[ServiceSpec, ...] = (
    ServiceSpec("realtime", 8001, "services.realtime", "websocket-manager"),
    ServiceSpec("ml", 8002, "services.ml", "ml-services"),
    ServiceSpec("coaching", 8003, "services.coaching", "coaching-engine"),
    ServiceSpec("churn", 8004, "services.churn", "churn-orchestrator"),
    ServiceSpec("rollback", 8005, "services.rollback", "rollback-handler"),
    ServiceSpec(
        "dashboards",
        8501,
        "services.dashboards",
        "dashboards",
        entry="app",
        health_path="/_stcore/health",
        # The catalog's DASHBOARDS.metrics_port (the settings' default, too).
        metrics_port=9102,
        metrics_port_setting="DASHBOARDS_METRICS_PORT",
    ),
)


def metrics_port_option(spec: ServiceSpec) -> str:
    """The name its metrics port goes by in ports and ``--NAME-port`` options."""
    return f"{spec.name}-metrics"


def port_names(specs: Sequence[ServiceSpec]) -> list[str]:
    """The name of every port the services listen on (``--NAME-port``): theirs,
    and the metrics ports apart."""
    return [
        name
        for spec in specs
        for name in (spec.name, metrics_port_option(spec) if spec.metrics_port else None)
        if name is not None
    ]


def scrape_jobs(specs: Sequence[ServiceSpec], ports: Mapping[str, int]) -> dict[str, list[str]]:
    """Prometheus's jobs: each scraped service's catalog name -> its ``/metrics`` address.

    ``ports`` holds the services' ports by name and the metrics ports apart by
    `metrics_port_option`.
    """
    jobs = {}
    for spec in specs:
        if spec.metrics:
            port = ports[metrics_port_option(spec)] if spec.metrics_port else ports[spec.name]
            jobs[spec.job] = [f"127.0.0.1:{port}"]
    return jobs


class PortTaken(RuntimeError):  # noqa: N818 - reads as the condition it names
    """A service port is already in use; the message says how to choose another."""


def check_ports_free(ports: dict[str, int]) -> None:
    """Fail before starting anything if a service port is taken."""
    for name, port in ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # As uvicorn does: connections of a just-stopped server lingering
            # in TIME_WAIT do not make the port unusable, only a listener does.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                raise PortTaken(
                    f"port {port} ({name}) is already in use on 127.0.0.1 "
                    f"(see `ss -ltnp 'sport = :{port}'`); stop that process (an earlier "
                    f"`make run`? `make stop` ends it) or choose another port with "
                    f"`python -m localrun --{name}-port N`"
                ) from None


def jwt_env(state_dir: Path) -> dict[str, str]:
    """This machine's JWT key, kept in the state dir so printed tokens survive restarts."""
    key_file = state_dir / "jwt-secret"
    if not key_file.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        key_file.write_text(secrets.token_hex(32))
        key_file.chmod(0o600)
    return {"JWT_SECRET_KEY": key_file.read_text().strip(), "JWT_KEY_ID": "local"}


def _say(message: str = "") -> None:
    print(message, flush=True)


def enterprisehub_cli() -> str:
    """The console script of this interpreter's virtualenv, as an absolute path."""
    script = Path(sys.executable).parent / "enterprisehub"
    if script.exists():
        return str(script)
    return f"{shlex.quote(sys.executable)} -m services.cli"


def claude_standin_command() -> str:
    """The Messages API stand-in with schema-valid coaching and vision answers, ready to paste."""
    return (
        f"{shlex.quote(sys.executable)} -m localrun.standins.anthropic "
        f"--port {CLAUDE_STANDIN_PORT} --responder benchmarks.claude_answers:respond"
    )


def cli_with_key(state_dir: Path) -> str:
    """``enterprisehub`` with this run's JWT key in its environment, ready to paste."""
    key_file = shlex.quote(str(state_dir / "jwt-secret"))
    return f'JWT_SECRET_KEY="$(cat {key_file})" JWT_KEY_ID=local {enterprisehub_cli()}'


def write_operator_env(
    state_dir: Path, env: dict[str, str], *, inherited: Mapping[str, str]
) -> Path:
    """The stores' and the JWT key's variables for operator commands, sourced by a shell.

    The services inherit the run's own environment, so its Claude settings (a
    stand-in's ANTHROPIC_BASE_URL included) reach them; ``vision backfill`` calls
    Claude as they do, and without them it refused to run from this file.
    """
    claude = {name.upper() for name in ClaudeSettings.model_fields}
    env = {**{name: value for name, value in inherited.items() if name in claude}, **env}
    lines = [f"{name}={shlex.quote(value)}\n" for name, value in sorted(env.items())]
    return _write_secret(state_dir / OPERATOR_ENV_FILE, "".join(lines))


def operator_cli(state_dir: Path, command: str) -> str:
    """``enterprisehub COMMAND`` with this run's stores in its environment (a subshell)."""
    env_file = shlex.quote(str(state_dir / OPERATOR_ENV_FILE))
    return f"(set -a; . {env_file}; exec {enterprisehub_cli()} {command})"


def print_guide(
    *,
    started: dict[str, int],
    missing: Sequence[ServiceSpec],
    tenants: Sequence[DemoTenant],
    prometheus_url: str | None,
    alertmanager_url: str | None,
    state_dir: Path,
    event_rate: float,
    stores: str = "",
    prometheus_ui_url: str | None = None,
) -> None:
    """Tell the user where to look, with commands that work as pasted.

    ``prometheus_ui_url`` is where Prometheus's pages live (``PrometheusServer.ui_url``),
    ``prometheus_url`` itself when not given.
    """
    _say()
    _say(f"{READY_LINE} (state and logs under {state_dir}):")
    for spec in (spec for spec in SERVICES if spec.name in started):
        name, base = spec.name, f"http://127.0.0.1:{started[spec.name]}"
        if name == "dashboards":
            scraped = scrape_jobs([spec], started).get(spec.job, [])
            metrics = "".join(f"  metrics http://{address}/metrics" for address in scraped)
            _say(f"  {name:<9} {base}  (Streamlit; sign in with a token printed below){metrics}")
            continue
        _say(
            f"  {name:<9} {base}  health {base}/health  details {base}/health/detailed  "
            f"metrics {base}/metrics  API docs {base}/docs"
        )
    for spec in missing:
        _say(
            f"  {spec.name:<9} port {spec.default_port}: not built yet ({spec.job} arrives "
            "with a later issue)"
        )
    if prometheus_url and alertmanager_url:
        jobs = ", ".join(spec.job for spec in SERVICES if spec.name in started and spec.metrics)
        pages = prometheus_ui_url or prometheus_url
        _say(
            f"  prometheus {prometheus_url}  scraping {jobs} every {SCRAPE_INTERVAL}; "
            f"targets {pages}/targets  rules {pages}/rules  alerts {pages}/alerts"
        )
        # Debian's Alertmanager serves no web pages (its / says to use amtool).
        _say(
            f"  alertmanager {alertmanager_url}  (the project's routing, on loopback); "
            f"its alerts: amtool --alertmanager.url={alertmanager_url} alert query"
        )
        if "rollback" in started:
            _say(
                f"  rollback triggers (action=rollback) go to the rollback handler: "
                f"http://127.0.0.1:{started['rollback']}{ROLLBACK_WEBHOOK_PATH}; it turns the "
                "feature's flag off (see docs/observability.md)"
            )
    else:
        _say(
            "  prometheus and alertmanager not started (install the Debian packages "
            "`prometheus` and `prometheus-alertmanager`, or drop --no-prometheus)"
        )
    if stores:
        _say(stores)
    cli = cli_with_key(state_dir)
    if "realtime" in started and tenants:
        port = started["realtime"]
        tenant = tenants[0]
        agent = next(iter(tenant.agent_tokens))
        feed_url = f"ws://127.0.0.1:{port}/v1/feed"
        _say()
        _say(
            f"Demo tenants: {', '.join(t.tenant_id for t in tenants)}; "
            f"{event_rate:g} lead events/s streaming into the realtime ingest."
        )
        _say(f"Watch {tenant.tenant_id}'s live feed as {agent} (Ctrl-C to stop watching):")
        _say(f"  {cli} feed --tenant {tenant.tenant_id} --subject {agent} --url {feed_url}")
        _say("Post an event yourself (with the demo CRM's crm:ingest token):")
        _say(
            f"  curl -sS -X POST http://127.0.0.1:{port}/v1/leads/events "
            f"-H 'Authorization: Bearer {tenant.webhook_token}' "
            "-H 'Content-Type: application/json' -d @- <<< "
            '\'{"lead_id":"lead-1","event_type":"lead.created","lead":'
            '{"source":"referral","timeline":"immediate","budget_usd":650000.0,'
            '"pre_approved":true,"response_time_minutes":4.0,"email_opens":3,'
            '"email_clicks":1,"sms_replies":1,"calls_connected":1,"property_views":12,'
            '"saved_searches":1,"showings_attended":0,"days_since_last_contact":1,'
            '"days_since_created":2}}\''
        )
        _say(
            f'  (or up to 100 at once: POST {{"events": [...]}} to '
            f"http://127.0.0.1:{port}/v1/leads/events/batch; see docs/contracts.md)"
        )
        if "dashboards" in started:
            _say(
                f"Dashboards: open http://127.0.0.1:{started['dashboards']} and sign in as "
                f"{tenant.tenant_id}'s manager with this token (dashboards:view, feed:read):"
            )
            _say(f"  {tenant.dashboards_token}")
        _say(f"Mint tokens (scopes: {', '.join(SCOPES)}):")
        _say(
            f"  {cli} token --tenant {tenant.tenant_id} --subject agent-9 "
            "--scope feed:read --ttl 12h"
        )
    if (state_dir / OPERATOR_ENV_FILE).exists():
        _say(
            "Operator commands (flags, rollout, rollback, impact, vision, churn) with this "
            "run's stores; e.g. the flags, and `rollout set` turns a rolled-back feature on again:"
        )
        _say(f"  {operator_cli(state_dir, 'rollout status --environment local')}")
    if prometheus_url and "rollback" in started and "realtime" in started:
        fault = shlex.quote(str(state_dir / FAULT_FILE))
        _say(
            "See the loop from a fault to the flags turned off: make every lead ingest "
            "answer 500 (PlatformErrorRateRollback turns every feature off after its "
            "5 minutes), then end the fault and turn the features on again with `rollout set`:"
        )
        _say(f"""  echo '{{"route_prefix": "/v1/leads", "error_rate": 1.0}}' > {fault}""")
        _say(f"  : > {fault}")
    if not os.environ.get("ANTHROPIC_API_KEY"):
        _say(
            "Property vision and AI coaching answer 503 claude_not_configured: export "
            "ANTHROPIC_API_KEY before `make run`, or, offline, stop this run (Ctrl-C or "
            "`make stop`), start the project's Claude stand-in and point `make run` at it:"
        )
        _say(f"  {claude_standin_command()} &")
        _say(
            f"  ANTHROPIC_API_KEY=stand-in "
            f"ANTHROPIC_BASE_URL=http://127.0.0.1:{CLAUDE_STANDIN_PORT} "
            f"make -C {shlex.quote(str(REPO_ROOT))} run"
        )
    _say()
    _say(
        f"Press Ctrl-C to stop everything. Started in the background? `kill {os.getpid()}` "
        "or `make stop` stops it cleanly."
    )


def describe_stores(stores: Any, *, s3_url: str | None = None) -> str:
    """Where Postgres, Redis and (with ``s3_url``) the S3 stand-in run."""
    postgres = stores.servers.postgres
    redis = stores.servers.redis
    described = (
        f"  postgres  127.0.0.1:{postgres.port}  database {postgres.database}  "
        f"data {postgres.data_dir}  log {postgres.data_dir / 'server.log'}\n"
        f"            psql: psql {shlex.quote(postgres.owner_url)}\n"
        f"  redis     127.0.0.1:{redis.port}  dir {redis.dir}  log {redis.dir / 'redis.log'}  "
        f"(redis-cli -p {redis.port})"
    )
    if s3_url is not None:
        described += (
            f"\n  s3        {s3_url}  bucket {MEDIA_BUCKET} (moto, in memory: the uploaded "
            "photos go when the run stops)"
        )
    return described


def stop_running(state_dir: Path) -> int:
    """``python -m localrun stop``: stop the run that owns ``state_dir`` and its servers."""
    pid_file = state_dir / PID_FILE
    stopped = []
    pid = _live_run_pid(pid_file)
    if pid is not None:
        terminate(pid, timeout_s=STOP_TIMEOUT_S)
        stopped.append(f"make run (pid {pid})")
    stopped += stop_leftovers(state_dir)
    pid_file.unlink(missing_ok=True)
    _say(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


def _live_run_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    # Only a `python -m localrun` process: the pid may have been reused since.
    return pid if b"-m\x00localrun" in command else None


def start_services(
    children: ChildProcesses,
    specs: Sequence[ServiceSpec],
    *,
    ports: dict[str, int],
    env: dict[str, str],
    webhook_token: str,
) -> list[Child]:
    """``enterprisehub serve NAME`` for each service, on loopback, without waiting."""
    started = []
    for spec in specs:
        service_env = env
        if spec.name == "rollback":
            # Only the handler holds the credential Alertmanager presents.
            service_env = {**env, "ALERTMANAGER_WEBHOOK_TOKEN": webhook_token}
        if spec.metrics_port:
            port = ports[metrics_port_option(spec)]
            service_env = {**service_env, spec.metrics_port_setting: str(port)}
        command = ["serve", spec.name, "--host", "127.0.0.1", "--port", str(ports[spec.name])]
        started.append(
            children.start(
                spec.name, [sys.executable, "-m", "services.cli", *command], env=service_env
            )
        )
    return started


async def supervise(children: Sequence[Child], stop: asyncio.Event) -> str | None:
    """Watch the services; return a message if one exits on its own."""
    while not stop.is_set():
        for child in children:
            code = child.process.poll()
            if code is not None:
                return (
                    f"{child.name} exited with code {code}; last lines of "
                    f"{child.log_path}:\n{child.tail()}"
                )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)
    return None


async def run_until_stopped(
    *,
    services: Sequence[Child],
    ingest_url: str | None,
    tenants: Sequence[DemoTenant],
    event_rate: float,
) -> str | None:
    """Stream demo events and watch the services until Ctrl-C or a crash."""
    stop = asyncio.Event()
    streamer = None
    if ingest_url and event_rate > 0:
        streamer = asyncio.create_task(
            stream_events(ingest_url=ingest_url, tenants=tenants, rate_per_s=event_rate, stop=stop)
        )
    try:
        problem = await supervise(services, stop)
    finally:
        stop.set()
        if streamer is not None:
            answers = await streamer
            _say(f"demo events posted: {dict(answers)}")
    return problem


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m localrun", description=__doc__.split("\n")[0] if __doc__ else None
    )
    for spec in SERVICES:
        parser.add_argument(
            f"--{spec.name}-port",
            type=port_argument,
            default=spec.default_port,
            help=f"{spec.job} port (default {spec.default_port})",
        )
        if spec.metrics_port:
            parser.add_argument(
                f"--{metrics_port_option(spec)}-port",
                type=port_argument,
                default=spec.metrics_port,
                help=f"{spec.job}'s /metrics port (default {spec.metrics_port})",
            )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=DEFAULT_STATE_DIR,
        help="data, logs and the local JWT key (default var/run)",
    )
    parser.add_argument(
        "--event-rate", type=float, default=2.0, help="demo lead events per second (0 = none)"
    )
    parser.add_argument(
        "--no-prometheus", action="store_true", help="do not start Prometheus and Alertmanager"
    )
    parser.add_argument(
        "action",
        nargs="?",
        choices=("run", "stop"),
        default="run",
        help="run (default) or stop the run that owns --state-dir",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Start everything, wait for Ctrl-C, stop everything. Returns the exit code."""
    args = _parse_args(argv)
    state_dir: Path = args.state_dir.resolve()
    if args.action == "stop":
        return stop_running(state_dir)
    # A background job of a non-interactive shell starts with SIGINT ignored;
    # restore it so that `kill -INT` (and Ctrl-C after `fg`) stop the run too.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    built = [spec for spec in SERVICES if spec.built()]
    missing = [spec for spec in SERVICES if not spec.built()]
    ports = {name: getattr(args, f"{name.replace('-', '_')}_port") for name in port_names(built)}
    try:
        check_ports_free(ports)
    except PortTaken as exc:
        _say(f"error: {exc}")
        return 2
    if not built:
        _say("error: no service is built in this checkout (services/*/main.py)")
        return 2
    stopped = stop_leftovers(state_dir)
    if stopped:
        _say(f"stopped what an interrupted earlier run left running: {', '.join(stopped)}")
    auth_env = jwt_env(state_dir)
    (state_dir / PID_FILE).write_text(f"{os.getpid()}\n")
    monitored = not args.no_prometheus and all(shutil.which(b) for b in MONITORING_BINARIES)
    # An empty fault file: the banner's drill writes a fault into it (re-read live).
    (state_dir / FAULT_FILE).write_text("")
    base_env = {
        **os.environ,
        **auth_env,
        "ENVIRONMENT": "local",
        "LOG_LEVEL": "INFO",
        "FAULT_INJECTION_FILE": str(state_dir / FAULT_FILE),
    }
    _say(
        f"starting Postgres and Redis on 127.0.0.1 (state in {state_dir}); migrating; "
        "preparing the lead model and the flags ..."
    )
    try:
        with (
            start_datastores(
                state_dir,
                base_env=base_env,
                migrate=True,
                model_dir=DEFAULT_MODEL_DIR,
                flags=True,
                flag_seed=DEMO_FLAG_SEED,
            ) as stores,
            ChildProcesses(log_dir=state_dir / "logs") as children,
            contextlib.ExitStack() as standins_and_monitoring,
        ):
            env = {**base_env, **stores.service_env()}
            storage: dict[str, str] = {}
            if "ml" in ports:
                # Photo uploads need a media bucket; S3 is moto's here.
                logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request
                s3_url = standins_and_monitoring.enter_context(moto_server())
                create_bucket(s3_url, MEDIA_BUCKET)
                storage = s3_env(s3_url, media_bucket=MEDIA_BUCKET)
                env.update(storage)
            # The operator commands (`vision backfill` reads the bucket) reach it too.
            operator_env = {**auth_env, "ENVIRONMENT": "local", **stores.service_env(), **storage}
            if "realtime" in ports:
                env["DASHBOARDS_FEED_URL"] = f"ws://127.0.0.1:{ports['realtime']}/v1/feed"
            webhook_token = secrets.token_hex(32)
            services = start_services(
                children, built, ports=ports, env=env, webhook_token=webhook_token
            )
            for spec, child in zip(built, services, strict=True):
                url = f"http://127.0.0.1:{ports[spec.name]}{spec.health_path}"
                wait_http_ok(child, url, timeout_s=120)
            monitoring = None
            if monitored:
                # Only once the services answer: a scrape of one still starting
                # records up == 0, which the availability SLOs count as downtime
                # (every start fired ErrorBudgetBurnFast for four services).
                _say("starting Prometheus and Alertmanager with the project's rules and routing")
                monitoring = standins_and_monitoring.enter_context(
                    start_monitoring(
                        state_dir,
                        jobs=scrape_jobs(built, ports),
                        rollback_url=f"http://127.0.0.1:{ports['rollback']}{ROLLBACK_WEBHOOK_PATH}",
                        token_file=_write_secret(state_dir / WEBHOOK_TOKEN_FILE, webhook_token),
                        scrape_interval=SCRAPE_INTERVAL,
                    )
                )
                # `rollout advance` reads its guardrails from this Prometheus:
                # without it, the banner's command held at every run.
                operator_env["PROMETHEUS_URL"] = monitoring.prometheus.url
            write_operator_env(state_dir, operator_env, inherited=os.environ)
            tenants = demo_tenants(
                AuthSettings.from_env(
                    jwt_secret_key=auth_env["JWT_SECRET_KEY"], jwt_key_id=auth_env["JWT_KEY_ID"]
                )
            )
            tenant_ids = [t.tenant_id for t in tenants]
            asyncio.run(seed_impact_history(stores.database_url, tenant_ids))
            asyncio.run(seed_analyses(stores.database_url, tenant_ids))
            ingest = (
                f"http://127.0.0.1:{ports['realtime']}/v1/leads/events"
                if "realtime" in ports
                else None
            )
            print_guide(
                started=ports,
                missing=missing,
                tenants=tenants,
                prometheus_url=monitoring.prometheus.url if monitoring else None,
                alertmanager_url=monitoring.alertmanager.url if monitoring else None,
                state_dir=state_dir,
                event_rate=args.event_rate,
                stores=describe_stores(stores, s3_url=storage.get("S3_ENDPOINT_URL")),
                prometheus_ui_url=monitoring.prometheus.ui_url() if monitoring else None,
            )
            try:
                problem = asyncio.run(
                    run_until_stopped(
                        services=services,
                        ingest_url=ingest,
                        tenants=tenants,
                        event_rate=args.event_rate,
                    )
                )
            except KeyboardInterrupt:
                problem = None
            _say("stopping Prometheus, Alertmanager, the services, Redis and Postgres ...")
            if problem:
                _say(f"error: {problem}")
                return 1
    except KeyboardInterrupt:
        _say("interrupted during start-up; everything started so far is stopped")
        return 130
    except (MissingBinary, ServerFailed, SetupStepFailed, StartupError) as exc:
        _say(f"error: {exc}")
        return 1
    finally:
        _forget_pid(state_dir)
    _say("stopped cleanly")
    return 0


def _write_secret(path: Path, value: str) -> Path:
    """Write ``value`` to ``path`` readable by this user only; return the path."""
    path.unlink(missing_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as handle:
        handle.write(value)
    return path


def _forget_pid(state_dir: Path) -> None:
    pid_file = state_dir / PID_FILE
    with contextlib.suppress(OSError, ValueError):
        if int(pid_file.read_text().strip()) == os.getpid():
            pid_file.unlink()


if __name__ == "__main__":
    raise SystemExit(main())
