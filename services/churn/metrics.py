"""churn-orchestrator's Prometheus metrics (base units, ``_total`` counters).

- ``churn_interventions_total{stage, channel, outcome}``: sends by final
  state (``delivered``, ``not_sent``, ``suppressed``, ``cancelled``,
  ``dead_letter``) and outcomes reported later (``responded``,
  ``re_engaged``, ``churned``, channel ``any``) of delivered interventions
  only (services/churn/success.py);
- ``churn_intervention_successes_total{stage}``: delivered interventions that
  became a success (services/churn/success.py), each once, whatever outcomes
  follow; the dashboards' success rate divides it by the interventions delivered
  (not by every intervention as the seed's does: services/churn/success.py);
- ``churn_intervention_latency_seconds``: detection to the CRM accepting the
  first send of an intervention (the seed's 30 s promise);
- ``churn_detection_latency_seconds{trigger}``;
- ``churn_send_attempts_total{channel, result}``;
- ``churn_queue_depth``: delivery jobs waiting (due or scheduled), all tenants; a
  group job (an intervention's channels, queue.py) counts once;
- ``churn_queue_oldest_due_seconds``: how long the oldest due job has waited
  (0 with none due): a stalled worker records no latency, this age grows;
- ``churn_dead_letters_total{channel}``;
- ``churn_pass_duration_seconds`` and ``churn_leads_scored_total``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from services.churn.stages import CHANNELS, STAGES
from services.common.metrics import MetricFactory


class ChurnMetrics:
    """The service's metrics, registered on one registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        factory = MetricFactory(registry)
        self.interventions = factory.counter("churn_interventions_total")
        # At 0 for every stage that sends: the dashboards' success rate over a day
        # would otherwise miss each pod's first success of a stage.
        self.successes = factory.counter(
            "churn_intervention_successes_total",
            labelvalues=[stage.name for stage in STAGES if stage.channels],
        )
        self.intervention_latency = factory.histogram("churn_intervention_latency_seconds")
        self.detection_latency = factory.histogram("churn_detection_latency_seconds")
        self.send_attempts = factory.counter("churn_send_attempts_total")
        # At 0 from the start: ChurnDeadLetters fires on one dead letter, and
        # increase() cannot see the first one of a series that appears at 1.
        self.dead_letters = factory.counter("churn_dead_letters_total", labelvalues=CHANNELS)
        self.queue_depth = factory.gauge("churn_queue_depth")
        self.oldest_due = factory.gauge("churn_queue_oldest_due_seconds")
        self.pass_duration = factory.histogram("churn_pass_duration_seconds")
        self.leads_scored = factory.counter("churn_leads_scored_total")

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
