"""churn-orchestrator's Prometheus metrics (base units, ``_total`` counters).

- ``churn_interventions_total{stage, channel, outcome}``: sends by final
  state (``delivered``, ``not_sent``, ``suppressed``, ``cancelled``,
  ``dead_letter``) and outcomes reported later (``responded``,
  ``re_engaged``, ``churned``, channel ``any``) of delivered interventions
  only (services/churn/success.py);
- ``churn_intervention_successes_total{stage}``: delivered interventions that
  became a success (services/churn/success.py), each once, whatever outcomes
  follow; the dashboards' success rate divides it by the interventions delivered;
- ``churn_intervention_latency_seconds``: detection to the CRM accepting the
  first send of an intervention (the seed's 30 s promise);
- ``churn_detection_latency_seconds{trigger}``;
- ``churn_send_attempts_total{channel, result}``;
- ``churn_queue_depth``: delivery jobs waiting (due or scheduled), all tenants; a
  group job (an intervention's channels, queue.py) counts once;
- ``churn_dead_letters_total{channel}``;
- ``churn_pass_duration_seconds`` and ``churn_leads_scored_total``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from services.common.metrics import MetricFactory

SLOW_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 45, 60, 120, 300)


class ChurnMetrics:
    """The service's metrics, registered on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        factory = MetricFactory(registry)
        self.interventions = factory.counter(
            "churn_interventions",
            "Intervention sends by stage, channel and outcome.",
            labelnames=("stage", "channel", "outcome"),
        )
        self.successes = factory.counter(
            "churn_intervention_successes",
            "Delivered interventions whose lead responded or re-engaged, once each.",
            labelnames=("stage",),
        )
        self.intervention_latency = factory.latency_histogram(
            "churn_intervention_latency_seconds",
            "Detection to the CRM accepting an intervention's first send.",
            buckets=SLOW_BUCKETS,
        )
        self.detection_latency = factory.latency_histogram(
            "churn_detection_latency_seconds",
            "Signal received (or pass started) to the intervention being staged.",
            labelnames=("trigger",),
            buckets=SLOW_BUCKETS,
        )
        self.send_attempts = factory.counter(
            "churn_send_attempts",
            "Calls to the CRM by channel and result.",
            labelnames=("channel", "result"),
        )
        self.dead_letters = factory.counter(
            "churn_dead_letters",
            "Sends moved to the dead-letter state.",
            labelnames=("channel",),
        )
        self.queue_depth = factory.gauge(
            "churn_queue_depth",
            "Delivery jobs waiting in the queue (due or scheduled), all tenants.",
        )
        self.pass_duration = factory.latency_histogram(
            "churn_pass_duration_seconds",
            "Duration of one detection pass over every tenant.",
            buckets=SLOW_BUCKETS,
        )
        self.leads_scored = factory.counter(
            "churn_leads_scored", "Leads scored by detection passes."
        )

    def count_outcome(
        self, stage: str, outcome: str, *, changed: bool, became_success: bool
    ) -> None:
        """Count a committed outcome report of an intervention at ``stage``.

        ``changed``: the report changed the outcome of a delivered intervention
        (under channel ``any``: a retried report counts nothing, and an outcome
        of an undelivered one would inflate the dashboards' success rate);
        ``became_success``: the report made the intervention a success (once each).
        """
        if changed:
            self.interventions.labels(stage, "any", outcome).inc()
        if became_success:
            self.successes.labels(stage).inc()
