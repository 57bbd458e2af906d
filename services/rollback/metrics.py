"""rollback-handler's metrics."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge

from services.common.flags import FEATURES
from services.common.metrics import counter


class RollbackMetrics:
    """Incidents received, by feature and outcome (rolled_back, duplicate, resolved);
    deployment undos, by deployment and outcome; the oldest undo claimed and never
    finished (``services.rollback.undo_claims``); flags put back after Redis lost
    them (``services.rollout.restore.keep_flags``); Slack notices posted, and those
    not sent yet (``services.rollback.notices``)."""

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
        self.oldest_undo_claim_age = Gauge(
            "rollback_deployment_undo_oldest_claim_age_seconds",
            "Age of the oldest deployment undo claimed without a recorded outcome (0: none); "
            "read from Postgres. Grows without end when a handler died mid-undo.",
            registry=registry,
        )
        self.flags_restored = counter(
            "feature_flags_restored",
            "Flags missing from Redis that the handler created again from their last "
            "state recorded in Postgres, by feature.",
            registry=registry,
            labelnames=("feature",),
        )
        # Every feature's series from the start (0): the dashboard and alerts read them.
        for feature in FEATURES:
            self.flags_restored.labels(feature)
        self.notice_posts = counter(
            "rollback_notice_posts",
            "Attempts to post a rollback notice to Slack, by outcome (sent, failed).",
            registry=registry,
            labelnames=("outcome",),
        )
        self.notices_unsent = Gauge(
            "rollback_notices_unsent",
            "Rollback notices Slack has not taken, by state (pending: still retried; "
            "given_up: waits for an operator); read from Postgres.",
            registry=registry,
            labelnames=("state",),
        )
        self.oldest_unsent_notice_age = Gauge(
            "rollback_notice_oldest_unsent_age_seconds",
            "Age of the oldest rollback notice Slack has not taken (0: none); read from Postgres.",
            registry=registry,
        )
        # Exported from the start: an alert and a dashboard read them before any post.
        for outcome in ("sent", "failed"):
            self.notice_posts.labels(outcome=outcome)
        for state in ("pending", "given_up"):
            self.notices_unsent.labels(state=state)
