"""W6 synthesis: `python -m infra.synth --stack S` in a fresh process, per stack.

Measures what a reviewer waits for: the wall time of a new Python process that
imports the Pulumi SDKs, runs the whole program under mocks and writes
resources.json and the manifests (issue 11's goal: production under 5 s on this
machine). Each stack runs `--runs` times; the table gives the median, the
fastest and the slowest run, the resource count and the manifest count.

Python's bytecode cache matters here: the pulumi_aws and pulumi_kubernetes
modules a program touches take about two seconds to compile. With
PYTHONDONTWRITEBYTECODE set and no `__pycache__` in site-packages (as after
`uv sync` without `--compile-bytecode`), every run pays that; the report says
which case it measured.

    .venv/bin/python -m benchmarks.synth [--runs 5] [--stacks production,dev]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.machine import cpu_model
from infra.stackfiles import STACKS

REPO = Path(__file__).resolve().parents[1]
GOAL_SECONDS = 5.0
PEERS = ("pulumi", "pulumi-aws", "pulumi-kubernetes", "pulumi-random")


def _bytecode_cached() -> bool:
    """Whether pulumi_aws's compiled modules are cached (the cold-start difference)."""
    import pulumi_aws

    cache = Path(pulumi_aws.__file__).parent / "ec2" / "__pycache__"
    return cache.is_dir() and any(cache.iterdir())


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_once(stack: str, out: Path) -> dict[str, Any]:
    """One fresh-process synthesis: wall time, CPU time and counts.

    CPU time (user + system of the child) is reported next to wall time
    because on a shared 2-core machine other work stretches the wall clock.
    """
    cpu_before = _children_cpu()
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "infra.synth", "--stack", stack, "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    cpu = _children_cpu() - cpu_before
    if result.returncode != 0:
        raise RuntimeError(f"synthesis of {stack} failed:\n{result.stderr}")
    document = json.loads((out / "resources.json").read_text())
    return {
        "seconds": seconds,
        "cpu": cpu,
        "resources": document["summary"]["resourceCount"],
        "manifests": len(list((out / "manifests").glob("*.yaml"))),
    }


def main(argv: list[str] | None = None) -> int:
    """Run W6 and print a markdown block."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per stack")
    parser.add_argument("--stacks", default=",".join(STACKS), help="comma-separated stacks")
    args = parser.parse_args(argv)
    stacks = [s for s in args.stacks.split(",") if s]

    rows = []
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="w6-") as tmp:
        for stack in stacks:
            runs = [run_once(stack, Path(tmp) / f"{stack}-{i}") for i in range(args.runs)]
            times = [r["seconds"] for r in runs]
            cpu = statistics.median(r["cpu"] for r in runs)
            rows.append((stack, runs[0], statistics.median(times), min(times), max(times), cpu))

    load_after = os.getloadavg()[0]
    versions = ", ".join(f"{p} {importlib.metadata.version(p)}" for p in PEERS)
    print("## W6 synthesis\n")
    print(f"Command: `.venv/bin/python -m benchmarks.synth --runs {args.runs}`")
    print(
        f"Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; nproc {os.cpu_count()}; "
        f"CPU {cpu_model()}; Python {platform.python_version()}; {versions}."
    )
    cached = _bytecode_cached()
    print(
        "Each run is a new process (`python -m infra.synth --stack S --out DIR`), "
        f"{args.runs} runs per stack; bytecode cache of the SDKs: "
        + ("present" if cached else "absent (every run compiles the SDK modules it imports)")
        + f"; 1-minute load average {load_before:.1f} before and {load_after:.1f} after.\n"
    )
    print(
        "| Stack | Resources | Manifests | Median wall | Fastest | Slowest | Median CPU "
        "| Under 5 s (wall) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for stack, first, median, fastest, slowest, cpu in rows:
        verdict = (
            "yes" if slowest < GOAL_SECONDS else ("median only" if median < GOAL_SECONDS else "no")
        )
        print(
            f"| {stack} | {first['resources']} | {first['manifests']} | {median:.2f} s | "
            f"{fastest:.2f} s | {slowest:.2f} s | {cpu:.2f} s | {verdict} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
