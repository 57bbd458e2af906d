"""Helpers for tests of flag-gated routes: tenants on either side of a rollout."""

from __future__ import annotations

from services.common.flags import BUCKETS, bucket


def tenants_around(feature: str, percentage: float) -> tuple[str, str]:
    """``(inside, outside)``: two tenant ids on either side of ``feature`` at ``percentage``."""
    threshold = round(percentage * BUCKETS / 100)
    candidates = [f"tenant-{i}" for i in range(1000)]
    inside = next(t for t in candidates if bucket(feature, t) < threshold)
    outside = next(t for t in candidates if bucket(feature, t) >= threshold)
    return inside, outside
