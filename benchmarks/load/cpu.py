"""CPU time of processes read from ``/proc``, without a psutil dependency.

The benchmark reports server CPU per step as the CPU seconds the server
processes (and their children) spent during the step divided by the step's
wall time, so 1.0 means one core fully busy.
"""

from __future__ import annotations

import os
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` from every thread's ``children`` file."""
    found: list[int] = []
    task_dir = Path(f"/proc/{pid}/task")
    try:
        tasks = list(task_dir.iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            text = (task / "children").read_text()
        except OSError:
            continue
        found.extend(int(item) for item in text.split())
    return found


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants that exist right now."""
    seen: list[int] = []
    stack = [pid]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen.append(current)
        stack.extend(_children(current))
    return seen


def cpu_seconds(pid: int, *, reaped_children: bool = False) -> float:
    """User plus system CPU seconds of one process (0.0 if it is gone).

    ``reaped_children`` adds what its exited and waited-for children spent
    (a postmaster's backends of closed connections, for instance).
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # The command name (field 2) may contain spaces; fields after the closing
    # parenthesis are fixed: utime, stime, cutime, cstime are fields 14 to 17.
    fields = stat.rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if reaped_children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / _CLOCK_TICKS


class CpuMeter:
    """Accumulates the CPU seconds of a fixed set of process trees.

    The trees are expanded when the meter starts, so worker processes that a
    server forked at start-up are included.
    """

    def __init__(self, roots: list[int]) -> None:
        self._roots = roots
        self._pids: list[int] = []
        self._start = 0.0

    def _total(self) -> float:
        return sum(cpu_seconds(pid) for pid in self._pids)

    def start(self) -> None:
        """Snapshot the process trees and their CPU time so far."""
        self._pids = [pid for root in self._roots for pid in process_tree(root)]
        self._start = self._total()

    def elapsed(self) -> float:
        """CPU seconds spent by the snapshotted processes since ``start``."""
        return self._total() - self._start
