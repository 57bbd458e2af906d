"""churn-orchestrator's metrics: a series an alert reads exists before its first event."""

from __future__ import annotations

from services.churn.metrics import ChurnMetrics
from services.churn.stages import CHANNELS, STAGES
from services.common.metrics import new_registry


def test_dead_letters_are_exported_at_zero_for_every_channel() -> None:
    """ChurnDeadLetters fires on one dead letter (``increase(...[15m]) > 0``).

    A labelled counter that first appears at 1 shows no increase, so without
    these zeros the first dead letter of a channel after each start (a deploy,
    a crash) would reach nobody.
    """
    registry = new_registry()
    ChurnMetrics(registry)
    for channel in CHANNELS:
        assert registry.get_sample_value("churn_dead_letters_total", {"channel": channel}) == 0


def test_successes_are_exported_at_zero_for_every_stage_that_sends() -> None:
    """The success rate divides a day's increase of successes by deliveries: a
    pod's first success of a stage, counted into a series that appears at 1, was
    missing from it."""
    registry = new_registry()
    ChurnMetrics(registry)
    for stage in STAGES:
        value = registry.get_sample_value(
            "churn_intervention_successes_total", {"stage": stage.name}
        )
        assert value == (0 if stage.channels else None), stage.name
