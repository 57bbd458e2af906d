"""``GET /health/coaching``: analysis latency, active analyses and Claude's state.

Healthy while the p95 analysis latency stays under the seed's 3 s (the
target, COACHING_ANALYSIS_TARGET_MS = 2000, is reported alongside), degraded
above it. The seed reads its 3 s on the average; the p95 is stricter and is
what agents notice, as for the other services' latency health. Degraded too
when Claude is not configured (the pod still serves reads of stored
sessions) or its circuit is open.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from fastapi import FastAPI

from services.coaching.analysis import CoachingEngine
from services.common.claude import claude_health
from services.common.health import FeatureHealth

DEGRADED_P95_MS: Final = 3000.0


async def coaching_health(app: FastAPI) -> Mapping[str, Any]:
    """Live values for /health/coaching."""
    engine: CoachingEngine | None = getattr(app.state, "coaching", None)
    claude = claude_health(app)
    if engine is None:
        return {"status": "unhealthy", "reason": "not started", "claude": claude}
    summary = engine.latency.summary()
    slow = summary.p95_ms is not None and summary.p95_ms > DEGRADED_P95_MS
    claude_down = not claude["configured"] or claude.get("circuit") == "open"
    return {
        "status": "degraded" if slow or claude_down else "healthy",
        "avg_analysis_latency_ms": summary.avg_ms,
        "p95_analysis_latency_ms": summary.p95_ms,
        "target_latency_ms": float(app.state.settings.coaching_analysis_target_ms),
        "active_sessions": engine.active,
        "max_concurrent_sessions": engine.max_concurrent,
        "window_calls": summary.samples,
        "claude": claude,
    }


COACHING_FEATURE_HEALTH: Final = FeatureHealth(
    path="/health/coaching", check=coaching_health, requires=frozenset({"postgres"})
)
