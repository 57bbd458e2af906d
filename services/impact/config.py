"""Settings of ``enterprisehub impact ...``, ``experiment ...`` and ``retention prune``."""

from __future__ import annotations

from pydantic import Field, field_validator

from services.common.settings import DatabaseSettings, EnvSettings
from services.impact.aggregate import RESTATED_DAYS
from services.impact.assumptions import FeatureAssumptions, load_assumptions

#: A per-event row must outlive the days ``impact aggregate`` restates from it:
#: a day whose events were pruned would be rewritten as a day without activity.
MIN_EVENT_RETENTION_DAYS = RESTATED_DAYS + 1


class AssumptionsSettings(EnvSettings):
    """IMPACT_ASSUMPTIONS: read by every program that prices the features (the impact
    commands and the dashboards' ROI page), so that all of them use the same numbers."""

    impact_assumptions: str | None = None
    """JSON {"feature": {"lift": 0.05, ...}} overriding assumptions."""

    @field_validator("impact_assumptions")
    @classmethod
    def _valid(cls, value: str | None) -> str | None:
        load_assumptions(value)
        return value

    @property
    def assumptions(self) -> dict[str, FeatureAssumptions]:
        """The assumptions in force."""
        return load_assumptions(self.impact_assumptions)


class ImpactSettings(DatabaseSettings, AssumptionsSettings):
    """The database, IMPACT_ASSUMPTIONS (JSON overrides of the assumptions) and retention."""

    retention_event_days: int = Field(default=30, ge=MIN_EVENT_RETENTION_DAYS, le=3660)
    """Days `enterprisehub retention prune` keeps per-event rows (realtime events, churn
    signals, closed churn interventions, coaching sessions, the Claude cost ledger): the
    seed's 30. At least one more than the 7 days `impact aggregate` restates from them."""

    retention_metric_days: int = Field(default=365, ge=MIN_EVENT_RETENTION_DAYS, le=3660)
    """Days `enterprisehub retention prune` keeps phase3_business_metrics rows (by
    metric_date): the seed's one year."""

    retention_batch_size: int = Field(default=10_000, ge=1, le=100_000)
    """Rows one DELETE of `retention prune` removes at most (each batch is its own short
    transaction, so a large purge never holds its locks for long)."""
