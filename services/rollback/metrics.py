"""rollback-handler's metrics."""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry

from services.common.flags import FEATURES
from services.common.metrics import MetricFactory
from services.rollout.restore import Outcome, Restored


class RollbackMetrics:
    """Incidents received, by feature and outcome (rolled_back, duplicate, resolved);
    deployment undos, by deployment and outcome; the oldest undo claimed and never
    finished (``services.rollback.undo_claims``); flags put back after Redis lost
    them or held a stale state, and those left behind their record
    (``services.rollout.restore.keep_flags``); Slack notices posted, and those
    not sent yet (``services.rollback.notices``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        factory = MetricFactory(registry)
        self.incidents = factory.counter("rollback_incidents_total")
        self.deployment_undos = factory.counter("rollback_deployment_undos_total")
        self.oldest_undo_claim_age = factory.gauge(
            "rollback_deployment_undo_oldest_claim_age_seconds"
        )
        self.flags_restored = factory.counter("feature_flags_restored_total", labelvalues=FEATURES)
        self.flags_reverted = factory.counter("feature_flags_reverted_total", labelvalues=FEATURES)
        self.flags_behind = factory.gauge("feature_flag_behind_record", labelvalues=FEATURES)
        self.notice_posts = factory.counter(
            "rollback_notice_posts_total", labelvalues=("sent", "failed")
        )
        self.notices_unsent = factory.gauge(
            "rollback_notices_unsent", labelvalues=("pending", "given_up")
        )
        self.oldest_unsent_notice_age = factory.gauge("rollback_notice_oldest_unsent_age_seconds")

    def count_flag_outcomes(self, results: Sequence[Restored]) -> None:
        """Count the flags one step of the keeper restored or reverted."""
        for result in results:
            if result.outcome is Outcome.RESTORED:
                self.flags_restored.labels(result.feature).inc()
            elif result.outcome is Outcome.REVERTED:
                self.flags_reverted.labels(result.feature).inc()

    def set_flags_behind(self, features: Sequence[str]) -> None:
        """The features a completed check left behind their record (the others: 0)."""
        for feature in FEATURES:
            self.flags_behind.labels(feature).set(1 if feature in features else 0)
