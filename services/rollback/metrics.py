"""rollback-handler's metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from services.common.flags import FEATURES
from services.common.metrics import MetricFactory


class RollbackMetrics:
    """Incidents received, by feature and outcome (rolled_back, duplicate, resolved);
    deployment undos, by deployment and outcome; the oldest undo claimed and never
    finished (``services.rollback.undo_claims``); flags put back after Redis lost
    them (``services.rollout.restore.keep_flags``); Slack notices posted, and those
    not sent yet (``services.rollback.notices``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        factory = MetricFactory(registry)
        self.incidents = factory.counter(
            "rollback_incidents",
            "Rollback-trigger alerts received from Alertmanager, by feature and outcome.",
            labelnames=("feature", "outcome"),
        )
        self.deployment_undos = factory.counter(
            "rollback_deployment_undos",
            "Deployment rollouts the handler undid (or could not), by deployment and outcome "
            "(rolled_back, not_rolled_back, failed).",
            labelnames=("deployment", "outcome"),
        )
        self.oldest_undo_claim_age = factory.gauge(
            "rollback_deployment_undo_oldest_claim_age_seconds",
            "Age of the oldest deployment undo claimed without a recorded outcome (0: none); "
            "read from Postgres. Grows without end when a handler died mid-undo.",
        )
        self.flags_restored = factory.counter(
            "feature_flags_restored",
            "Flags missing from Redis that the handler created again from their last "
            "state recorded in Postgres, by feature.",
            labelnames=("feature",),
            labelvalues=FEATURES,
        )
        self.notice_posts = factory.counter(
            "rollback_notice_posts",
            "Attempts to post a rollback notice to Slack, by outcome (sent, failed).",
            labelnames=("outcome",),
            labelvalues=("sent", "failed"),
        )
        self.notices_unsent = factory.gauge(
            "rollback_notices_unsent",
            "Rollback notices Slack has not taken, by state (pending: still retried; "
            "given_up: waits for an operator); read from Postgres.",
            labelnames=("state",),
            labelvalues=("pending", "given_up"),
        )
        self.oldest_unsent_notice_age = factory.gauge(
            "rollback_notice_oldest_unsent_age_seconds",
            "Age of the oldest rollback notice Slack has not taken (0: none); read from Postgres.",
        )
