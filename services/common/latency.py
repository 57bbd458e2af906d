"""The one rolling latency window behind every health endpoint's live figures.

Prometheus histograms are the record (rates, SLOs, alerts); this window answers
"how fast is it right now" inside ``/health/...`` without a Prometheus round
trip. A window keeps the last ``max_samples`` durations and, when
``window_seconds`` is set, only those recorded within that many seconds, so an
idle service does not report an hour-old spike as current.

Percentiles are nearest-rank (the smallest sample with at least p% of the
samples at or below it): always a latency that was really observed, the usual
definition for latency objectives. Figures are reported in milliseconds
because the seed's targets are (WEBSOCKET_TARGET_LATENCY_MS,
ML_INFERENCE_TARGET_MS, ...); samples are recorded in seconds (base unit).

Recording takes a lock (a few hundred nanoseconds) so a window may be fed from
worker threads as well as from the event loop.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """The window's figures in milliseconds (``None`` while it is empty)."""

    samples: int
    avg_ms: float | None
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None


EMPTY = LatencySummary(samples=0, avg_ms=None, p50_ms=None, p95_ms=None, p99_ms=None, max_ms=None)


def nearest_rank(ordered: Sequence[float], percent: float) -> float:
    """The ``percent`` percentile of ascending ``ordered`` (nearest-rank definition)."""
    if not ordered:
        raise ValueError("no samples")
    if not 0 < percent <= 100:
        raise ValueError(f"percent must be in (0, 100], got {percent}")
    rank = math.ceil(percent / 100 * len(ordered))
    return ordered[rank - 1]


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


class LatencyWindow:
    """The most recent latencies, bounded by count and optionally by age.

    ``clock`` gives the time samples are stamped with when ``add`` is not told
    (wall clock by default, since callers that measure accepted-to-sent
    latency already hold a wall-clock timestamp).
    """

    def __init__(
        self,
        *,
        max_samples: int = 50_000,
        window_seconds: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_samples < 1:
            raise ValueError(f"max_samples must be >= 1, got {max_samples}")
        if window_seconds is not None and window_seconds <= 0:
            raise ValueError(f"window_seconds must be > 0, got {window_seconds}")
        self.max_samples = max_samples
        self.window_seconds = window_seconds
        self._clock = clock
        self._samples: deque[tuple[float, float]] = deque(maxlen=max_samples)
        self._lock = threading.Lock()

    def add(self, at: float, seconds: float) -> None:
        """Record one latency of ``seconds`` observed at time ``at`` (``clock`` units)."""
        with self._lock:
            self._samples.append((at, seconds))

    def record(self, seconds: float) -> None:
        """Record one latency observed now."""
        self.add(self._clock(), seconds)

    def summary(self, now: float | None = None) -> LatencySummary:
        """Count, average, p50/p95/p99 and maximum of the samples in the window."""
        with self._lock:
            if self.window_seconds is not None:
                cutoff = (self._clock() if now is None else now) - self.window_seconds
                while self._samples and self._samples[0][0] < cutoff:
                    self._samples.popleft()
            values = sorted(seconds for _, seconds in self._samples)
        if not values:
            return EMPTY
        return LatencySummary(
            samples=len(values),
            avg_ms=_ms(math.fsum(values) / len(values)),
            p50_ms=_ms(nearest_rank(values, 50)),
            p95_ms=_ms(nearest_rank(values, 95)),
            p99_ms=_ms(nearest_rank(values, 99)),
            max_ms=_ms(values[-1]),
        )
