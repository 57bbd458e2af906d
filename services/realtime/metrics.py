"""Prometheus metrics of the websocket-manager.

Every metric is registered on the registry passed in (one per app, a fresh
one per test). Latency is in seconds (base unit); the health endpoint reports
milliseconds because the seed's target (WEBSOCKET_TARGET_LATENCY_MS) is in ms;
its recent-latency window is the shared ``services.common.latency.LatencyWindow``
(re-exported here for the modules that feed it).
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry

from services.common.latency import LatencyWindow
from services.common.metrics import MetricFactory
from services.realtime.lead_stages import STAGE_BY_EVENT_TYPE, STAGES

__all__ = [
    "CLIENT_FAILURES",
    "SERVICE_FAILURES",
    "LatencyWindow",
    "RealtimeMetrics",
]

#: ``websocket_connection_failures_total`` reasons a client brings about itself:
#: no or a bad token, a tenant outside the feature's rollout, its tenant's or
#: its own (per agent) connection cap, a resume id that cannot be used. Anyone
#: can produce them, so no alert that rolls back counts them.
CLIENT_FAILURES: tuple[str, ...] = (
    "auth",
    "feature_disabled",
    "tenant_limit",
    "subject_limit",
    "bad_last_event_id",
    "unknown_last_event_id",
)
#: Reasons that are the service's failure: a store it needs is unreachable,
#: or the handshake or the socket's writer failed unexpectedly (1011). The
#: seed's "connection failures" rollback trigger reads these.
SERVICE_FAILURES: tuple[str, ...] = ("redis_unavailable", "postgres_unavailable", "internal_error")


class RealtimeMetrics:
    """The service's metrics, bound to one registry (``websocket_*`` and ``realtime_*``
    in services/common/series.yaml)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        factory = MetricFactory(registry)
        self.message_latency = factory.histogram("websocket_message_latency_seconds")
        self.connections = factory.gauge("websocket_connections_active")
        self.frames_sent = factory.counter("websocket_frames_sent_total")
        self.events_sent = factory.counter("websocket_events_sent_total")
        self.connection_attempts = factory.counter("websocket_connection_attempts_total")
        self.connection_failures = factory.counter("websocket_connection_failures_total")
        self.lead_stage_changes = factory.counter("realtime_lead_stage_changes_total")
        self.events_ingested = factory.counter("realtime_events_ingested_total")
        self.events_rejected = factory.counter("realtime_events_rejected_total")
        self.events_relayed = factory.counter("realtime_outbox_relayed_total")
        self.slow_consumer_catchups = factory.counter("websocket_slow_consumer_catchups_total")
        self.ingest_seconds = factory.histogram("realtime_ingest_duration_seconds")
        # Pre-bind the hot-path children: a labels() lookup per frame costs a
        # dict lookup and a lock that this avoids.
        self.live_latency = self.message_latency.labels(delivery="live")
        self.replay_latency = self.message_latency.labels(delivery="replay")
        self.event_frames = self.frames_sent.labels(type="lead_event")
        self.batch_frames = self.frames_sent.labels(type="lead_events")
        self.heartbeat_frames = self.frames_sent.labels(type="heartbeat")
        self.control_frames = self.frames_sent.labels(type="control")

        # Every label value exists from the start (at 0), so ratios and rates
        # over them are defined before the first failure or conversion.
        self._failures = {
            reason: self.connection_failures.labels(reason=reason)
            for reason in (*CLIENT_FAILURES, *SERVICE_FAILURES)
        }
        self._stages = {stage: self.lead_stage_changes.labels(stage=stage) for stage in STAGES}

    def count_failure(self, reason: str) -> None:
        """One feed socket failed for ``reason``, one of the fixed set above (else KeyError)."""
        self._failures[reason].inc()

    def count_stage_changes(self, event_types: Iterable[str]) -> None:
        """Count the stored events whose type is a counted stage change."""
        for event_type in event_types:
            stage = STAGE_BY_EVENT_TYPE.get(event_type)
            if stage is not None:
                self._stages[stage].inc()
