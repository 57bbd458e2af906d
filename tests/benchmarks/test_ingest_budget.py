"""The ingest-budget benchmark runs as documented and reports both rows."""

from __future__ import annotations

import json

import pytest

from benchmarks import ingest_budget


def test_the_benchmark_reports_the_budget_next_to_a_ping(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ingest_budget.main(["--calls", "50"])
    rows = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert set(rows) == {"budget take", "PING (floor)"}
    assert all(row["wall_ms"] > 0 for row in rows.values())
