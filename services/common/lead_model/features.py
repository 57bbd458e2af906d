"""The CRM lead attributes the lead-conversion model reads, and their encoding.

`LeadFeatures` is the one place that defines what a scorable lead looks like.
The training code, the HTTP API and the realtime ingest all validate through
it, and `FEATURE_NAMES` (the column order of the model's input matrix) is
derived from it, so the artifact's recorded feature list can be checked
against the running code on load.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

# Bump when a field is added, removed, renamed or re-encoded: artifacts record
# it and a mismatch is refused on load instead of silently mis-scoring.
FEATURE_SCHEMA_VERSION: Final = 1

LeadSource = Literal[
    "referral",
    "website",
    "zillow",
    "realtor_com",
    "open_house",
    "social_media",
    "paid_search",
    "cold_call",
]
BuyingTimeline = Literal[
    "immediate",
    "1_3_months",
    "3_6_months",
    "6_12_months",
    "over_12_months",
    "unknown",
]

# Vocabularies in a fixed order: a categorical is encoded as its index here,
# so the order is part of the model's input contract (never reorder; append).
SOURCES: Final[tuple[str, ...]] = get_args(LeadSource)
TIMELINES: Final[tuple[str, ...]] = get_args(BuyingTimeline)
_SOURCE_CODE: Final = {name: float(i) for i, name in enumerate(SOURCES)}
_TIMELINE_CODE: Final = {name: float(i) for i, name in enumerate(TIMELINES)}

# Upper bounds reject values that can only be data-entry or integration bugs
# (a 10-year-old "last contact" is still accepted; a negative count is not).
_Count = Annotated[int, Field(ge=0, le=100_000)]
_Days = Annotated[int, Field(ge=0, le=3650)]


class LeadFeatures(BaseModel):
    """One CRM lead as the conversion model sees it.

    Validation is strict: numbers must be JSON numbers (no ``"12"`` strings),
    booleans must be ``true``/``false``, unknown fields are rejected, and NaN
    or infinity are refused, so a malformed webhook fails with the field name
    and reason instead of being scored as something it is not.
    """

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)

    source: LeadSource = Field(description="Channel the lead came from.")
    timeline: BuyingTimeline = Field(description="Buying timeline the lead stated.")
    budget_usd: float = Field(ge=0, le=100_000_000, description="Stated purchase budget in USD.")
    pre_approved: bool = Field(description="Whether the lead holds a mortgage pre-approval.")
    response_time_minutes: float = Field(
        ge=0, le=525_600, description="Minutes from lead creation to the agent's first reply."
    )
    email_opens: _Count = Field(description="Marketing/agent emails opened.")
    email_clicks: _Count = Field(description="Links clicked in those emails.")
    sms_replies: _Count = Field(description="SMS messages the lead replied to.")
    calls_connected: _Count = Field(description="Phone calls that reached the lead.")
    property_views: _Count = Field(description="Listing pages viewed on the portal.")
    saved_searches: _Count = Field(description="Saved property searches.")
    showings_attended: _Count = Field(description="In-person or virtual showings attended.")
    days_since_last_contact: _Days = Field(description="Days since the last two-way contact.")
    days_since_created: _Days = Field(description="Age of the lead record in days.")

    def to_row(self) -> tuple[float, ...]:
        """Encode the lead as one model input row, in `FEATURE_NAMES` order.

        Categoricals become their index in `SOURCES` / `TIMELINES`; the tuple
        is also the cache key, so two leads share a row only if they are equal.
        """
        return (
            _SOURCE_CODE[self.source],
            _TIMELINE_CODE[self.timeline],
            self.budget_usd,
            1.0 if self.pre_approved else 0.0,
            self.response_time_minutes,
            float(self.email_opens),
            float(self.email_clicks),
            float(self.sms_replies),
            float(self.calls_connected),
            float(self.property_views),
            float(self.saved_searches),
            float(self.showings_attended),
            float(self.days_since_last_contact),
            float(self.days_since_created),
        )


# Column order of the model input; to_row() above must follow it (a test checks).
FEATURE_NAMES: Final[tuple[str, ...]] = tuple(LeadFeatures.model_fields)
CATEGORICAL_FEATURES: Final[tuple[str, ...]] = ("source", "timeline")
BOOLEAN_FEATURES: Final[tuple[str, ...]] = ("pre_approved",)
NUMERIC_FEATURES: Final[tuple[str, ...]] = tuple(
    name
    for name in FEATURE_NAMES
    if name not in CATEGORICAL_FEATURES and name not in BOOLEAN_FEATURES
)
