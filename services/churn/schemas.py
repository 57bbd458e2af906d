"""Request and response bodies of churn-orchestrator."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal
from uuid import UUID

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from services.churn.contact_rules import zone
from services.churn.features import PIPELINE_STAGES
from services.common.identifiers import (
    CRM_PUNCTUATION,
    AgentId,
    CanonicalUuid,
    IdentifierFormat,
    LeadId,
)

MAX_DATA_KEYS: Final = 20
MAX_TEXT: Final = 500
INT64 = (-(2**63), 2**63 - 1)
#: The earliest CRM timestamp accepted. asyncpg stores 0001-01-01T00:00Z
#: (``datetime.min``) as -infinity and reads it back as a naive datetime (a 500
#: in the signal fold; a lead "created" infinitely long ago scored as certain
#: churn), and an offset pushing an instant before year 1 is out of range.
EARLIEST_TIMESTAMP: Final = datetime(1970, 1, 1, tzinfo=UTC)
#: How far ahead of this server's clock a CRM timestamp may be (clock skew).
MAX_FUTURE_SKEW: Final = timedelta(minutes=5)

SignalType = Literal[
    "message_received",
    "message_sent",
    "reply",
    "email_opened",
    "link_clicked",
    "appointment_booked",
    "appointment_cancelled",
    "stage_changed",
    "lead_lost",
]
#: Signals that mean the lead is engaging again: they cancel pending stages.
RE_ENGAGEMENT: Final[frozenset[str]] = frozenset(
    {"message_received", "reply", "appointment_booked"}
)
PipelineStage = Literal["new", "contacted", "qualified", "showing", "offer", "under_contract"]
Outcome = Literal["responded", "re_engaged", "churned"]


def _timezone(value: str) -> str:
    zone(value)  # InvalidTimeZone is a ValueError: pydantic answers 422 with its message.
    return value


def _not_before_1970(value: datetime) -> datetime:
    if value < EARLIEST_TIMESTAMP:
        raise ValueError(f"must not be before {EARLIEST_TIMESTAMP:%Y-%m-%d} (UTC)")
    return value


def _not_in_future(value: datetime) -> datetime:
    # Checked here for a lead's creation (a lead created tomorrow has a
    # negative age, which the model was never trained on); a signal's
    # timestamp is checked with the batch (signals.py), under its own reason.
    if value > datetime.now(UTC) + MAX_FUTURE_SKEW:
        raise ValueError("must not be in the future")
    return value


def _scalar(value: Any) -> Any:
    if isinstance(value, str):
        if "\x00" in value or len(value) > MAX_TEXT:
            raise ValueError(f"strings must be at most {MAX_TEXT} characters without NUL")
    elif isinstance(value, bool) or value is None:
        pass
    elif isinstance(value, int):
        if not INT64[0] <= value <= INT64[1]:
            raise ValueError("integers must fit in 64 bits")
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("numbers must be finite")
    else:
        raise ValueError("values must be strings, numbers, booleans or null")
    return value


def _data(value: dict[str, Any]) -> dict[str, Any]:
    if len(value) > MAX_DATA_KEYS:
        raise ValueError(f"at most {MAX_DATA_KEYS} keys")
    for key, item in value.items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", key):
            raise ValueError(f"key {key[:64]!r}: 1-64 characters from A-Z a-z 0-9 _ . -")
        _scalar(item)
    return value


#: A LeadConnector contact's id (it may be an address). Leads and agents are
#: `LeadId` and `AgentId`, the formats every service takes them in.
ContactId = Annotated[str, IdentifierFormat(255, punctuation=CRM_PUNCTUATION)]
TimeZoneName = Annotated[str, AfterValidator(_timezone)]
SignalData = Annotated[dict[str, Any], AfterValidator(_data)]
#: A timezone-aware instant a CRM reports: 1970 or later.
CrmTimestamp = Annotated[AwareDatetime, AfterValidator(_not_before_1970)]


class LeadUpsert(BaseModel):
    """A lead to watch (created or updated): contact data, pipeline stage, a reopening."""

    model_config = ConfigDict(extra="forbid")

    lead_id: LeadId
    crm_contact_id: ContactId | None = Field(
        default=None, description="LeadConnector contact id; defaults to lead_id."
    )
    agent_id: AgentId | None = None
    timezone: TimeZoneName = Field(default="UTC", description="IANA zone, e.g. America/Denver.")
    pipeline_stage: PipelineStage = "new"
    created_at: Annotated[CrmTimestamp, AfterValidator(_not_in_future)] | None = None
    status: Literal["active"] | None = Field(
        default=None,
        description="active: the CRM reopened the lead, watch it again if churned; "
        "omitted: the stored status is kept.",
    )

    @property
    def stage_ordinal(self) -> int:
        """The pipeline stage as the model's ordinal."""
        return PIPELINE_STAGES[self.pipeline_stage]


def _distinct_leads(leads: list[LeadUpsert]) -> list[LeadUpsert]:
    # One upsert statement cannot write a row twice (Postgres refuses the
    # whole statement), and which copy should win is the CRM's to say.
    first: dict[str, int] = {}
    for index, lead in enumerate(leads):
        earlier = first.setdefault(lead.lead_id, index)
        if earlier != index:
            raise ValueError(
                f"lead_id {lead.lead_id!r} is at indexes {earlier} and {index}; "
                "send each lead once per batch"
            )
    return leads


class LeadBatchCreate(BaseModel):
    """``{"leads": [...]}``, up to 1,000 distinct leads of the caller's tenant."""

    model_config = ConfigDict(extra="forbid")

    leads: Annotated[
        list[LeadUpsert], Field(min_length=1, max_length=1000), AfterValidator(_distinct_leads)
    ]


class LeadsAccepted(BaseModel):
    """How many leads were created or updated."""

    upserted: int


class SignalCreate(BaseModel):
    """One engagement signal from the CRM.

    ``signal_id`` is the CRM's event id (a UUID): a retried webhook with the
    same id is stored once. ``stage_changed`` needs ``data.stage`` (one of the
    pipeline stages).
    """

    model_config = ConfigDict(extra="forbid")

    # Its canonical text only, as every id: braces, a urn:uuid: prefix or no
    # hyphens named the same signal in forms the published pattern refuses.
    signal_id: CanonicalUuid
    lead_id: LeadId
    type: SignalType
    occurred_at: CrmTimestamp
    data: SignalData = Field(default_factory=dict)


def _one_signal_per_id(signals: list[SignalCreate]) -> list[SignalCreate]:
    # Identical copies are a retry (stored once). Copies that differ left the
    # stored one to the order Postgres happened to insert them in: a reply
    # (which cancels pending sends) or an open, for one lead or another.
    first: dict[UUID, int] = {}
    for index, signal in enumerate(signals):
        earlier = first.setdefault(signal.signal_id, index)
        if signals[earlier] != signal:
            raise ValueError(
                f"signal_id {signal.signal_id} is at indexes {earlier} and {index} with "
                "different fields; one id names one signal"
            )
    return signals


class SignalBatchCreate(BaseModel):
    """``{"signals": [...]}``; validated and stored as a whole."""

    model_config = ConfigDict(extra="forbid")

    signals: Annotated[list[SignalCreate], Field(min_length=1), AfterValidator(_one_signal_per_id)]


class SignalsAccepted(BaseModel):
    """What the batch did: stored (new), duplicates, and pending stages cancelled."""

    stored: int
    duplicates: int
    cancelled_sends: int


class OutcomeUpdate(BaseModel):
    """An intervention's outcome, reported by the CRM integration."""

    model_config = ConfigDict(extra="forbid")

    outcome: Outcome


class InterventionPublic(BaseModel):
    """One row of ``churn_interventions`` as operators see it."""

    intervention_id: UUID
    lead_id: str
    churn_probability: float
    intervention_stage: str
    channels_used: list[str]
    status: str
    reason: str | None
    outcome: str | None
    detected_at: datetime | None
    intervened_at: datetime | None
    detection_latency_seconds: float | None
    intervention_latency_seconds: float | None


class DeadLetterPublic(BaseModel):
    """A send that exhausted its retries (or was refused), with its last error."""

    outbox_id: UUID
    intervention_id: UUID
    lead_id: str
    channel: str
    attempts: int
    last_error: str | None
    updated_at: datetime
