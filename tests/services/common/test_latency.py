"""The one latency window every health endpoint reports from."""

from __future__ import annotations

import pytest

from services.common.latency import EMPTY, LatencyWindow, nearest_rank


def test_percentiles_are_observed_values_by_nearest_rank() -> None:
    window = LatencyWindow()
    for ms in range(1, 101):  # 1..100 ms
        window.record(ms / 1000)
    summary = window.summary()
    assert summary.samples == 100
    assert (summary.p50_ms, summary.p95_ms, summary.p99_ms, summary.max_ms) == (50, 95, 99, 100)
    assert summary.avg_ms == 50.5


def test_nearest_rank_edges() -> None:
    assert nearest_rank([3.0], 95) == 3.0
    assert nearest_rank([1.0, 2.0], 50) == 1.0
    assert nearest_rank([1.0, 2.0], 51) == 2.0
    with pytest.raises(ValueError, match="no samples"):
        nearest_rank([], 50)
    with pytest.raises(ValueError, match="percent"):
        nearest_rank([1.0], 0)


def test_count_bound_keeps_the_newest() -> None:
    window = LatencyWindow(max_samples=3)
    for seconds in (9.0, 0.001, 0.002, 0.003):
        window.record(seconds)
    summary = window.summary()
    assert (summary.samples, summary.max_ms) == (3, 3.0)


def test_time_bound_drops_old_samples() -> None:
    now = [1000.0]
    window = LatencyWindow(window_seconds=60, clock=lambda: now[0])
    window.record(5.0)
    now[0] += 30
    window.add(now[0], 0.004)
    assert window.summary().samples == 2
    now[0] += 31  # the first sample is now 61 s old
    summary = window.summary()
    assert (summary.samples, summary.max_ms) == (1, 4.0)
    now[0] += 60
    assert window.summary() == EMPTY


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="max_samples"):
        LatencyWindow(max_samples=0)
    with pytest.raises(ValueError, match="window_seconds"):
        LatencyWindow(window_seconds=0)
