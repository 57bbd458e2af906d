"""W1's harness, end to end at a tiny scale, so it cannot rot between runs.

One real invocation per system (Postgres, Redis, two servers, the swarm and
the poster as processes): it must finish, deliver every event and print the
table; the numbers themselves are not asserted (they belong to the machine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.load.poster import Target, schedule

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
@pytest.mark.parametrize("system", ["ours", "socketio"])
def test_tiny_run_delivers_everything(system: str, tmp_path: Path) -> None:
    out = tmp_path / "w1.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.realtime_feed",
            "--systems",
            system,
            "--clients",
            "10",
            "--duration",
            "1",
            "--rates",
            "20",
            "--targeted-rate",
            "20",
            "--batch",
            "4",
            "--drain-timeout",
            "5",
            "--history",
            "50",
            "--json-out",
            str(out),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"| {system} | broadcast 20/s | 10/10 |" in done.stdout
    results = json.loads(out.read_text())["results"]
    assert [(r["shape"], r["rate"], r["batch"]) for r in results] == [
        ("broadcast", 20.0, 1),
        ("targeted", 20.0, 1),
        ("targeted", 20.0, 4),
    ]
    assert f"| {system} | targeted 20/s, batches of 4 | 10/10 |" in done.stdout
    # Ours starts from a table with history (the peer stores nothing), and
    # none of it reaches a client.
    assert ("50 earlier events per tenant stored and analyzed" in done.stdout) == (system == "ours")
    for r in results:
        assert r["accepted"] == 20, r
        assert r["lost"] == 0, r
        assert r["extra"] == 0, r
        # Broadcast: each event reaches its tenant's 1 client; targeted: its agent's.
        assert r["received_frames"] == r["expected_frames"] == 20, r


@pytest.mark.parametrize("batch", [1, 4])
def test_schedule_spreads_events_evenly_over_tenants_and_agents(batch: int) -> None:
    targets = [Target(tenant=f"t{t}", agent=f"a{a}", token="x") for t in range(2) for a in range(3)]
    plan = schedule(targets, "targeted", 24, batch)
    assert [len(agents) for _, agents in plan] == [batch] * (24 // batch)
    per_agent: dict[tuple[str, str | None], int] = {}
    for target, agents in plan:
        for agent in agents:
            per_agent[(target.tenant, agent)] = per_agent.get((target.tenant, agent), 0) + 1
    assert sorted(per_agent.values()) == [4] * 6


def test_broadcast_schedule_alternates_tenants_and_keeps_the_remainder() -> None:
    targets = [Target(tenant=f"t{t}", agent="a0", token="x") for t in range(2)]
    assert [(t.tenant, agents) for t, agents in schedule(targets, "broadcast", 4)] == [
        ("t0", [None]),
        ("t1", [None]),
        ("t0", [None]),
        ("t1", [None]),
    ]
    batched = schedule(targets, "broadcast", 7, batch=3)
    assert [(t.tenant, len(agents)) for t, agents in batched] == [("t0", 3), ("t1", 3), ("t0", 1)]
