"""Prometheus series of the Claude client, in base units (seconds, dollars, tokens)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from services.common.claude.breaker import CircuitState
from services.common.metrics import MetricFactory

# Claude calls take from a few hundred milliseconds to a minute.
CLAUDE_LATENCY_BUCKETS: tuple[float, ...] = (
    0.1,
    0.25,
    0.5,
    1.0,
    1.5,
    2.0,
    3.0,
    5.0,
    10.0,
    30.0,
    60.0,
)


class ClaudeMetrics:
    """``claude_*`` series registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        factory = MetricFactory(registry)
        self.duration = factory.latency_histogram(
            "claude_request_duration_seconds",
            "Time of one Claude API call (retries and waits included), by feature and outcome.",
            labelnames=("feature", "outcome"),
            buckets=CLAUDE_LATENCY_BUCKETS,
        )
        self.tokens = factory.counter(
            "claude_tokens",
            "Tokens billed, by feature, model and kind (input, output, cache_write, cache_read).",
            labelnames=("feature", "model", "kind"),
        )
        self.cost = factory.counter(
            "claude_cost_dollars",
            "Cost of the calls in US dollars (the ledger keeps exact micro-dollars).",
            labelnames=("feature", "model"),
        )
        self.estimated_cost = factory.counter(
            "claude_estimated_cost_dollars",
            "Upper-bound cost in US dollars of calls sent without an answer coming back "
            "(outcome timeout, cancelled or dropped), by feature, model and outcome; not part of "
            "claude_cost_dollars (the ledger keeps both, marked).",
            labelnames=("feature", "model", "outcome"),
        )
        self.retries = factory.counter(
            "claude_retries",
            "Calls sent again, by feature and reason (rate_limited, overloaded, server_error, "
            "connection_error).",
            labelnames=("feature", "reason"),
        )
        self.limiter_waits = factory.counter(
            "claude_limiter_waits",
            "Requests the local rate limiter held back to avoid a 429, by feature.",
            labelnames=("feature",),
        )
        self.circuit = factory.gauge(
            "claude_circuit_state",
            "1 for the circuit breaker's current state, 0 for the others.",
            labelnames=("state",),
        )
        self.set_circuit(CircuitState.CLOSED)

    def set_circuit(self, state: CircuitState) -> None:
        """Make ``state`` the one state at 1."""
        for each in CircuitState:
            self.circuit.labels(each.value).set(1 if each is state else 0)
