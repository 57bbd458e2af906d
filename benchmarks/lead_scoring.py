"""W2 lead scoring: per-lead latency in process and over HTTP on loopback.

    .venv/bin/python -m benchmarks.lead_scoring [--requests 5000] [--concurrency 50]

1. In process (this process, `LeadScorer`, cache bypassed so every call runs
   the model): one lead per call, and batches of 32 (ML_BATCH_SIZE), reported
   as p50/p95/p99 per lead.
2. Over HTTP: ``enterprisehub serve ml`` under uvicorn in a separate process,
   one lead per ``POST /v1/leads/score``, ``--concurrency`` requests in flight
   from an aiohttp load generator in this process: p50/p95/p99 and requests/s.
   Leads cycle through 5,000 distinct generated ones, so with the default
   ML_MODEL_CACHE_SIZE=100 nearly every request runs the model; the observed
   cache hits are printed. On a machine with 2+ CPUs the server is pinned to
   CPU 0 and the load generator to CPU 1 (``--no-pin`` turns this off).

The model is trained into a temporary directory first (about a second), so
the numbers are for the same artifact ``enterprisehub model train`` builds.
ml-services needs neither Postgres nor Redis to score, so the server is given
closed loopback ports for them and only logs that they are unreachable.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import sklearn

from benchmarks.machine import cpu_model
from localrun.servers import free_port
from services.common.auth import issue_token
from services.common.scopes import LEADS_SCORE
from services.common.scoring import LeadFeatures, LeadScorer
from services.common.settings import AuthSettings
from services.ml import datagen
from services.ml.training import train_to_file

BATCH = 32
DISTINCT_LEADS = 5000
JWT_SECRET = "benchmark-only-signing-key-0123456789abcdef"  # noqa: S105 - loopback benchmark


def _percentiles(seconds: Sequence[float]) -> tuple[float, float, float]:
    p50, p95, p99 = np.percentile(np.asarray(seconds), [50, 95, 99])
    return float(p50), float(p95), float(p99)


def bench_in_process(scorer: LeadScorer, leads: list[LeadFeatures], rounds: int) -> dict[str, Any]:
    """Time single-lead and 32-lead calls; return per-lead percentiles in seconds."""
    for lead in leads[:200]:  # warm caches of numpy/sklearn code paths
        scorer.score(lead)
    single: list[float] = []
    for i in range(rounds):
        lead = leads[i % len(leads)]
        started = time.perf_counter()
        scorer.score(lead)
        single.append(time.perf_counter() - started)
    per_lead_batch: list[float] = []
    for i in range(max(rounds // BATCH, 50)):
        start = (i * BATCH) % (len(leads) - BATCH)
        chunk = leads[start : start + BATCH]
        started = time.perf_counter()
        scorer.score_batch(chunk)
        per_lead_batch.append((time.perf_counter() - started) / BATCH)
    return {"single": _percentiles(single), "batch": _percentiles(per_lead_batch)}


def _server_env(model: Path, port: int) -> dict[str, str]:
    closed = free_port()  # nothing listens there: ml-services never queries it
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("ML_", "DATABASE_", "REDIS_", "JWT_"))
    }
    env.update(
        {
            "ENVIRONMENT": "local",
            "LOG_LEVEL": "WARNING",
            "DATABASE_URL": f"postgresql://bench:bench@127.0.0.1:{closed}/bench",
            "REDIS_URL": f"redis://127.0.0.1:{closed}/0",
            "JWT_SECRET_KEY": JWT_SECRET,
            "JWT_KEY_ID": "bench",
            "ML_MODEL_URI": str(model),
        }
    )
    return env


async def _wait_ready(base: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if server.poll() is not None:
                raise RuntimeError(f"ml-services exited with {server.returncode} during start-up")
            try:
                # /health/ml also reports the (absent) Postgres and Redis as down,
                # so readiness here is "answers and the model is loaded".
                async with session.get(f"{base}/health/ml") as response:
                    if (await response.json()).get("model_loaded") is True:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("ml-services did not become ready within 60 s")


async def _load(
    base: str, token: str, leads: list[dict[str, Any]], requests: int, concurrency: int
) -> tuple[list[float], float, int]:
    latencies: list[float] = []
    failures = 0
    next_index = 0
    headers = {"Authorization": f"Bearer {token}"}
    connector = aiohttp.TCPConnector(limit=concurrency)

    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def worker() -> None:
            nonlocal next_index, failures
            while next_index < requests:
                index = next_index
                next_index += 1
                body = {"lead_id": f"lead-{index}", "features": leads[index % len(leads)]}
                started = time.perf_counter()
                async with session.post(f"{base}/v1/leads/score", json=body) as response:
                    await response.read()
                    ok = response.status == 200
                latencies.append(time.perf_counter() - started)
                failures += 0 if ok else 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return latencies, wall, failures


async def _health(base: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.get(f"{base}/health/ml") as response:
        body: dict[str, Any] = await response.json()
        return body


def bench_http(
    model: Path, leads: list[LeadFeatures], requests: int, concurrency: int, pin: bool
) -> dict[str, Any]:
    """Run the server in its own process and drive it from this one."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "services.cli", "serve", "ml"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    if pin:
        command = ["taskset", "-c", "0", *command]
        os.sched_setaffinity(0, {1})
    server = subprocess.Popen(command, env=_server_env(model, port))
    try:
        asyncio.run(_wait_ready(base, server))
        auth = AuthSettings(jwt_secret_key=JWT_SECRET, jwt_key_id="bench")
        token = issue_token(
            auth, tenant_id="bench-tenant", subject="bench", scopes=(LEADS_SCORE,), ttl_seconds=3600
        )
        bodies = [lead.model_dump() for lead in leads]
        asyncio.run(_load(base, token, bodies, min(500, requests), concurrency))  # warm-up
        latencies, wall, failures = asyncio.run(_load(base, token, bodies, requests, concurrency))
        health = asyncio.run(_health(base))
    finally:
        server.terminate()
        server.wait(timeout=30)
        if pin:
            os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    return {
        "latency": _percentiles(latencies),
        "mean": statistics.fmean(latencies),
        "rps": requests / wall,
        "failures": failures,
        "health": health,
    }


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} µs"


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def main(argv: Sequence[str] | None = None) -> int:
    """Run W2 and print a markdown block (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5000, help="HTTP requests measured")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3000, help="in-process single-lead calls")
    parser.add_argument("--no-pin", action="store_true", help="do not taskset server/load apart")
    args = parser.parse_args(argv)
    pin = not args.no_pin and (os.cpu_count() or 1) >= 2

    # Other processes on a shared machine skew every number: record the load.
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="w2-") as tmp:
        model = Path(tmp) / "lead_scoring.joblib"
        metadata, report = train_to_file(out=model)
        leads = datagen.generate_leads(DISTINCT_LEADS, seed=2026)
        scorer = LeadScorer.load(str(model), cache_size=0)
        local = bench_in_process(scorer, leads, args.rounds)
        http = bench_http(model, leads, args.requests, args.concurrency, pin)

    single, batch, remote = local["single"], local["batch"], http["latency"]
    cache = http["health"]["cache"]
    print("## W2 lead scoring\n")
    print(
        "Command: `.venv/bin/python -m benchmarks.lead_scoring"
        + (f" --requests {args.requests} --concurrency {args.concurrency}`")
    )
    print(
        f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; nproc {os.cpu_count()}; "
        f"CPU {cpu_model()}; Python {platform.python_version()}; "
        f"scikit-learn {sklearn.__version__}; model {metadata.version} "
        f"({metadata.estimator}, held-out AUC {report.heldout_auc:.4f}); "
        f"1-min load average before/after: {load_before:.2f}/{os.getloadavg()[0]:.2f}."
    )
    print(
        "HTTP: uvicorn, one process, "
        + (
            "server pinned to CPU 0 and load generator to CPU 1 (taskset); "
            if pin
            else "unpinned; "
        )
        + f"{args.concurrency} concurrent aiohttp clients, {args.requests} requests after "
        f"a warm-up; {http['failures']} failed; score cache {cache['hits']} hits / "
        f"{cache['misses']} misses (capacity {cache['capacity']}, 5,000 distinct leads).\n"
    )
    print("| Measure | p50 | p95 | p99 | Throughput |")
    print("|---|---|---|---|---|")
    print(
        f"| In process, 1 lead per call | {_us(single[0])} | {_us(single[1])} | "
        f"{_us(single[2])} | {1 / single[0]:,.0f} leads/s (1 thread) |"
    )
    print(
        f"| In process, batch of {BATCH}, per lead | {_us(batch[0])} | {_us(batch[1])} | "
        f"{_us(batch[2])} | {1 / batch[0]:,.0f} leads/s (1 thread) |"
    )
    print(
        f"| HTTP loopback, 1 lead/request, {args.concurrency} concurrent | {_ms(remote[0])} | "
        f"{_ms(remote[1])} | {_ms(remote[2])} | {http['rps']:,.0f} requests/s |"
    )
    print(
        f"\nServer-side inference (from /health/ml, last {http['health']['window_calls']} calls): "
        f"p50 {http['health']['p50_latency_ms']} ms, p95 {http['health']['p95_latency_ms']} ms "
        f"(target p95 {http['health']['target_p95_ms']} ms)."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
