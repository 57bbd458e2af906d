"""The churn model's features, computed from a lead's stored engagement aggregates.

Each signal updates a lead's aggregates in O(1) (``signals.py``): last-seen
times, and counts that decay exponentially with a half-life of
``HALF_LIFE_DAYS`` (a "recent activity" measure without a window scan). At
scoring time the counts are decayed to the pass's clock and the times turned
into ages, so the same stored row gives a higher risk as silence grows: the
periodic pass catches leads that go quiet, the signal-triggered one leads that
change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

FEATURE_SCHEMA_VERSION: Final = 1
FEATURE_NAMES: Final[tuple[str, ...]] = (
    "hours_since_inbound",
    "hours_since_outbound",
    "inbound_recent",
    "outbound_recent",
    "opens_recent",
    "appointments_recent",
    "unanswered_outbound",
    "lead_age_days",
    "pipeline_stage",
)
HALF_LIFE_DAYS: Final = 7.0
#: Ages are capped: past 90 days of silence more silence says nothing new.
MAX_AGE_HOURS: Final = 90 * 24.0
DECAYED: Final = ("inbound_recent", "outbound_recent", "opens_recent", "appointments_recent")
PIPELINE_STAGES: Final[dict[str, int]] = {
    "new": 0,
    "contacted": 1,
    "qualified": 2,
    "showing": 3,
    "offer": 4,
    "under_contract": 5,
}

#: Columns of ``churn_leads`` the features need, as epoch seconds where times.
LEAD_COLUMNS_SQL: Final = """
    lead_id,
    extract(epoch FROM created_at)::float8 AS created_at,
    extract(epoch FROM last_inbound_at)::float8 AS last_inbound_at,
    extract(epoch FROM last_outbound_at)::float8 AS last_outbound_at,
    extract(epoch FROM decay_at)::float8 AS decay_at,
    inbound_recent, outbound_recent, opens_recent, appointments_recent,
    unanswered_outbound, pipeline_stage
"""


def decay_factor(elapsed_seconds: NDArray[np.float64] | float) -> Any:
    """The multiplier of a decayed count after ``elapsed_seconds`` (never above 1)."""
    elapsed = np.maximum(np.asarray(elapsed_seconds, dtype=np.float64), 0.0)
    return np.exp2(-elapsed / (HALF_LIFE_DAYS * 86_400.0))


def feature_matrix(rows: Sequence[Mapping[str, Any]], *, now: float) -> NDArray[np.float64]:
    """One row of ``FEATURE_NAMES`` per lead row (``LEAD_COLUMNS_SQL``) at epoch ``now``."""
    count = len(rows)

    def column(name: str) -> NDArray[np.float64]:
        return np.fromiter(
            (np.nan if row[name] is None else row[name] for row in rows),
            dtype=np.float64,
            count=count,
        )

    created = column("created_at")
    decay = decay_factor(now - column("decay_at"))
    out = np.empty((count, len(FEATURE_NAMES)), dtype=np.float64)

    def age_hours(last: NDArray[np.float64]) -> NDArray[np.float64]:
        since = np.where(np.isnan(last), created, last)
        return np.clip((now - since) / 3600.0, 0.0, MAX_AGE_HOURS)

    out[:, 0] = age_hours(column("last_inbound_at"))
    out[:, 1] = age_hours(column("last_outbound_at"))
    for index, name in enumerate(DECAYED, start=2):
        out[:, index] = column(name) * decay
    out[:, 6] = column("unanswered_outbound")
    out[:, 7] = np.maximum((now - created) / 86_400.0, 0.0)
    out[:, 8] = column("pipeline_stage")
    return out
