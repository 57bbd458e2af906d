"""W1: real-time feed delivery, our websocket-manager vs python-socketio + Redis.

One command runs both systems through the same steps on the same harness::

    python -m benchmarks.realtime_feed                      # the full W1 run
    python -m benchmarks.realtime_feed --clients 50 --duration 5 --rates 50,200

Postgres and Redis start on loopback (``localrun.servers``) and migrations
run; for each system two server processes start behind the one Redis, a swarm
process opens the clients (tenant by tenant, alternating between the two
servers, so every tenant's fan-out crosses Redis) and a poster process posts
events to the first server only: one event per request, and in a last step
(``--batch``, default 20) the targeted rate again through the batch webhook,
as CRMs deliver webhooks. The systems take turns step by step. With
``--server-cpus``/``--load-cpus`` (default 0 and 1 on a 2-core machine) the
servers, Postgres and Redis are pinned to one set of cores and the swarm and
poster to the other.

Per step it prints delivered frames/s, p50/p95/p99/max of accepted-to-received
latency (same clock), events lost (expected minus received, per client,
summed), and the servers' and load processes' CPU in cores. The markdown
tables go to stdout; ``--json-out`` keeps the raw results.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import os
import platform
import resource
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from benchmarks.load.control import (
    LoadProcessError,
    SwarmControl,
    free_ports,
    parse_cpus,
    pin_tree,
    run_poster,
    start_swarm,
)
from benchmarks.load.cpu import CpuMeter, process_tree
from benchmarks.load.report import StepResult, headline, ratio_table, step_table
from benchmarks.machine import cpu_model
from localrun.children import Child, ChildProcesses, StartupError, wait_http_ok
from localrun.datastores import (
    DEFAULT_MODEL_DIR,
    Datastores,
    SetupStepFailed,
    start_datastores,
)
from localrun.demo import WEBHOOK_SUBJECT, lead_event
from localrun.servers import MissingBinary, ServerFailed
from services.common.auth import issue_token
from services.common.scopes import CRM_INGEST, FEED_READ
from services.common.settings import AuthSettings

DESCRIPTION = "W1: WebSocket feed latency, ours vs python-socketio + AsyncRedisManager."
SYSTEMS = ("ours", "socketio")
DRAIN_QUIET_S = 2.0
TOKEN_TTL_S = 6 * 3600
# Earlier events of each tenant, already published (no stream id, so never
# replayed or relayed), as the event table of a system that has been running.
HISTORY_SQL = """
INSERT INTO realtime_intelligence_events
    (tenant_id, lead_id, event_type, intelligence_data, created_at, published_at)
SELECT $1, 'history-' || i, 'lead_scored', $2::jsonb,
       now() - make_interval(secs => i), now() - make_interval(secs => i)
FROM generate_series(1, $3) AS i
"""


@dataclass(frozen=True)
class Options:
    """The run's shape, from the command line."""

    systems: tuple[str, ...]
    clients: int
    tenants: int
    duration: float
    rates: tuple[float, ...]
    targeted_rate: float | None
    batch: int
    drain_timeout: float
    concurrency: int
    server_cpus: str | None
    load_cpus: str | None
    work_dir: Path
    history: int = 0


@dataclass
class Fleet:
    """One system's two server processes."""

    system: str
    servers: list[Child]
    base_urls: list[str]


def _server_argv(system: str, port: int, redis_url: str) -> list[str]:
    if system == "ours":
        return [
            sys.executable,
            "-m",
            "services.cli",
            "serve",
            "realtime",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            # The peer runs without an access log too: one log line per
            # ingest request would be measured instead of delivery.
            "--no-access-log",
        ]
    return [
        sys.executable,
        "-m",
        "benchmarks.peers.socketio_server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--redis-url",
        redis_url,
    ]


def start_fleet(
    children: ChildProcesses, system: str, env: dict[str, str], redis_url: str, cpus: str | None
) -> Fleet:
    """Start the system's two server processes and wait for their /health."""
    ports = free_ports(2)
    servers = [
        children.start(
            f"{system}-server-{i + 1}", _server_argv(system, port, redis_url), env=env, cpus=cpus
        )
        for i, port in enumerate(ports)
    ]
    base_urls = [f"http://127.0.0.1:{port}" for port in ports]
    for server, base in zip(servers, base_urls, strict=True):
        wait_http_ok(server, f"{base}/health", timeout_s=90)
    return Fleet(system=system, servers=servers, base_urls=base_urls)


def tenant_ids(count: int) -> list[str]:
    """The run's tenants."""
    return [f"bench-t{t:02d}" for t in range(count)]


def seed_history(owner_url: str, tenants: list[str], per_tenant: int) -> None:
    """Store ``per_tenant`` earlier events per tenant and analyze the table.

    A fresh table is not what a running system has: until autovacuum first
    analyzes it (about a minute after the first rows) the planner takes every
    tenant for one row long and plans the row writer's flush as a scan of
    the tenant (docs/benchmarks.md). The steps measure the system as it runs,
    so they start from a table with history and statistics.
    """
    sample = lead_event(seq=0)
    document = orjson.dumps(
        {"score": 0.5, "model_version": "history", "lead": sample["lead"], "data": sample["data"]}
    ).decode()

    async def seed() -> None:
        # The superuser: the harness writes every tenant's rows in one go.
        conn = await asyncpg.connect(owner_url)
        try:
            for tenant in tenants:
                await conn.execute(HISTORY_SQL, tenant, document, per_tenant)
            await conn.execute("ANALYZE realtime_intelligence_events")
        finally:
            await conn.close()

    asyncio.run(seed())


def write_population(opts: Options, auth: AuthSettings, fleet: Fleet) -> tuple[Path, Path]:
    """The swarm's clients file and the poster's targets file for one fleet.

    Client ``i`` belongs to tenant ``i // per_tenant`` and connects to server
    ``i % 2``, so each tenant has half its sockets on each process. The
    poster signs with one webhook token per tenant, as a CRM integration would.
    """
    per_tenant = opts.clients // opts.tenants
    clients, targets = [], []
    webhook = {}
    for t, tenant in enumerate(tenant_ids(opts.tenants)):
        webhook[tenant] = issue_token(
            auth,
            tenant_id=tenant,
            subject=WEBHOOK_SUBJECT,
            scopes=(CRM_INGEST,),
            ttl_seconds=TOKEN_TTL_S,
        )
        for a in range(per_tenant):
            agent = f"agent-{a:03d}"
            index = t * per_tenant + a
            ws_base = fleet.base_urls[index % 2].replace("http://", "ws://")
            clients.append(
                {
                    "tenant": tenant,
                    "agent": agent,
                    "base_url": ws_base,
                    "token": issue_token(
                        auth,
                        tenant_id=tenant,
                        subject=agent,
                        scopes=(FEED_READ,),
                        ttl_seconds=TOKEN_TTL_S,
                    ),
                }
            )
            targets.append({"tenant": tenant, "agent": agent, "token": webhook[tenant]})
    clients_file = opts.work_dir / f"{fleet.system}-clients.json"
    targets_file = opts.work_dir / f"{fleet.system}-targets.json"
    clients_file.write_bytes(orjson.dumps(clients))
    targets_file.write_bytes(orjson.dumps(targets))
    return clients_file, targets_file


def expected_per_client(
    clients: list[dict[str, str]], shape: str, posted: dict[str, Any]
) -> list[int]:
    """How many event frames each client should have received in a step."""
    if shape == "broadcast":
        return [int(posted["per_tenant"].get(c["tenant"], 0)) for c in clients]
    return [int(posted["per_agent"].get(f"{c['tenant']}/{c['agent']}", 0)) for c in clients]


def _drain(swarm: SwarmControl, expected_total: int, timeout_s: float) -> float:
    """Wait until every expected frame arrived, arrivals stop, or time is up."""
    started = time.monotonic()
    last_total, last_change = -1, started
    while time.monotonic() - started < timeout_s:
        total = int(swarm.ask("total")["received"])
        now = time.monotonic()
        if total >= expected_total:
            break
        if total != last_total:
            last_total, last_change = total, now
        elif now - last_change >= DRAIN_QUIET_S:
            break
        time.sleep(0.1)
    return time.monotonic() - started


def _settle(swarm: SwarmControl, timeout_s: float) -> float:
    """Wait (bounded) until no frame has arrived for a while: the previous
    step's backlog must not compete with this step for the servers' CPU."""
    started = time.monotonic()
    last_seen, last_change = -1, started
    while time.monotonic() - started < timeout_s:
        seen = int(swarm.ask("total")["seen"])
        now = time.monotonic()
        if seen != last_seen:
            last_seen, last_change = seen, now
        elif now - last_change >= DRAIN_QUIET_S:
            break
        time.sleep(0.2)
    return time.monotonic() - started


def run_step(
    *,
    opts: Options,
    children: ChildProcesses,
    fleet: Fleet,
    swarm: SwarmControl,
    clients: list[dict[str, str]],
    targets_file: Path,
    shape: str,
    rate: float,
    datastore_pids: list[int],
    batch: int = 1,
) -> StepResult:
    """One step: post at ``rate`` for ``duration``, drain, and measure."""
    settle_s = _settle(swarm, opts.drain_timeout * 4)
    meter = CpuMeter([server.pid for server in fleet.servers])
    # Postgres and Redis are measured apart: ours stores every event, the peer
    # does not, and that work would otherwise be invisible in server CPU.
    store_meter = CpuMeter(datastore_pids)
    swarm.ask("begin", since=time.time())
    meter.start()
    store_meter.start()
    posted = run_poster(
        children,
        name=f"poster-{fleet.system}-{shape}-{rate:g}-x{batch}",
        url=f"{fleet.base_urls[0]}/v1/leads/events" + ("/batch" if batch > 1 else ""),
        targets_file=targets_file,
        shape=shape,
        rate=rate,
        duration=opts.duration,
        cpus=opts.load_cpus,
        concurrency=opts.concurrency,
        batch=batch,
    )
    expected = expected_per_client(clients, shape, posted)
    drain_s = _drain(swarm, sum(expected), opts.drain_timeout)
    measured = swarm.ask("end", timeout_s=120)
    # CPU is averaged from the first post to the end of the drain; the poster's
    # interpreter start-up before that is idle time for the servers.
    window = max(time.time() - float(posted["started_at"]), 1e-9)
    server_cpu = meter.elapsed() / window
    datastore_cpu = store_meter.elapsed() / window
    counts: list[int] = measured["counts"]
    lost = sum(max(0, e - c) for e, c in zip(expected, counts, strict=True))
    extra = sum(max(0, c - e) for e, c in zip(expected, counts, strict=True))
    received = sum(counts)
    span = (measured["last"] - posted["started_at"]) if measured["last"] else 0.0
    failures = {k: v for k, v in posted["status"].items() if k != "202"}
    return StepResult(
        system=fleet.system,
        shape=shape,
        rate=rate,
        clients=len(clients),
        connected=int(measured["connected"]),
        duration_s=opts.duration,
        achieved_rate=float(posted["achieved_rate"]),
        accepted=int(posted["accepted"]),
        post_failures=failures,
        expected_frames=sum(expected),
        received_frames=received,
        lost=lost,
        extra=extra,
        frames_per_s=received / span if span > 0 else 0.0,
        latency_ms=measured["latency_ms"],
        server_cpu=server_cpu,
        datastore_cpu=datastore_cpu,
        load_cpu=(float(measured["cpu_s"]) + float(posted["cpu_s"])) / window,
        drain_s=drain_s,
        stale=int(measured["stale"]),
        settle_s=settle_s,
        disconnects=measured["disconnects"],
        ingest_ms=posted["ingest_ms"],
        batch=batch,
    )


@dataclass
class Rig:
    """One system under test, connected and ready for steps."""

    fleet: Fleet
    swarm: SwarmControl
    clients: list[dict[str, str]]
    targets_file: Path


def open_rig(
    system: str,
    *,
    opts: Options,
    children: ChildProcesses,
    stores: Datastores,
    auth: AuthSettings,
    env: dict[str, str],
) -> Rig:
    """Start one system's two servers and its swarm, and connect every client."""
    fleet = start_fleet(children, system, env, stores.redis_url, opts.server_cpus)
    clients_file, targets_file = write_population(opts, auth, fleet)
    clients: list[dict[str, str]] = orjson.loads(clients_file.read_bytes())
    swarm = start_swarm(children, system=system, clients_file=clients_file, cpus=opts.load_cpus)
    opened = swarm.ask("connect", timeout_s=300)
    _say(
        f"[{system}] {opened['connected']}/{len(clients)} clients connected"
        + (f"; failures: {opened['errors']}" if opened["failed"] else "")
    )
    if opened["connected"] == 0:
        raise LoadProcessError(f"no {system} client could connect: {opened['errors']}")
    return Rig(fleet=fleet, swarm=swarm, clients=clients, targets_file=targets_file)


def run_steps(
    rigs: list[Rig],
    *,
    opts: Options,
    children: ChildProcesses,
    datastore_pids: list[int],
    results: list[StepResult],
) -> None:
    """Every step on every system, the systems taking turns step by step.

    Interleaving (and alternating who goes first) means a change in the
    machine's background load during the run hits both systems alike instead
    of whichever happened to run second. The idle system's sockets stay open
    and cost only heartbeats. Each result is appended as soon as it is
    measured, so a failure later still leaves the earlier steps reported.
    """
    steps = [("broadcast", r, 1) for r in opts.rates]
    if opts.targeted_rate:
        steps.append(("targeted", opts.targeted_rate, 1))
        if opts.batch > 1:
            steps.append(("targeted", opts.targeted_rate, opts.batch))
    for index, (shape, rate, batch) in enumerate(steps):
        for rig in rigs if index % 2 == 0 else list(reversed(rigs)):
            result = run_step(
                opts=opts,
                children=children,
                fleet=rig.fleet,
                swarm=rig.swarm,
                clients=rig.clients,
                targets_file=rig.targets_file,
                shape=shape,
                rate=rate,
                datastore_pids=datastore_pids,
                batch=batch,
            )
            lat = result.latency_ms
            _say(
                f"[{result.system}] {result.label}: {result.frames_per_s:,.0f} frames/s, "
                f"p50 {lat['p50']:.2f} p95 {lat['p95']:.2f} p99 {lat['p99']:.2f} "
                f"max {lat['max']:.1f} ms, lost {result.lost:,}, "
                f"server CPU {result.server_cpu:.2f}, Postgres+Redis CPU "
                f"{result.datastore_cpu:.2f}, load CPU {result.load_cpu:.2f}"
            )
            results.append(result)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine_facts() -> dict[str, str]:
    """What docs/benchmarks.md records next to each run."""
    model = cpu_model()
    versions = {}
    for package in (
        "python-socketio",
        "python-engineio",
        "uvicorn",
        "websockets",
        "aiohttp",
        "redis",
        "fastapi",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return {
        # Other work on the machine competes for the same cores; the load
        # average at the start says how quiet it was.
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "cpu_model": model,
        "python": platform.python_version(),
        "versions": ", ".join(f"{k} {v}" for k, v in versions.items()),
    }


def _parse_args(argv: list[str] | None) -> tuple[Options, Path | None, bool]:
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument(
        "--systems", default=",".join(SYSTEMS), help="comma list of: ours, socketio (default both)"
    )
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per step")
    parser.add_argument(
        "--rates", default="50,200,500,2000", help="broadcast steps, events/s in aggregate"
    )
    parser.add_argument(
        "--targeted-rate", type=float, default=2000.0, help="targeted step, events/s (0 skips it)"
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=20,
        help="events per request of a second targeted step through the batch webhook "
        "(0 or 1 skips it)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=15.0,
        help="max seconds to wait for late frames after posting stops",
    )
    parser.add_argument("--concurrency", type=int, default=64, help="poster's requests in flight")
    cpus = os.cpu_count() or 1
    parser.add_argument(
        "--server-cpus",
        default="0" if cpus >= 2 else None,
        help="taskset list for servers, Postgres, Redis ('' = no pinning)",
    )
    parser.add_argument(
        "--load-cpus",
        default="1" if cpus >= 2 else None,
        help="taskset list for the swarm and the poster ('' = no pinning)",
    )
    parser.add_argument(
        "--history",
        type=int,
        default=10_000,
        help="earlier events per tenant stored (and analyzed) before the steps",
    )
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=None,
        help="datastores and logs (default: a temporary directory)",
    )
    args = parser.parse_args(argv)
    systems = tuple(s.strip() for s in args.systems.split(",") if s.strip())
    if not systems or any(s not in SYSTEMS for s in systems):
        parser.error(f"--systems takes a comma list of {', '.join(SYSTEMS)}")
    if args.clients < args.tenants or args.clients % args.tenants:
        parser.error("--clients must be a positive multiple of --tenants")
    if args.duration <= 0 or args.drain_timeout <= 0:
        parser.error("--duration and --drain-timeout must be positive")
    if args.history < 0:
        parser.error("--history must be 0 or more")
    rates = tuple(float(r) for r in args.rates.split(",") if r.strip())
    if any(r <= 0 for r in rates):
        parser.error("--rates must be positive")
    work_dir = args.work_dir or Path(tempfile.mkdtemp(prefix="w1-"))
    opts = Options(
        systems=systems,
        clients=args.clients,
        tenants=args.tenants,
        duration=args.duration,
        rates=rates,
        targeted_rate=args.targeted_rate or None,
        batch=max(1, args.batch),
        drain_timeout=args.drain_timeout,
        concurrency=args.concurrency,
        server_cpus=args.server_cpus or None,
        load_cpus=args.load_cpus or None,
        work_dir=work_dir.resolve(),
        history=args.history,
    )
    return opts, args.json_out, args.work_dir is None


@contextlib.contextmanager
def _pinned_self(cpus: str | None) -> Iterator[None]:
    """Keep the orchestrator itself off the servers' cores while it runs."""
    if cpus is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, parse_cpus(cpus))
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _raise_open_files_limit(clients: int) -> None:
    """Let the swarm and servers (which inherit it) hold a socket per client."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = clients * 2 + 1024
    if soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the chosen systems and print the tables."""
    opts, json_out, temporary_work_dir = _parse_args(argv)
    _raise_open_files_limit(opts.clients)
    command = "python -m benchmarks.realtime_feed " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    facts = machine_facts()
    per_tenant = opts.clients // opts.tenants
    auth_env = {"JWT_SECRET_KEY": secrets.token_hex(32), "JWT_KEY_ID": "w1"}
    auth = AuthSettings.from_env(**{k.lower(): v for k, v in auth_env.items()})
    _say(
        f"W1: work dir {opts.work_dir}; servers on CPUs {opts.server_cpus or 'any'}, "
        f"load on CPUs {opts.load_cpus or 'any'}"
    )
    results: list[StepResult] = []
    uses_ours = "ours" in opts.systems
    failure = None
    try:
        with (
            _pinned_self(opts.load_cpus),
            start_datastores(
                opts.work_dir,
                base_env=auth_env,
                migrate=uses_ours,
                model_dir=DEFAULT_MODEL_DIR if uses_ours else None,
                # The feed serves only tenants inside the realtime_intelligence rollout.
                flags=uses_ours,
                flag_seed='{"realtime_intelligence": true}' if uses_ours else None,
            ) as stores,
            ChildProcesses(log_dir=opts.work_dir / "logs") as children,
        ):
            if uses_ours and opts.history:
                seed_history(
                    stores.servers.postgres.owner_url, tenant_ids(opts.tenants), opts.history
                )
            if opts.server_cpus is not None:
                pin_tree(
                    [pid for root in stores.pids for pid in process_tree(root)],
                    parse_cpus(opts.server_cpus),
                )
            env = {
                **os.environ,
                **stores.service_env(),
                **auth_env,
                "ENVIRONMENT": "local",
                "LOG_LEVEL": "WARNING",
                "WS_MAX_CONNECTIONS_PER_TENANT": str(max(100, per_tenant)),
            }
            rigs = [
                open_rig(system, opts=opts, children=children, stores=stores, auth=auth, env=env)
                for system in opts.systems
            ]
            run_steps(
                rigs,
                opts=opts,
                children=children,
                datastore_pids=stores.pids,
                results=results,
            )
    except (LoadProcessError, StartupError, SetupStepFailed, MissingBinary, ServerFailed) as exc:
        # Report what was measured before the failure, then the failure.
        failure = str(exc)
    except KeyboardInterrupt:
        failure = "interrupted (Ctrl-C or SIGTERM); every child process was stopped"
    pinning = (
        f"servers, Postgres and Redis pinned to CPU {opts.server_cpus}; swarm and "
        f"poster pinned to CPU {opts.load_cpus} (taskset)"
        if opts.server_cpus and opts.load_cpus
        else "no CPU pinning"
    )
    report = "\n".join(
        [
            f"Command: `{command.strip()}`",
            f"Date: {facts['date']}; nproc {facts['nproc']}; CPU {facts['cpu_model']}; "
            f"Python {facts['python']}; {facts['versions']}; load average at start "
            f"{facts['loadavg']}, at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
            f"Shape: {opts.clients} clients over {opts.tenants} tenants, two server processes per "
            f"system behind one Redis, {opts.duration:g} s per step; {pinning}"
            + (
                f"; {opts.history:,} earlier events per tenant stored and analyzed first."
                if uses_ours and opts.history
                else "."
            ),
            "",
            step_table(sorted(results, key=lambda r: opts.systems.index(r.system))),
            "",
            ratio_table(results) if len(opts.systems) == 2 else "",
            "",
            headline(results),
        ]
    )
    print(report)
    if failure is not None:
        print(f"\nRun FAILED before it finished: {failure}")
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_bytes(
            orjson.dumps(
                {"command": command, "machine": facts, "results": [r.as_dict() for r in results]},
                option=orjson.OPT_INDENT_2,
            )
        )
    if failure is None and temporary_work_dir:
        shutil.rmtree(opts.work_dir, ignore_errors=True)
    else:
        _say(f"logs of the servers and load processes: {opts.work_dir / 'logs'}")
    return 1 if failure is not None else 0


if __name__ == "__main__":
    raise SystemExit(main())
