"""Servers a previous ``make run`` left behind when it was killed outright.

Postgres and Redis run as daemons, and Prometheus and Alertmanager are not
children that die with the run, so a ``kill -9`` of ``python -m localrun``
(or a closed terminal) leaves them running on the state directory, and the
next run would fail on Postgres's lock. Before starting, ``make run`` (and
``make stop``) stops exactly those: processes whose working directory or
command line points into its own state directory, never anything else. The
services and the rollback handler are children that get SIGTERM when the run
dies (``localrun.children``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from localrun.servers import PostgresServer


def _cmdline(pid: int) -> str:
    """The command line with its arguments separated by NUL, as the kernel keeps it."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").decode(errors="replace")
    except OSError:
        return ""


def _cwd(pid: int) -> Path | None:
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return None


def _running(pid: int) -> bool:
    # A zombie (exited, not yet reaped by its parent) counts as stopped.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def terminate(pid: int, timeout_s: float = 10.0) -> None:
    """SIGTERM ``pid``, SIGKILL it if it is still running after ``timeout_s``."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and _running(pid):
            time.sleep(0.05)
        if _running(pid):
            os.kill(pid, signal.SIGKILL)


def leftover_pids(state_dir: Path) -> dict[str, int]:
    """Running redis-server, prometheus and alertmanager processes of ``state_dir``."""
    redis_dir = (state_dir / "redis").resolve()
    # The config files localrun.servers writes: a process started on them is ours.
    configs = {
        ("prometheus", "prometheus"): state_dir / "prometheus" / "prometheus.yml",
        ("alertmanager", "prometheus-alertmanager"): state_dir
        / "alertmanager"
        / "alertmanager.yml",
    }
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        command = _cmdline(pid)
        # redis-server rewrites its title: "redis-server 127.0.0.1:PORT" (one argument).
        if command.startswith(("redis-server", "/usr/bin/redis-server")) and _cwd(pid) == redis_dir:
            found["redis"] = pid
            continue
        argv = command.split("\0")
        for (name, binary), config in configs.items():
            if Path(argv[0]).name == binary and f"--config.file={config.resolve()}" in argv:
                found[name] = pid
    return found


def stop_leftovers(state_dir: Path) -> list[str]:
    """Stop what a killed earlier run left in ``state_dir``; name what was stopped."""
    stopped = []
    data_dir = (state_dir / "postgres").resolve()
    if (data_dir / "postmaster.pid").exists():
        # pg_ctl checks the pid file itself and ignores a stale one.
        PostgresServer(data_dir=data_dir, port=0).stop()
        if not (data_dir / "postmaster.pid").exists():
            stopped.append("postgres")
    for name, pid in leftover_pids(state_dir).items():
        terminate(pid)
        stopped.append(name)
    return stopped
