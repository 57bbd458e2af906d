"""Settings of the websocket-manager (real-time lead intelligence), port 8001."""

from __future__ import annotations

from typing import ClassVar, Self

from pydantic import Field, model_validator

from services.common.lead_model.settings import LeadModelSettings
from services.common.settings import (
    BodyLimit,
    CommonSettings,
    NonNegativeSeconds,
    PositiveSeconds,
)
from services.realtime.budget import WINDOW_SECONDS as BUDGET_WINDOW_SECONDS


class RealtimeSettings(CommonSettings, LeadModelSettings):
    """CommonSettings plus the WS_* variables, the event stream and the scorer.

    The ``REALTIME_*`` variables tune delivery and have defaults that fit the
    seed's targets; `LeadModelSettings` (ML_MODEL_*) locates the lead-scoring model, which the
    ingest runs in-process (an HTTP hop to ml-services would cost more than
    the whole 5 ms delivery budget).
    """

    service_name: ClassVar[str] = "realtime"

    ws_max_connections_per_tenant: int = Field(default=100, ge=1, le=100_000)
    """Feed sockets per tenant, across replicas."""

    ws_max_connections_per_subject: int = Field(default=10, ge=1, le=100_000)
    """Feed sockets per token subject (agent) within its tenant's, across replicas: one agent cannot
    take every slot of its tenant."""

    ws_heartbeat_interval: PositiveSeconds = Field(default=30.0, le=3600)
    """Seconds between heartbeat frames."""

    ws_reconnect_delay: NonNegativeSeconds = Field(default=5.0, le=3600)
    """Seconds a client should wait before reconnecting (sent in the ready frame)."""

    ws_send_queue_size: int = Field(default=10_000, ge=1, le=1_000_000)
    """Frames queued per socket before it catches up from the stream instead."""

    realtime_stream_maxlen: int = Field(default=10_000, ge=100, le=10_000_000)
    """Events kept per tenant stream for replay (MAXLEN ~)."""

    realtime_db_replay_limit: int = Field(default=10_000, ge=0, le=1_000_000)
    """Missed events a reconnect may replay from Postgres beyond the stream."""

    realtime_publish_timeout: PositiveSeconds = Field(default=1.0, le=30)
    """Seconds the ingest waits for XADD before acknowledging as deferred."""

    realtime_flush_interval: PositiveSeconds = Field(default=0.25, le=60)
    """Seconds between batched writes of publish marks and delivery latencies."""

    realtime_relay_interval: PositiveSeconds = Field(default=1.0, le=600)
    """Seconds between outbox relay passes."""

    realtime_relay_scan_interval: PositiveSeconds = Field(default=15.0, le=3600)
    """Seconds between relay scans of every tenant with a socket here."""

    realtime_relay_grace: PositiveSeconds = Field(default=5.0, le=3600)
    """Seconds after an event's row is stored before, still unpublished, it is the relay's."""

    realtime_max_event_bytes: BodyLimit = Field(default=65_536, le=10_000_000)
    """Largest accepted webhook body."""

    realtime_max_batch_events: int = Field(default=100, ge=1, le=500)
    """Most events in one batch webhook (HubSpot and Salesforce send up to 100)."""

    realtime_max_batch_bytes: BodyLimit = Field(default=1_048_576, le=50_000_000)
    """Largest accepted batch body."""

    realtime_tenant_event_rate: int = Field(default=300, ge=0, le=1_000_000)
    """Events per second a tenant may send, across replicas, averaged over 10 s (a 429 past
    it); 0 turns the budget off."""

    realtime_latency_window_seconds: PositiveSeconds = Field(default=60.0, le=3600)
    """Window of /health/websocket's latency figures."""

    @model_validator(mode="after")
    def _relay_waits_for_ingest(self) -> Self:
        # The relay must not publish a row whose own ingest may still be
        # publishing it (or about to mark it published): that would duplicate it.
        floor = self.realtime_publish_timeout + self.realtime_flush_interval
        if self.realtime_relay_grace <= floor:
            raise ValueError(
                "REALTIME_RELAY_GRACE must exceed REALTIME_PUBLISH_TIMEOUT + "
                f"REALTIME_FLUSH_INTERVAL ({floor:g} s)"
            )
        return self

    @model_validator(mode="after")
    def _budget_takes_a_batch(self) -> Self:
        # A batch costs its events at once: a window smaller than the largest
        # batch would refuse it forever, whatever the client waits.
        window = self.realtime_tenant_event_rate * BUDGET_WINDOW_SECONDS
        if 0 < window < self.realtime_max_batch_events:
            raise ValueError(
                f"REALTIME_TENANT_EVENT_RATE x {BUDGET_WINDOW_SECONDS} s must be at least "
                f"REALTIME_MAX_BATCH_EVENTS ({self.realtime_max_batch_events}), or 0 (off)"
            )
        return self

    @property
    def stream_block_ms(self) -> int:
        """XREAD block time: well under REDIS_SOCKET_TIMEOUT, which bounds every read."""
        return max(10, min(1000, int(self.redis_socket_timeout * 1000 / 2)))
