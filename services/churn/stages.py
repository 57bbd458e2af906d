"""Risk stages: the thresholds on the calibrated probability and each stage's channels.

Because the model is calibrated, a threshold reads as a rate: ``nudge`` starts
where at least half of such leads churn. ``watch`` is recorded on the lead
but contacts nobody. Each stage above it is sent once per lead per window
(CHURN_WINDOW_DAYS), and never after a higher stage of the same window.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Channel = Literal["sms", "email", "task"]
CHANNELS: Final[tuple[Channel, ...]] = ("sms", "email", "task")
#: Channels that contact the lead (capped, quiet hours); a task goes to the agent.
LEAD_CHANNELS: Final[frozenset[str]] = frozenset({"sms", "email"})


@dataclass(frozen=True, slots=True)
class Stage:
    """A risk stage: from ``threshold`` (inclusive) up to the next stage's."""

    name: str
    rank: int
    threshold: float
    channels: tuple[Channel, ...]


STAGES: Final[tuple[Stage, ...]] = (
    Stage("watch", 1, 0.30, ()),
    Stage("nudge", 2, 0.50, ("sms",)),
    Stage("intervene", 3, 0.70, ("sms", "email")),
    Stage("escalate", 4, 0.85, ("email", "task")),
)
THRESHOLDS: Final[tuple[float, ...]] = tuple(stage.threshold for stage in STAGES)


def stage_for(probability: float) -> Stage | None:
    """The highest stage whose threshold ``probability`` reaches, or None (low risk)."""
    found = None
    for stage in STAGES:
        if probability >= stage.threshold:
            found = stage
    return found
