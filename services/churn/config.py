"""Settings of churn-orchestrator (port 8004), read from the environment at start-up."""

from __future__ import annotations

from typing import Annotated, ClassVar, Final

from pydantic import Field, field_validator, model_validator

from services.common.lead_model.artifact import ArtifactUri
from services.common.settings import (
    BodyLimit,
    CommonSettings,
    OptionalSecret,
    PositiveSeconds,
    http_url,
)

#: The feature flag that gates the routes, detection and interventions per tenant.
CHURN_FEATURE: Final = "churn_prevention"

#: The LeadConnector (GoHighLevel) API v2 host.
GHL_DEFAULT_BASE_URL = "https://services.leadconnectorhq.com"

#: An hour of the local day, 0 to 23.
HourOfDay = Annotated[int, Field(ge=0, le=23)]


def queue_pool_size(worker_concurrency: int) -> int:
    """The job queue's own Postgres pool: room for the running jobs' claims and updates.

    On top of the DB_POOL_SIZE + DB_MAX_OVERFLOW pool; the stacks' connection
    budget counts it (``catalog.CHURN_ORCHESTRATOR.extra_db_connections``).
    """
    return max(4, worker_concurrency // 2 + 2)


class ChurnSettings(CommonSettings):
    """CommonSettings plus the CHURN_* variables and the CRM adapter's (GHL_*)."""

    service_name: ClassVar[str] = "churn"

    churn_monitoring_interval: PositiveSeconds = Field(default=60, le=86_400)
    """Seconds between detection passes."""

    churn_intervention_retry_count: int = Field(default=3, ge=0, le=20)
    """Retries of a failed send before dead-letter."""

    churn_retry_base_seconds: PositiveSeconds = Field(default=2.0, le=3600)
    """First retry delay; doubles each retry."""

    churn_retry_max_seconds: PositiveSeconds = Field(default=60.0, le=86_400)
    """Cap of one retry delay (429 included)."""

    churn_model_uri: ArtifactUri = "models/churn_risk.joblib"
    """Churn model artifact: s3://..., file:///... or a relative path."""

    churn_window_days: int = Field(default=7, ge=1, le=90)
    """One intervention per lead and stage per window."""

    churn_max_contacts_per_day: int = Field(default=1, ge=0, le=20)
    """Messages (SMS, email) per lead per 24 h."""

    churn_max_contacts_per_week: int = Field(default=3, ge=0, le=100)
    """Messages (SMS, email) per lead per 7 days."""

    churn_quiet_hours_start: HourOfDay = 21
    """Local hour (lead's zone) quiet hours begin."""

    churn_quiet_hours_end: HourOfDay = 8
    """Local hour (lead's zone) quiet hours end."""

    # Sends wait on the CRM, not on this process: a send that times out holds
    # its slot for GHL_TIMEOUT_SECONDS. At 200 sends/s under 3% timeouts (W4),
    # 12-23 slots were busy; 8 would have been the limit.
    churn_worker_concurrency: int = Field(default=32, ge=1, le=256)
    """Delivery jobs run at once per replica."""

    churn_worker_enabled: bool = True
    """Run the delivery worker in this replica."""

    churn_scheduler_enabled: bool = True
    """Run the periodic detection pass in this replica."""

    churn_max_signals_per_request: int = Field(default=500, ge=1, le=5000)
    """Most signals one POST /v1/churn/signals request may carry."""

    churn_max_body_bytes: BodyLimit = Field(default=1_048_576, le=16_777_216)
    """Largest request body the churn routes accept."""

    ghl_api_key: OptionalSecret = None
    """LeadConnector private integration token; unset: no sends."""

    ghl_base_url: str = GHL_DEFAULT_BASE_URL
    """LeadConnector API base URL."""

    ghl_timeout_seconds: PositiveSeconds = Field(default=10.0, le=120)
    """Longest one send to LeadConnector may take (then retried)."""

    @field_validator("ghl_base_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        return str(http_url(value, "an http(s)://HOST[:PORT][/PATH] URL")).rstrip("/")

    @model_validator(mode="after")
    def _quiet_hours(self) -> ChurnSettings:
        if self.churn_quiet_hours_start == self.churn_quiet_hours_end:
            raise ValueError(
                "CHURN_QUIET_HOURS_START and CHURN_QUIET_HOURS_END must differ "
                "(equal values would leave no hour to contact anyone)"
            )
        return self
