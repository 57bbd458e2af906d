"""The event poster: posts lead events to an ingest endpoint at a fixed rate.

Run by ``benchmarks.realtime_feed`` as a separate process::

    python -m benchmarks.load.poster --url http://127.0.0.1:P/v1/leads/events \
        --targets-file F --shape broadcast --rate 200 --duration 30

With ``--batch N`` (N > 1) each request carries N events of one tenant to
the batch webhook (``{"events": [...]}``), as CRMs deliver webhooks; the rate
stays in events per second.

The schedule is open-loop (request ``i`` is due at ``start + i * batch / rate``) with a
bound on requests in flight, so a slow server shows up as ``max_lag_s`` and a
lower achieved rate instead of silently stretching the step. Every loop is
bounded: exactly ``rate * duration`` events, and a hard deadline after which
whatever is still unsent or unanswered is counted, not waited for.

Prints one JSON object: how many events were accepted (202) per tenant and
per agent (so the orchestrator knows what each client should receive), the
failures by reason, and the ingest's own response-time percentiles.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from array import array
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from benchmarks.load.swarm import own_cpu, percentiles
from localrun.demo import lead_event

DESCRIPTION = "Post lead events to an ingest endpoint at a fixed rate."
DEADLINE_GRACE_S = 10.0


@dataclass(frozen=True)
class Target:
    """One agent's identity and its tenant's ingest token."""

    tenant: str
    agent: str
    token: str


Request = tuple[Target, list[str | None]]
"""One request: the tenant's token, and per event the agent it targets (None: broadcast)."""


def schedule(targets: list[Target], shape: str, count: int, batch: int = 1) -> list[Request]:
    """The requests that post ``count`` events, ``batch`` events per request.

    Requests go round-robin over tenants, and a tenant's events round-robin
    over its agents for the targeted shape, so that every client expects the
    same number of frames and a shortfall points at the system rather than
    at the draw. The last request may hold fewer events.
    """
    by_tenant: dict[str, list[Target]] = {}
    for target in targets:
        by_tenant.setdefault(target.tenant, []).append(target)
    tenants = sorted(by_tenant)
    sent: dict[str, int] = dict.fromkeys(tenants, 0)
    plan: list[Request] = []
    for i in range(-(-count // batch)):
        tenant = tenants[i % len(tenants)]
        agents = by_tenant[tenant]
        size = min(batch, count - i * batch)
        picks = [agents[(sent[tenant] + j) % len(agents)] for j in range(size)]
        sent[tenant] += size
        plan.append((picks[0], [pick.agent if shape == "targeted" else None for pick in picks]))
    return plan


class Poster:
    """Sends the planned events and tallies the answers."""

    def __init__(self, url: str, timeout_s: float, *, batched: bool = False) -> None:
        self.url = url
        self.batched = batched
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.status: Counter[str] = Counter()
        self.per_tenant: Counter[str] = Counter()
        self.per_agent: Counter[str] = Counter()
        self.response_s: array[float] = array("d")

    async def post_one(
        self, session: aiohttp.ClientSession, target: Target, agents: list[str | None], seq: int
    ) -> None:
        events = [lead_event(seq=seq + n, agent_id=agent) for n, agent in enumerate(agents)]
        body = orjson.dumps({"events": events} if self.batched else events[0])
        headers = {"Authorization": f"Bearer {target.token}", "Content-Type": "application/json"}
        started = time.perf_counter()
        try:
            async with session.post(
                self.url, data=body, headers=headers, timeout=self.timeout
            ) as response:
                await response.read()
                code = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.status[type(exc).__name__] += 1
            return
        self.response_s.append(time.perf_counter() - started)
        self.status[str(code)] += 1
        if code == 202:
            self.per_tenant[target.tenant] += len(agents)
            for agent in agents:
                if agent is not None:
                    self.per_agent[f"{target.tenant}/{agent}"] += 1

    async def run(self, plan: list[Request], rate: float, concurrency: int) -> dict[str, Any]:
        """Post ``plan`` at ``rate`` events/s with at most ``concurrency`` requests in flight."""
        connector = aiohttp.TCPConnector(limit=concurrency)
        gate = asyncio.Semaphore(concurrency)
        tasks: set[asyncio.Task[None]] = set()
        max_lag = 0.0
        sent = 0
        events = sum(len(agents) for _, agents in plan)
        per_request = events / max(len(plan), 1)

        async def guarded(target: Target, agents: list[str | None], seq: int) -> None:
            try:
                await self.post_one(session, target, agents, seq)
            finally:
                gate.release()

        cpu_start = own_cpu()  # excludes the interpreter's start-up and imports
        async with aiohttp.ClientSession(connector=connector) as session:
            start = time.perf_counter()
            deadline = start + events / rate + DEADLINE_GRACE_S
            wall_start = time.time()
            seq = 0
            for index, (target, agents) in enumerate(plan):
                due = start + index * per_request / rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                elif index % 32 == 0:
                    # Behind schedule: still let responses be read now and then.
                    await asyncio.sleep(0)
                if time.perf_counter() > deadline:
                    break
                await gate.acquire()
                max_lag = max(max_lag, time.perf_counter() - due)
                task = asyncio.create_task(guarded(target, agents, seq))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                seq += len(agents)
                sent += len(agents)
            send_end = time.perf_counter()
            remaining = max(0.1, deadline - time.perf_counter())
            if tasks:
                _done, pending = await asyncio.wait(set(tasks), timeout=remaining)
                for task in pending:
                    task.cancel()
                    self.status["unanswered at deadline"] += 1
            wall_end = time.time()
        return {
            "planned": events,
            "requests": len(plan),
            "sent": sent,
            "accepted": sum(self.per_tenant.values()),
            "status": dict(self.status),
            "per_tenant": dict(self.per_tenant),
            "per_agent": dict(self.per_agent),
            "send_seconds": send_end - start,
            "achieved_rate": sent / max(send_end - start, 1e-9),
            "max_lag_s": max_lag,
            "started_at": wall_start,
            "finished_at": wall_end,
            "ingest_ms": percentiles(self.response_s),
            "cpu_s": own_cpu() - cpu_start,
        }


def load_targets(path: Path) -> list[Target]:
    """Read the targets file the orchestrator wrote (a JSON list of objects)."""
    return [
        Target(tenant=r["tenant"], agent=r["agent"], token=r["token"])
        for r in orjson.loads(path.read_bytes())
    ]


def main(argv: list[str] | None = None) -> None:
    """Entry point: ``python -m benchmarks.load.poster``."""
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("--url", required=True)
    parser.add_argument("--targets-file", type=Path, required=True)
    parser.add_argument("--shape", choices=["broadcast", "targeted"], required=True)
    parser.add_argument("--rate", type=float, required=True, help="events per second")
    parser.add_argument("--duration", type=float, required=True, help="seconds")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    parser.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    parser.add_argument(
        "--batch", type=int, default=1, help="events per request (>1: the batch webhook body)"
    )
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.duration <= 0 or args.batch < 1:
        parser.error("--rate, --duration and --batch must be positive")
    plan = schedule(
        load_targets(args.targets_file),
        args.shape,
        max(1, round(args.rate * args.duration)),
        args.batch,
    )
    poster = Poster(args.url, args.timeout, batched=args.batch > 1)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        result = asyncio.run(poster.run(plan, args.rate, args.concurrency))
    else:
        result = uvloop.run(poster.run(plan, args.rate, args.concurrency))
    sys.stdout.buffer.write(orjson.dumps(result) + b"\n")


if __name__ == "__main__":
    main()
