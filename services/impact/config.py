"""Settings of ``enterprisehub impact ...`` and ``experiment run``."""

from __future__ import annotations

from pydantic import field_validator

from services.common.settings import DatabaseSettings, EnvSettings
from services.impact.assumptions import FeatureAssumptions, load_assumptions


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
    """The database plus IMPACT_ASSUMPTIONS (JSON overrides of the assumptions)."""
