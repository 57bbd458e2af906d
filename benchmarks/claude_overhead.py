"""W3 Claude overhead: what property vision and coaching add to Claude's own time.

    .venv/bin/python -m benchmarks.claude_overhead [--requests 200] [--json-out FILE]

The Messages API stand-in (``localrun.standins.anthropic``) runs in its own
process and answers every call after a fixed 200 ms; S3 is moto's server in
its own process; Postgres and Redis are ``localrun.servers`` on loopback,
migrated. ml-services and coaching-engine run in this process with their real
lifespans and the real ``anthropic`` client, driven through
``httpx.ASGITransport`` (no HTTP server parsing: this measures the services'
own work). For each request: overhead = response time - 200 ms.

Cases, each at 1 and at 50 requests in flight:
- vision miss: upload of a distinct 1024x768 JPEG (decode, orient, strip,
  re-encode, claim, Claude call, ledger, store; the S3 upload runs alongside);
- vision hit: the same photos again (sha256, one indexed read, no call);
- coaching miss: a distinct 12-message transcript (metrics, prompt, Claude
  call with the cached prefix, citation check, ledger, store);
- coaching hit: the same transcripts again.
Hits make no Claude call, so their overhead is their whole response time.

Each case also reports CPU per request: of this process (the services, their
worker threads, and the in-process client) and of the processes behind them
(the stand-in, moto, Postgres, Redis), read from ``/proc``. With N requests in
flight on C cores, the last of them cannot finish before N x CPU / C: that
bound is what decides whether a p95 goal at 50 in flight can be met at all.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
import numpy as np
from PIL import Image, ImageDraw

from benchmarks.load.cpu import CpuMeter
from benchmarks.machine import cpu_model
from localrun.servers import free_port, start_all
from services.coaching.config import CoachingSettings
from services.coaching.main import create_app as create_coaching
from services.common.auth import issue_token
from services.common.flags import FlagState, write_flag
from services.common.metrics import new_registry
from services.common.redis import close_redis, create_redis
from services.common.scopes import COACHING_ANALYZE, VISION_ANALYZE
from services.common.settings import CommonSettings
from services.migrations.runner import migrate
from services.ml.config import MLSettings
from services.ml.main import create_app as create_ml
from services.ml.training import train_to_file

STANDIN_LATENCY = 0.2
APP_ROLE, APP_PASSWORD = "enterprisehub_app", "benchmark-app-password"
JWT_SECRET = "benchmark-only-signing-key-0123456789abcdef"  # noqa: S105
BUCKET = "media-bench"


def _photo(index: int) -> bytes:
    image = Image.new("RGB", (1024, 768), (index % 256, (index * 7) % 256, 90))
    ImageDraw.Draw(image).rectangle((index % 500, 100, 600, 500), fill=(20, 200, (index * 3) % 256))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=85)
    return out.getvalue()


def _transcript(index: int) -> dict[str, Any]:
    start = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
    messages = [
        {
            "id": f"msg-{i}",
            "speaker": "lead" if i % 2 == 0 else "agent",
            "text": (
                "We like the area but it looks too expensive for us, honestly."
                if i == 4
                else f"Message {i} about the house on Maple Street and our plans. When?"
            ),
            "timestamp": (start + timedelta(minutes=3 * i)).isoformat(),
        }
        for i in range(12)
    ]
    return {"agent_id": f"agent-{index}", "conversation_id": f"conv-{index}", "messages": messages}


@contextlib.contextmanager
def _process(argv: list[str], port: int) -> Iterator[int]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            with contextlib.suppress(httpx.HTTPError):
                httpx.get(f"http://127.0.0.1:{port}/", timeout=0.5, trust_env=False)
                break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"{argv[:3]} did not start")
            time.sleep(0.1)
        yield proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@dataclass
class CaseResult:
    """Response times of one case and the CPU spent while it ran."""

    seconds: list[float]
    own_cpu: float
    other_cpu: float


async def _measure(
    send: Callable[[int], Awaitable[httpx.Response]],
    indices: list[int],
    concurrency: int,
    others: CpuMeter,
) -> CaseResult:
    gate = asyncio.Semaphore(concurrency)
    seconds: list[float] = []

    async def one(index: int) -> None:
        async with gate:
            started = time.perf_counter()
            response = await send(index)
            elapsed = time.perf_counter() - started
            if response.status_code != 200:
                raise RuntimeError(f"{response.status_code}: {response.text[:300]}")
            seconds.append(elapsed)

    others.start()
    own_started = time.process_time()
    await asyncio.gather(*(one(i) for i in indices))
    return CaseResult(seconds, time.process_time() - own_started, others.elapsed())


def _row(name: str, concurrency: int, result: CaseResult, minus: float) -> dict[str, Any]:
    seconds = result.seconds
    overhead = np.asarray(seconds) - minus
    p50, p95, p99 = (float(v) * 1000 for v in np.percentile(overhead, [50, 95, 99]))
    return {
        "case": name,
        "concurrency": concurrency,
        "requests": len(seconds),
        "overhead_p50_ms": round(p50, 2),
        "overhead_p95_ms": round(p95, 2),
        "overhead_p99_ms": round(p99, 2),
        "mean_response_ms": round(statistics.fmean(seconds) * 1000, 2),
        "cpu_ms_per_request": round(result.own_cpu / len(seconds) * 1000, 2),
        "other_cpu_ms_per_request": round(result.other_cpu / len(seconds) * 1000, 2),
    }


async def _run(
    args: argparse.Namespace, env: dict[str, str], others: CpuMeter
) -> list[dict[str, Any]]:
    for key, value in env.items():
        os.environ[key] = value
    await migrate(CommonSettings.from_env())
    # Both routes are flag-gated: on for every tenant before the apps start.
    redis = create_redis(env["REDIS_URL"])
    try:
        for feature in ("property_vision", "ai_coaching"):
            await write_flag(redis, feature, FlagState(enabled=True, rollout_percentage=100))
    finally:
        await close_redis(redis)
    ml_app = create_ml(MLSettings.from_env(), registry=new_registry())
    coaching_app = create_coaching(CoachingSettings.from_env(), registry=new_registry())
    settings = CommonSettings.from_env()
    token = issue_token(
        settings,
        tenant_id="bench",
        subject="agent-1",
        scopes=[VISION_ANALYZE, COACHING_ANALYZE],
        ttl_seconds=3600,
    )
    headers = {"Authorization": f"Bearer {token}"}
    rows: list[dict[str, Any]] = []
    photos = [_photo(i) for i in range(args.requests * 2)]
    async with (
        ml_app.router.lifespan_context(ml_app),
        coaching_app.router.lifespan_context(coaching_app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=ml_app), base_url="http://ml", timeout=60
        ) as ml,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=coaching_app), base_url="http://co", timeout=60
        ) as co,
    ):

        async def vision(index: int) -> httpx.Response:
            return await ml.post(
                "/v1/ml/vision/analyses/upload?property_id=p1",
                content=photos[index],
                headers={**headers, "Content-Type": "image/jpeg"},
            )

        async def coaching(index: int) -> httpx.Response:
            return await co.post("/v1/coaching/sessions", json=_transcript(index), headers=headers)

        await vision(len(photos) - 1)  # warm-up: connections, caches, prompt cache
        await coaching(10_000)
        single = list(range(args.single))
        many = list(range(args.single, args.single + args.requests))
        for name, send in (("vision", vision), ("coaching", coaching)):
            for kind, minus in (("miss", STANDIN_LATENCY), ("hit", 0.0)):
                for indices, concurrency in ((single, 1), (many, 50)):
                    result = await _measure(send, indices, concurrency, others)
                    rows.append(_row(f"{name} {kind}", concurrency, result, minus))
    return rows


def _server_pids(base: Path) -> list[int]:
    """The postmaster's and Redis' pids (from their pid files under ``base``)."""
    pids = []
    for pidfile in (base / "postgres" / "postmaster.pid", *base.glob("**/redis.pid")):
        with contextlib.suppress(OSError, ValueError, IndexError):
            pids.append(int(pidfile.read_text().split()[0]))
    return pids


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print a markdown table."""
    parser = argparse.ArgumentParser(description="W3: Claude-backed services' own overhead")
    parser.add_argument("--requests", type=int, default=200, help="requests at 50 in flight")
    parser.add_argument("--single", type=int, default=30, help="requests one at a time")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="w3-"))
    base.chmod(0o711)
    servers = start_all(base)
    api_port, s3_port = free_port(), free_port()
    model = base / "lead_scoring.joblib"
    train_to_file(out=model, rows=5_000, seed=1)
    env = {
        "DATABASE_URL": servers.postgres.url(APP_ROLE, APP_PASSWORD),
        "MIGRATION_DATABASE_URL": servers.postgres.owner_url,
        "REDIS_URL": servers.redis.url,
        "JWT_SECRET_KEY": JWT_SECRET,
        "ML_MODEL_URI": str(model),
        "ANTHROPIC_API_KEY": "sk-benchmark",
        "ANTHROPIC_BASE_URL": f"http://127.0.0.1:{api_port}",
        "MEDIA_BUCKET": BUCKET,
        "S3_ENDPOINT_URL": f"http://127.0.0.1:{s3_port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": "us-east-1",
        "DB_POOL_SIZE": "20",
        "LOG_LEVEL": "WARNING",
    }
    standin = [
        sys.executable,
        "-m",
        "localrun.standins.anthropic",
        "--port",
        str(api_port),
        "--latency",
        str(STANDIN_LATENCY),
        "--responder",
        "benchmarks.claude_answers:respond",
    ]
    moto = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(s3_port)]
    load_before = os.getloadavg()
    try:
        with _process(standin, api_port) as standin_pid, _process(moto, s3_port) as moto_pid:
            boto3.client(
                "s3",
                endpoint_url=env["S3_ENDPOINT_URL"],
                region_name="us-east-1",
                aws_access_key_id="bench",
                aws_secret_access_key="bench",  # noqa: S106
            ).create_bucket(Bucket=BUCKET)
            # Everything the services talk to: its CPU counts against the same cores.
            others = CpuMeter([standin_pid, moto_pid, *_server_pids(base)])
            rows = asyncio.run(_run(args, env, others))
    finally:
        servers.stop()
        shutil.rmtree(base, ignore_errors=True)
    load = " ".join(
        f"{before:.1f}-{after:.1f}"
        for before, after in zip(load_before, os.getloadavg(), strict=True)
    )
    print(
        f"W3 {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs, {cpu_model()}, "
        f"Python {platform.python_version()}; stand-in latency {STANDIN_LATENCY * 1000:.0f} ms; "
        f"load average 1/5/15 min (start-end) {load}"
    )
    print(
        "| case | in flight | requests | overhead p50 ms | p95 ms | p99 ms "
        "| CPU ms/request: services | stand-ins, Postgres, Redis |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['case']} | {row['concurrency']} | {row['requests']} | "
            f"{row['overhead_p50_ms']} | {row['overhead_p95_ms']} | {row['overhead_p99_ms']} | "
            f"{row['cpu_ms_per_request']} | {row['other_cpu_ms_per_request']} |"
        )
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
