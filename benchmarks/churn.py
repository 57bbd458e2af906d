"""W4 churn monitoring: one detection pass at scale, and delivery under faults.

    .venv/bin/python -m benchmarks.churn [--leads 100000] [--tenants 50]
        [--fault-leads 5000] [--big-tenant 4000] [--concurrency 32]
        [--skip-pass] [--skip-fault]

Both parts run against a real Postgres 15 started under a temporary directory
(``localrun.servers``), migrated with ``enterprisehub migrate``, and the
LeadConnector stand-in (``localrun.standins.leadconnector``).

1. Pass: ``--leads`` leads over ``--tenants`` tenants are loaded with
   engagement aggregates (about 95% recently engaged, 5% silent for weeks),
   then one ``ChurnRuntime.run_pass`` in a fresh child process scores every
   lead with the calibrated model, stores the risk state, stages the
   interventions (rows, outbox rows and delivery jobs). Reported: wall time
   of the pass and the child's peak RSS (``ru_maxrss``; the model and the
   pass only, not the loading), the leads written, and the wall time of the
   next pass over the same leads (the steady state of every interval).
2. Fault: ``--fault-leads`` at-risk leads over the tenants, one holding
   ``--big-tenant``; two replicas (``enterprisehub serve churn``), the stand-in
   answering 5% 429 (Retry-After 1 s), 5% 503 and 3% timeouts after accepting;
   the first replica is SIGKILLed when a third of the sends are delivered.
   Reported: detection-to-delivery p50/p99 per tenant (stored ``detected_at``
   against the stand-in's receive time of each key), the big tenant and the
   worst small tenant, and deliveries per idempotency key.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.load.cpu import cpu_seconds, process_tree
from benchmarks.machine import cpu_model
from localrun.datastores import start_datastores
from localrun.servers import free_port
from localrun.standins.leadconnector import Faults, StandinServer
from services.churn.training import train_to_file

JWT_ENV = {
    "ENVIRONMENT": "local",
    "JWT_SECRET_KEY": "benchmark-signing-key-0123456789abcdef",
    "JWT_KEY_ID": "bench-1",
}
STANDIN_KEY = "bench-standin-key"
#: Detection is gated by the flag: on for every tenant measured.
CHURN_ON = '{"churn_prevention": true}'
ROOT = Path(__file__).resolve().parents[1]


def _lead_records(tenant: str, count: int, silent_share: float, seed: int) -> list[tuple[Any, ...]]:
    rng = np.random.default_rng(seed)
    now = datetime.now(UTC)
    silent = rng.random(count) < silent_share
    records = []
    for i in range(count):
        if silent[i]:
            quiet_days, inbound, unanswered = rng.uniform(25, 60), 0.0, int(rng.integers(3, 8))
        else:
            quiet_days, inbound, unanswered = rng.uniform(0, 3), rng.uniform(1, 6), 0
        created = now - timedelta(days=float(rng.uniform(max(quiet_days, 1), 180)))
        records.append(
            (
                tenant,
                f"lead-{i}",
                f"contact-{tenant}-{i}",
                "UTC",
                int(rng.integers(0, 4)),
                created,
                now - timedelta(days=float(quiet_days)),
                now - timedelta(hours=float(rng.uniform(1, 48))),
                inbound,
                float(rng.uniform(1, 5)),
                float(rng.poisson(2)),
                float(rng.poisson(0.3)) if not silent[i] else 0.0,
                now,
                unanswered,
            )
        )
    return records


COLUMNS = (
    "tenant_id", "lead_id", "crm_contact_id", "timezone", "pipeline_stage", "created_at",
    "last_inbound_at", "last_outbound_at", "inbound_recent", "outbound_recent", "opens_recent",
    "appointments_recent", "decay_at", "unanswered_outbound",
)  # fmt: skip


async def _load(owner_url: str, tenants: dict[str, int], silent_share: float) -> None:
    import asyncpg

    conn = await asyncpg.connect(owner_url)
    try:
        for index, (tenant, count) in enumerate(tenants.items()):
            await conn.execute("INSERT INTO churn_tenants (tenant_id) VALUES ($1)", tenant)
            await conn.copy_records_to_table(
                "churn_leads",
                records=_lead_records(tenant, count, silent_share, seed=index),
                columns=COLUMNS,
            )
        await conn.execute("ANALYZE churn_leads")
    finally:
        await conn.close()


def _service_env(stores_env: dict[str, str], model: Path, standin_url: str) -> dict[str, str]:
    return {
        **os.environ,
        **JWT_ENV,
        **stores_env,
        "CHURN_MODEL_URI": model.as_uri(),
        "GHL_API_KEY": STANDIN_KEY,
        "GHL_BASE_URL": standin_url,
        "GHL_TIMEOUT_SECONDS": "2",
        "CHURN_RETRY_BASE_SECONDS": "1",
        "CHURN_RETRY_MAX_SECONDS": "5",
        "CHURN_INTERVENTION_RETRY_COUNT": "6",
        "CHURN_MAX_CONTACTS_PER_DAY": "5",
        "CHURN_QUIET_HOURS_START": "3",
        "CHURN_QUIET_HOURS_END": "4",
        "LOG_LEVEL": "WARNING",
    }


async def _child_pass() -> None:
    """Run in the child: one pass over every tenant; print JSON."""
    from prometheus_client import CollectorRegistry

    from services.churn.config import ChurnSettings
    from services.churn.main import build_crm
    from services.churn.metrics import ChurnMetrics
    from services.churn.model import ChurnModel
    from services.churn.runtime import ChurnRuntime
    from services.common.database import Database
    from services.common.flags import FlagCache, openfeature_client
    from services.common.redis import close_redis, create_redis_from_settings

    settings = ChurnSettings.from_env()
    db = await Database.connect(settings)
    redis = create_redis_from_settings(settings)
    registry = CollectorRegistry()
    flags = FlagCache(redis, registry=registry)
    model = ChurnModel.load(settings.churn_model_uri)
    # As in the service: the flag decided through OpenFeature, once per tenant.
    async with flags.running():
        with openfeature_client(flags, registry=registry, name="churn") as flag_client:
            runtime = ChurnRuntime(
                settings=settings,
                db=db,
                model=model,
                metrics=ChurnMetrics(registry),
                crm=build_crm(settings),
                flags=flags,
                flag_client=flag_client,
            )
            await runtime.app.open_async()
            baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            cpu_started = time.process_time()
            started = time.perf_counter()
            summary = await runtime.run_pass()
            seconds = time.perf_counter() - started
            pass_cpu_seconds = time.process_time() - cpu_started
            # The next pass over the same leads: what every CHURN_MONITORING_INTERVAL costs
            # once the risk states are stored and the interventions staged.
            started = time.perf_counter()
            steady = await runtime.run_pass()
            steady_seconds = time.perf_counter() - started
            await runtime.stop()
    await db.close()
    await close_redis(redis)
    print(
        json.dumps(
            {
                "seconds": seconds,
                # This process only: Postgres' own work runs in its backends.
                "cpu_seconds": pass_cpu_seconds,
                "load_average": os.getloadavg(),
                "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "rss_before_pass_mib": baseline / 1024,
                "scored": sum(t.scored for t in summary.tenants),
                "interventions": sum(t.interventions for t in summary.tenants),
                "sends_queued": sum(t.sends_queued for t in summary.tenants),
                "tenants": len(summary.tenants),
                "leads_written": sum(t.updated for t in summary.tenants),
                "steady_pass_seconds": steady_seconds,
                "steady_leads_written": sum(t.updated for t in steady.tenants),
            }
        )
    )


def _postgres_cpu_seconds(data_dir: Path) -> float:
    """The postmaster's CPU, its exited backends' and its live backends'."""
    postmaster = int((data_dir / "postmaster.pid").read_text().split()[0])
    live = sum(cpu_seconds(pid) for pid in process_tree(postmaster) if pid != postmaster)
    return cpu_seconds(postmaster, reaped_children=True) + live


def _replica(
    env: dict[str, str], log: Path, *, scheduler: bool, concurrency: int
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "serve", "churn", "--host", "127.0.0.1",
             "--port", str(port), "--no-access-log"],
            cwd=ROOT,
            env={
                **env,
                "CHURN_SCHEDULER_ENABLED": "true" if scheduler else "false",
                # CHURN_MONITORING_INTERVAL stays at its default (60 s): the
                # first pass flags every lead; recovery has its own clock.
                "CHURN_WORKER_CONCURRENCY": str(concurrency),
            },
            stdout=out,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    return process, port


async def _wait_ready(port: int) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(600):
            try:
                if (await client.get(f"http://127.0.0.1:{port}/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("replica did not start")


async def _outbox_counts(owner_url: str) -> Counter[str]:
    import asyncpg

    conn = await asyncpg.connect(owner_url)
    try:
        rows = await conn.fetch("SELECT status, count(*) AS n FROM churn_outbox GROUP BY status")
    finally:
        await conn.close()
    return Counter({row["status"]: row["n"] for row in rows})


async def _fault_run(
    stores: Any, model: Path, args: argparse.Namespace, work: Path
) -> dict[str, Any]:
    import asyncpg

    small = (args.fault_leads - args.big_tenant) // (args.tenants - 1)
    tenants = {"big": args.big_tenant, **{f"small-{i:02d}": small for i in range(args.tenants - 1)}}
    await _load(stores.servers.postgres.owner_url, tenants, silent_share=1.0)
    faults = Faults(
        rate_limited=0.05, server_error=0.05, timeout_after_accept=0.03, timeout_seconds=4, seed=1
    )
    with StandinServer(api_key=STANDIN_KEY, faults=faults) as standin:
        env = _service_env(stores.service_env(), model, standin.url)
        log = work / "replicas.log"
        victim, port_a = _replica(env, log, scheduler=False, concurrency=args.concurrency)
        survivor, port_b = _replica(env, log, scheduler=True, concurrency=args.concurrency)
        started = time.monotonic()
        killed_at = None
        replica_cpu = {victim.pid: 0.0, survivor.pid: 0.0}
        postgres_dir = stores.servers.postgres.data_dir
        try:
            await asyncio.gather(_wait_ready(port_a), _wait_ready(port_b))
            # From here on: CPU of the fault run itself (start-up excluded).
            ready_cpu = {pid: cpu_seconds(pid) for pid in replica_cpu}
            postgres_cpu = _postgres_cpu_seconds(postgres_dir)
            own_cpu = time.process_time()
            owner = stores.servers.postgres.owner_url
            while time.monotonic() - started < args.fault_timeout:
                counts = await _outbox_counts(owner)
                total = sum(counts.values())
                done = counts["delivered"] + counts["dead_letter"]
                for process in (victim, survivor):
                    if process.poll() is None:
                        replica_cpu[process.pid] = cpu_seconds(process.pid)
                if killed_at is None and total and done >= total / 3:
                    victim.send_signal(signal.SIGKILL)
                    killed_at = time.monotonic() - started
                if total and done == total and total >= args.fault_leads:
                    break
                await asyncio.sleep(0.5)
            cpu = {
                "replicas": sum(replica_cpu.values()) - sum(ready_cpu.values()),
                "postgres": _postgres_cpu_seconds(postgres_dir) - postgres_cpu,
                # The stand-in serves from a thread of this process.
                "benchmark_and_standin": time.process_time() - own_cpu,
            }
        finally:
            for process in (victim, survivor):
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in (victim, survivor):
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
        stats = standin.standin.stats()
    conn = await asyncpg.connect(stores.servers.postgres.owner_url)
    try:
        rows = await conn.fetch(
            "SELECT o.tenant_id, o.idempotency_key, o.status, "
            "extract(epoch FROM i.detected_at)::float8 AS detected "
            "FROM churn_outbox o JOIN churn_interventions i USING (intervention_id)"
        )
    finally:
        await conn.close()
    received = {d["key"]: d["received_at"] for d in stats["deliveries"]}
    per_key = Counter(d["key"] for d in stats["deliveries"])
    latencies: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        if row["idempotency_key"] in received:
            latencies[row["tenant_id"]].append(received[row["idempotency_key"]] - row["detected"])
    per_tenant = {
        t: (float(np.percentile(v, 50)), float(np.percentile(v, 99)), len(v))
        for t, v in latencies.items()
    }
    first_detected = min(row["detected"] for row in rows) if rows else 0.0
    pass_seconds = (max(row["detected"] for row in rows) - first_detected) if rows else 0.0
    # Sends received at the stand-in per 10 s after the first detection.
    timeline = Counter(int((t - first_detected) // 10) for t in received.values())
    small_p99 = max((p99 for t, (_, p99, _) in per_tenant.items() if t != "big"), default=None)
    sends = len(rows)
    return {
        "sends": sends,
        "concurrency_per_replica": args.concurrency,
        "status": dict(Counter(row["status"] for row in rows)),
        "cpu_seconds": cpu,
        "cpu_ms_per_send": {k: 1000 * v / max(sends, 1) for k, v in cpu.items()},
        "killed_after_seconds": killed_at,
        "detection_spread_seconds": pass_seconds,
        "received_per_10s": [timeline[i] for i in range(max(timeline, default=-1) + 1)],
        "drain_seconds": time.monotonic() - started,
        "big_tenant_p50_p99": per_tenant.get("big", (None, None, 0))[:2],
        "worst_small_tenant_p99": small_p99,
        "small_tenant_p50_median": float(
            np.median([p50 for t, (p50, _, _) in per_tenant.items() if t != "big"])
        )
        if len(per_tenant) > 1
        else None,
        "deliveries_per_key": dict(Counter(per_key.values())),
        "stand_in_results": stats["results"],
    }


async def _run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    model = args.model or work / "churn_risk.joblib"
    if args.model is None:
        train_to_file(out=model)
    result: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{os.cpu_count()} cores, {cpu_model()}, {platform.python_version()}",
        "load_average": os.getloadavg(),
    }
    if not args.skip_pass:
        result["pass"] = await _pass_run(args, work, model)
    if not args.skip_fault:
        with start_datastores(
            work / "fault", base_env=JWT_ENV, flags=True, flag_seed=CHURN_ON
        ) as stores:
            result["fault"] = await _fault_run(stores, model, args, work)
    return result


async def _pass_run(args: argparse.Namespace, work: Path, model: Path) -> dict[str, Any]:
    with start_datastores(
        work / "pass", base_env=JWT_ENV, flags=True, flag_seed=CHURN_ON
    ) as stores:
        per_tenant = args.leads // args.tenants
        tenants = {f"tenant-{i:02d}": per_tenant for i in range(args.tenants)}
        await _load(stores.servers.postgres.owner_url, tenants, silent_share=0.05)
        with StandinServer(api_key=STANDIN_KEY) as standin:
            env = _service_env(stores.service_env(), model, standin.url)
            # A child process, so that its peak RSS is the pass's alone.
            child = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "benchmarks.churn", "--child-pass"],
                cwd=ROOT, env=env, capture_output=True, text=True, check=False,
            )  # fmt: skip
        if child.returncode != 0:
            raise RuntimeError(child.stderr[-3000:])
    result: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    """Run W4 and print the result as JSON."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--tenants", type=int, default=50)
    parser.add_argument("--fault-leads", type=int, default=5000)
    parser.add_argument("--big-tenant", type=int, default=4000)
    parser.add_argument("--fault-timeout", type=float, default=900)
    parser.add_argument(
        "--concurrency", type=int, default=32, help="CHURN_WORKER_CONCURRENCY of each replica"
    )
    parser.add_argument("--skip-fault", action="store_true")
    parser.add_argument("--skip-pass", action="store_true")
    parser.add_argument(
        "--model", type=Path, default=None, help="an artifact from `churn train` (default: train)"
    )
    parser.add_argument("--child-pass", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_pass:
        asyncio.run(_child_pass())
        return 0
    work = Path(tempfile.mkdtemp(prefix="bench-churn-"))
    # Postgres runs as the postgres user, which must traverse this directory.
    work.chmod(0o711)
    print(json.dumps(asyncio.run(_run(args, work)), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
