"""What the tenant ingest budget adds to a webhook: ``IngestBudget.take`` next to a PING.

The budget (``services.realtime.budget``) is one Redis script call per request
on the ingest's path. This measures it on a real Redis on loopback (started
and stopped here): CALLS sequential ``take``s of one tenant with a rate no
call reaches (so each takes the whole path: script, answer, no refusal), and
as the floor of any Redis command through the same client and pool, as many
PINGs. Wall time is what a request waits; CPU time is this process's, i.e.
the service's share of a core.

    .venv/bin/python -m benchmarks.ingest_budget [--calls 5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from benchmarks.machine import cpu_model
from localrun.servers import start_redis
from services.common.redis import Redis, close_redis, create_redis
from services.realtime.budget import IngestBudget

WARM_UP = 200


async def _per_call(call: Callable[[], Awaitable[object]], calls: int) -> dict[str, float]:
    """Milliseconds per call of ``call()``: wall clock and this process's CPU time."""
    for _ in range(WARM_UP):
        await call()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(calls):
        await call()
    return {
        "wall_ms": round((time.perf_counter() - wall) / calls * 1000, 3),
        "cpu_ms": round((time.process_time() - cpu) / calls * 1000, 3),
    }


async def measure(redis: Redis, calls: int) -> dict[str, dict[str, float]]:
    """The two rows: the budget's ``take`` and a PING."""
    budget = IngestBudget(redis, events_per_second=1_000_000, timeout=5.0)
    return {
        "budget take": await _per_call(lambda: budget.take("tenant-bench", 1), calls),
        "PING (floor)": await _per_call(redis.ping, calls),
    }


async def _run(url: str, calls: int) -> dict[str, dict[str, float]]:
    redis = create_redis(url, max_connections=4, socket_timeout=5)
    try:
        return await measure(redis, calls)
    finally:
        await close_redis(redis)


def main(argv: list[str] | None = None) -> None:
    """Run the measurement and print a Markdown table and the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=5000)
    opts = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        server = start_redis(Path(tmp))
        try:
            rows = asyncio.run(_run(server.url, opts.calls))
        finally:
            server.stop()
    print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; nproc {os.cpu_count()}; {cpu_model()}; "
        f"Python {platform.python_version()}; redis-py {version('redis')}, "
        f"limits {version('limits')}; load average {os.getloadavg()[0]:.2f}"
    )
    print("| call | wall ms | client CPU ms |\n|---|---|---|")
    for name, row in rows.items():
        print(f"| {name} | {row['wall_ms']} | {row['cpu_ms']} |")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
