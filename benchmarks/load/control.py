"""Driving the swarm and poster processes from the orchestrator."""

from __future__ import annotations

import os
import select
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from localrun.children import Child, ChildProcesses
from localrun.servers import free_port


class LoadProcessError(RuntimeError):
    """A load process died, answered with an error, or did not answer in time."""


class SwarmControl:
    """The orchestrator's end of the swarm's stdin/stdout command channel."""

    def __init__(self, child: Child) -> None:
        self.child = child
        assert child.process.stdin is not None
        assert child.process.stdout is not None
        self._stdin = child.process.stdin
        self._stdout = child.process.stdout

    def ask(self, command: str, timeout_s: float = 30.0, **fields: Any) -> dict[str, Any]:
        """Send one command and wait (bounded) for its one-line answer."""
        try:
            self._stdin.write(orjson.dumps({"cmd": command, **fields}) + b"\n")
            self._stdin.flush()
        except BrokenPipeError:
            raise LoadProcessError(f"swarm exited:\n{self.child.tail()}") from None
        ready, _, _ = select.select([self._stdout], [], [], timeout_s)
        if not ready:
            raise LoadProcessError(f"swarm did not answer {command!r} within {timeout_s:.0f}s")
        line = self._stdout.readline()
        if not line:
            raise LoadProcessError(f"swarm exited during {command!r}:\n{self.child.tail()}")
        answer: dict[str, Any] = orjson.loads(line)
        if "error" in answer:
            raise LoadProcessError(f"swarm: {answer['error']}")
        return answer


def start_swarm(
    children: ChildProcesses, *, system: str, clients_file: Path, cpus: str | None
) -> SwarmControl:
    """Start the client swarm process with a command pipe."""
    child = children.start(
        f"swarm-{system}",
        [
            sys.executable,
            "-m",
            "benchmarks.load.swarm",
            "--system",
            system,
            "--clients-file",
            str(clients_file),
        ],
        env=os.environ.copy(),
        cpus=cpus,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    return SwarmControl(child)


def run_poster(
    children: ChildProcesses,
    *,
    name: str,
    url: str,
    targets_file: Path,
    shape: str,
    rate: float,
    duration: float,
    cpus: str | None,
    concurrency: int,
    batch: int = 1,
) -> dict[str, Any]:
    """Run one poster process to completion (bounded) and return its summary."""
    child = children.start(
        name,
        [
            sys.executable,
            "-m",
            "benchmarks.load.poster",
            "--url",
            url,
            "--targets-file",
            str(targets_file),
            "--shape",
            shape,
            "--rate",
            f"{rate:g}",
            "--duration",
            f"{duration:g}",
            "--concurrency",
            str(concurrency),
            "--batch",
            str(batch),
        ],
        env=os.environ.copy(),
        cpus=cpus,
        stdout=subprocess.PIPE,
    )
    try:
        # The poster's own deadline is duration + 10 s; this one only guards a hang.
        out, _ = child.process.communicate(timeout=duration + 60)
    except subprocess.TimeoutExpired:
        children.stop(child)
        raise LoadProcessError(f"{name} did not finish:\n{child.tail()}") from None
    children.stop(child)
    if child.process.returncode != 0 or not out.strip():
        raise LoadProcessError(f"{name} failed (exit {child.process.returncode}):\n{child.tail()}")
    result: dict[str, Any] = orjson.loads(out.strip().splitlines()[-1])
    return result


def free_ports(count: int) -> list[int]:
    """``count`` different ports free on 127.0.0.1 right now (`localrun.servers.free_port`)."""
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def pin_tree(pids: Iterable[int], cpus: set[int]) -> None:
    """Pin every thread of the given processes to ``cpus`` (best effort).

    Used for Postgres and Redis, which localrun starts unpinned; threads are
    pinned one by one because affinity is per thread on Linux.
    """
    for pid in pids:
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            continue
        for tid in tids:
            try:
                os.sched_setaffinity(tid, cpus)
            except OSError:
                continue


def parse_cpus(spec: str) -> set[int]:
    """``"0"``, ``"0,1"`` or ``"0-3"`` to a set of CPU numbers."""
    result: set[int] = set()
    for part in spec.split(","):
        if "-" in part:
            low, high = part.split("-", 1)
            result.update(range(int(low), int(high) + 1))
        elif part.strip():
            result.add(int(part))
    return result
