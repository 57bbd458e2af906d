"""``GET /health/websocket``: live delivery latency, sockets and the stream reader.

Latency is accepted-to-sent of live deliveries over the last
REALTIME_LATENCY_WINDOW_SECONDS (the shared ``services.common.latency``
window the sockets feed). ``degraded`` when the measured p95 exceeds 100 ms
or the stream reader cannot reach Redis (sockets
stay open but receive nothing new until it reconnects); the feature needs
Postgres and Redis, so either being down makes the replica unready.

The seed's endpoint is healthy while the average stays under 100 ms, with
WEBSOCKET_TARGET_LATENCY_MS (50) reported as the target. The 100 ms is read on
the p95, as the WebSocketLatencyHigh alert reads it: an average hides the slow
tail that agents notice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from fastapi import FastAPI

from services.common.health import FeatureHealth
from services.realtime.runtime import RealtimeRuntime

#: The seed's degraded threshold, and WebSocketLatencyHigh's (alerts/rules/performance.yml).
DEGRADED_P95_MS: Final = 100.0


async def websocket_health(app: FastAPI) -> Mapping[str, Any]:
    """Live values for ``/health/websocket`` (see the module docstring)."""
    runtime: RealtimeRuntime = app.state.realtime
    settings = runtime.settings
    target = settings.websocket_target_latency_ms
    summary = runtime.window.summary()
    reader_up = runtime.hub.fanout.healthy
    reasons = []
    if not reader_up:
        reasons.append("stream reader cannot reach redis")
    if summary.p95_ms is not None and summary.p95_ms > DEGRADED_P95_MS:
        reasons.append(
            f"p95 delivery latency {summary.p95_ms} ms above {DEGRADED_P95_MS:g} ms "
            f"(target {target:g} ms)"
        )
    status = "degraded" if reasons else "healthy"
    return {
        "status": status,
        "healthy": status == "healthy",
        "reasons": reasons,
        "active_connections": runtime.hub.registry.total,
        "tenants_connected": len(runtime.hub.registry.tenants()),
        "avg_latency_ms": summary.avg_ms,
        "p50_latency_ms": summary.p50_ms,
        "p95_latency_ms": summary.p95_ms,
        "p99_latency_ms": summary.p99_ms,
        "max_latency_ms": summary.max_ms,
        "latency_samples": summary.samples,
        "latency_window_seconds": settings.realtime_latency_window_seconds,
        "target_latency_ms": target,
        "degraded_above_p95_ms": DEGRADED_P95_MS,
        "stream_reader": "up" if reader_up else "down",
        "replica_id": runtime.hub.fanout.replica_id,
    }


WEBSOCKET_FEATURE_HEALTH: Final = FeatureHealth("/health/websocket", websocket_health)
