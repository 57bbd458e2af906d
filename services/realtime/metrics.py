"""Prometheus metrics of the websocket-manager.

Every metric is registered on the registry passed in (one per app, a fresh
one per test). Latency is in seconds (base unit); the health endpoint reports
milliseconds because the seed's target (WEBSOCKET_TARGET_LATENCY_MS) is in ms;
its recent-latency window is the shared ``services.common.latency.LatencyWindow``
(re-exported here for the modules that feed it).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from services.common.latency import LatencyWindow
from services.common.metrics import bucket_series, counter, latency_histogram

__all__ = ["LATENCY_BUCKETS", "LatencyWindow", "RealtimeMetrics"]

# Sub-millisecond to seconds: the goal is p95 < 5 ms (finer bounds around it),
# the seed's target 50 ms, and replays after a reconnect can be minutes old.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0002,
    0.0005,
    0.001,
    0.002,
    0.003,
    0.005,
    0.0075,
    *bucket_series(0.01, 10.0),
    30.0,
    60.0,
)


class RealtimeMetrics:
    """The service's metrics, bound to one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.message_latency = latency_histogram(
            "websocket_message_latency_seconds",
            "Time from the ingest accepting an event to a replica sending it on a socket, "
            "by delivery path (live or replay after a reconnect).",
            labelnames=("delivery",),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.connections = Gauge(
            "websocket_connections_active",
            "Open feed WebSockets on this process.",
            registry=registry,
        )
        self.frames_sent = counter(
            "websocket_frames_sent",
            "Frames (WebSocket messages) sent on feed WebSockets, by frame type.",
            labelnames=("type",),
            registry=registry,
        )
        self.events_sent = counter(
            "websocket_events_sent",
            "Lead events delivered on feed WebSockets (a lead_events frame carries several).",
            registry=registry,
        )
        self.connections_rejected = counter(
            "websocket_connections_rejected",
            "Feed WebSockets refused, by reason.",
            labelnames=("reason",),
            registry=registry,
        )
        self.events_ingested = counter(
            "realtime_events_ingested",
            "Lead events stored and acknowledged, by how they were published.",
            labelnames=("publish",),
            registry=registry,
        )
        self.events_rejected = counter(
            "realtime_events_rejected",
            "Webhook requests refused before anything was stored, by reason "
            "(too_large, invalid, too_many_events; authentication failures are in "
            "http_requests_total as 401).",
            labelnames=("reason",),
            registry=registry,
        )
        self.events_relayed = counter(
            "realtime_outbox_relayed",
            "Stored events the outbox relay published after a deferred or lost publish.",
            registry=registry,
        )
        self.slow_consumer_catchups = counter(
            "websocket_slow_consumer_catchups",
            "Times a socket's queue overflowed and it caught up from the stream instead.",
            registry=registry,
        )
        self.ingest_seconds = latency_histogram(
            "realtime_ingest_duration_seconds",
            "Time the ingest spends from accepting an event to acknowledging it.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        # Pre-bind the hot-path children: a labels() lookup per frame costs a
        # dict lookup and a lock that this avoids.
        self.live_latency = self.message_latency.labels(delivery="live")
        self.replay_latency = self.message_latency.labels(delivery="replay")
        self.event_frames = self.frames_sent.labels(type="lead_event")
        self.batch_frames = self.frames_sent.labels(type="lead_events")
        self.heartbeat_frames = self.frames_sent.labels(type="heartbeat")
        self.control_frames = self.frames_sent.labels(type="control")
