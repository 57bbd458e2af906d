"""The WebSocket client swarm: many feed clients in one process, driven over stdio.

Run by ``benchmarks.realtime_feed`` as
``python -m benchmarks.load.swarm --system ours --clients-file F``; it reads
one JSON command per line on stdin and answers one JSON line on stdout:

- ``{"cmd": "connect"}``: open every client (bounded concurrency, bounded
  retries); answers how many connected and why the others failed.
- ``{"cmd": "begin", "since": T}``: zero the counters and start recording a
  step; frames of events accepted before ``T`` are counted as stale, not as
  this step's (a backlog of the previous step must not pass for this one).
- ``{"cmd": "total"}``: event frames received since ``begin`` (to see the
  step drain) and ever (to see the previous step's backlog settle).
- ``{"cmd": "end"}``: stop recording; answers per-client counts, latency
  percentiles, first/last receive times and the swarm's own CPU seconds.
- ``{"cmd": "quit"}``.

Latency is ``time.time()`` at receive minus the server's ``accepted_at``:
both come from the same machine's clock. It includes any queueing in this
process, which is why the step result also carries this process's CPU use: a
swarm near 100% of its core is measuring itself as much as the server.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import orjson

from benchmarks.load.wire import EVENT, PING, WIRES, Wire

CONNECT_CONCURRENCY = 50
CONNECT_ATTEMPTS = 3
CONNECT_TIMEOUT_S = 15.0


@dataclass
class ClientSpec:
    """One simulated agent: which server it talks to and with which token."""

    index: int
    tenant: str
    agent: str
    token: str
    base_url: str


@dataclass
class Recorder:
    """What the swarm measured since the last ``begin``."""

    clients: int
    recording: bool = False
    counts: list[int] = field(default_factory=list)
    latencies: array[float] = field(default_factory=lambda: array("d"))
    first: float = 0.0
    last: float = 0.0
    cpu_start: float = 0.0
    since: float = 0.0
    stale: int = 0
    seen: int = 0  # every event frame since start, recording or not

    def reset(self, since: float) -> None:
        """Start a step: only events accepted at or after ``since`` count."""
        self.counts = [0] * self.clients
        self.latencies = array("d")
        self.first = 0.0
        self.last = 0.0
        self.stale = 0
        self.since = since
        self.cpu_start = own_cpu()
        self.recording = True


def own_cpu() -> float:
    """User plus system CPU seconds this process has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def percentiles(samples: array[float]) -> dict[str, float]:
    """p50/p95/p99/max/mean of latency samples, in milliseconds."""
    if not samples:
        return {
            "n": 0,
            "p50": float("nan"),
            "p95": float("nan"),
            "p99": float("nan"),
            "max": float("nan"),
            "mean": float("nan"),
        }
    values = np.frombuffer(samples, dtype=np.float64) * 1000.0
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {
        "n": int(values.size),
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "max": float(values.max()),
        "mean": float(values.mean()),
    }


class Swarm:
    """Holds the clients' connections and counts what they receive."""

    def __init__(self, wire: Wire, specs: list[ClientSpec]) -> None:
        self.wire = wire
        self.specs = specs
        self.recorder = Recorder(clients=len(specs))
        self.recorder.counts = [0] * len(specs)
        self.connected: set[int] = set()
        self.disconnected: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    async def connect_all(self) -> dict[str, Any]:
        """Open every client; return counts and failure reasons."""
        # One connection per client, as separate agents' browsers would have;
        # the default connector limit of 100 would serialise them otherwise.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, force_close=True),
        )
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
        ready = [asyncio.get_running_loop().create_future() for _ in self.specs]
        for spec, done in zip(self.specs, ready, strict=True):
            self._tasks.append(asyncio.create_task(self._run_client(spec, gate, done)))
        await asyncio.gather(*ready)
        return {
            "connected": len(self.connected),
            "failed": len(self.specs) - len(self.connected),
            "errors": dict(self.failures),
        }

    async def _open(
        self, spec: ClientSpec, gate: asyncio.Semaphore
    ) -> aiohttp.ClientWebSocketResponse | None:
        assert self._session is not None
        reason = "not attempted"
        for attempt in range(CONNECT_ATTEMPTS):
            async with gate:
                ws: aiohttp.ClientWebSocketResponse | None = None
                try:
                    async with asyncio.timeout(CONNECT_TIMEOUT_S):
                        ws = await self._session.ws_connect(
                            self.wire.url(spec.base_url, spec.token),
                            autoping=True,
                            heartbeat=None,
                            max_msg_size=0,
                        )
                        await self.wire.handshake(ws, spec.token)
                        return ws
                # TypeError: a close or binary frame where the handshake expects text.
                except (aiohttp.ClientError, TimeoutError, RuntimeError, TypeError) as exc:
                    reason = f"{type(exc).__name__}: {str(exc)[:120]}"
                    if ws is not None:
                        await ws.close()
            if attempt == CONNECT_ATTEMPTS - 1:
                self.failures[reason] += 1
            else:
                await asyncio.sleep(0.5 * (attempt + 1))
        return None

    async def _run_client(
        self, spec: ClientSpec, gate: asyncio.Semaphore, ready: asyncio.Future[None]
    ) -> None:
        try:
            ws = await self._open(spec, gate)
        finally:
            # Whatever happened, connect_all must not wait for this client forever.
            ready.set_result(None)
        if ws is None:
            return
        self.connected.add(spec.index)
        parse = self.wire.parse
        rec = self.recorder
        index = spec.index
        clock = time.time
        try:
            # The hot loop: one clock read and one JSON parse a frame, two
            # appends an event.
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                now = clock()
                kind, accepted = parse(msg.data)
                if kind == EVENT:
                    for accepted_at in accepted:
                        rec.seen += 1
                        if rec.recording and accepted_at < rec.since:
                            # A late frame of the previous step: not this step's.
                            rec.stale += 1
                        elif rec.recording:
                            rec.counts[index] += 1
                            rec.latencies.append(now - accepted_at)
                            if not rec.first:
                                rec.first = now
                            rec.last = now
                elif kind == PING:
                    await self.wire.answer_ping(ws)
            self.disconnected[f"closed by server: {ws.close_code}"] += 1
        except (aiohttp.ClientError, ValueError, KeyError) as exc:
            self.disconnected[f"{type(exc).__name__}: {str(exc)[:120]}"] += 1
        finally:
            self.connected.discard(spec.index)

    def end(self) -> dict[str, Any]:
        """Stop recording and summarise the step."""
        rec = self.recorder
        rec.recording = False
        return {
            "counts": rec.counts,
            "latency_ms": percentiles(rec.latencies),
            "first": rec.first,
            "last": rec.last,
            "cpu_s": own_cpu() - rec.cpu_start,
            "stale": rec.stale,
            "connected": len(self.connected),
            "disconnects": dict(self.disconnected),
        }

    async def close(self) -> None:
        """Cancel every client and close the HTTP session."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()


def load_specs(path: Path) -> list[ClientSpec]:
    """Read the clients file the orchestrator wrote (a JSON list of objects)."""
    rows = orjson.loads(path.read_bytes())
    return [
        ClientSpec(
            index=i, tenant=r["tenant"], agent=r["agent"], token=r["token"], base_url=r["base_url"]
        )
        for i, r in enumerate(rows)
    ]


async def _serve_commands(swarm: Swarm) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def reply(obj: dict[str, Any]) -> None:
        sys.stdout.buffer.write(orjson.dumps(obj) + b"\n")
        sys.stdout.buffer.flush()

    while line := await reader.readline():
        request = orjson.loads(line)
        command = request.get("cmd")
        if command == "connect":
            reply(await swarm.connect_all())
        elif command == "begin":
            swarm.recorder.reset(float(request.get("since", 0.0)))
            reply({"ok": True})
        elif command == "total":
            reply(
                {
                    "received": sum(swarm.recorder.counts),
                    "seen": swarm.recorder.seen,
                    "connected": len(swarm.connected),
                }
            )
        elif command == "end":
            reply(swarm.end())
        elif command == "quit":
            break
        else:
            reply({"error": f"unknown command {command!r}"})
    # stdin closed or quit: the orchestrator is gone or done.
    await swarm.close()


def main(argv: list[str] | None = None) -> None:
    """Entry point: ``python -m benchmarks.load.swarm``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--system", choices=sorted(WIRES), required=True)
    parser.add_argument("--clients-file", type=Path, required=True)
    args = parser.parse_args(argv)
    swarm = Swarm(WIRES[args.system](), load_specs(args.clients_file))
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard]
        asyncio.run(_serve_commands(swarm))
    else:
        uvloop.run(_serve_commands(swarm))


if __name__ == "__main__":
    main()
