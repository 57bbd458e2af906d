"""``benchmarks.load.cpu``: CPU seconds read from /proc, exited children included on request."""

from __future__ import annotations

import os
import subprocess
import sys

from benchmarks.load.cpu import cpu_seconds

# The child spins until its own CPU clock (not the wall clock) reaches this.
BURN = "import time\nwhile time.process_time() < 0.3: pass\n"
# /proc counts in clock ticks, and each difference below is two reads of our own
# clock a moment apart: allow a tick of rounding for each read.
TICK = 1 / os.sysconf("SC_CLK_TCK")


def test_reaped_children_adds_what_exited_children_spent() -> None:
    me = os.getpid()
    before = cpu_seconds(me, reaped_children=True) - cpu_seconds(me)
    subprocess.run([sys.executable, "-c", BURN], check=True)  # waited for: reaped
    after = cpu_seconds(me, reaped_children=True) - cpu_seconds(me)
    assert after - before >= 0.3 - 2 * TICK
    assert cpu_seconds(me) <= cpu_seconds(me, reaped_children=True)


def test_a_process_that_is_gone_has_spent_nothing() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert cpu_seconds(child.pid) == 0.0
