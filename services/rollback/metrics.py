"""rollback-handler's metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from services.common.metrics import counter


class RollbackMetrics:
    """Incidents received, by feature and outcome (rolled_back, duplicate, resolved)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.incidents = counter(
            "rollback_incidents",
            "Rollback-trigger alerts received from Alertmanager, by feature and outcome.",
            registry=registry,
            labelnames=("feature", "outcome"),
        )
