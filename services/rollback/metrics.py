"""rollback-handler's metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from services.common.metrics import counter


class RollbackMetrics:
    """Incidents received, by feature and outcome (rolled_back, duplicate, resolved);
    deployment undos, by deployment and outcome."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.incidents = counter(
            "rollback_incidents",
            "Rollback-trigger alerts received from Alertmanager, by feature and outcome.",
            registry=registry,
            labelnames=("feature", "outcome"),
        )
        self.deployment_undos = counter(
            "rollback_deployment_undos",
            "Deployment rollouts the handler undid (or could not), by deployment and outcome "
            "(rolled_back, not_rolled_back, failed).",
            registry=registry,
            labelnames=("deployment", "outcome"),
        )
