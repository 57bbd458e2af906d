"""Prometheus series of the Claude client, in base units (seconds, dollars, tokens)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from services.common.claude.breaker import CircuitState
from services.common.metrics import MetricFactory


class ClaudeMetrics:
    """``claude_*`` series registered in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        factory = MetricFactory(registry)
        self.duration = factory.histogram("claude_request_duration_seconds")
        self.tokens = factory.counter("claude_tokens_total")
        self.cost = factory.counter("claude_cost_dollars_total")
        self.estimated_cost = factory.counter("claude_estimated_cost_dollars_total")
        self.retries = factory.counter("claude_retries_total")
        self.limiter_waits = factory.counter("claude_limiter_waits_total")
        self.circuit = factory.gauge("claude_circuit_state")
        self.set_circuit(CircuitState.CLOSED)

    def set_circuit(self, state: CircuitState) -> None:
        """Make ``state`` the one state at 1."""
        for each in CircuitState:
            self.circuit.labels(each.value).set(1 if each is state else 0)
