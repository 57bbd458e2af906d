"""Request and response bodies of the realtime HTTP API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from services.common.scoring import LeadFeatures

DeliveryStatus = Literal["published", "deferred"]


class LeadEventBase(BaseModel):
    """Fields shared by what a CRM sends and what the feed carries."""

    lead_id: str = Field(min_length=1, max_length=255, description="The CRM's lead id.")
    event_type: str = Field(
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$",
        description="What happened, e.g. 'lead.created', 'email.opened'.",
    )
    agent_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=255,
        description="Deliver only to this agent's sockets (the token subject); "
        "omit to deliver to every socket of the tenant.",
    )


class LeadEventCreate(LeadEventBase):
    """A CRM webhook: the event plus the lead as the scoring model reads it.

    Unknown top-level fields are refused so a misspelt field fails loudly
    instead of being dropped; free-form CRM data goes in ``data``.
    """

    model_config = ConfigDict(extra="forbid")

    lead: LeadFeatures = Field(description="The lead's attributes, scored on ingest.")
    data: dict[str, Any] = Field(
        default_factory=dict, description="Free-form CRM payload, stored and forwarded as is."
    )


class LeadEventBatchCreate(BaseModel):
    """A batch webhook: several events of the caller's tenant, stored together or not at all.

    The size limit is REALTIME_MAX_BATCH_EVENTS, checked by the route (it is
    configuration, not part of the schema).
    """

    model_config = ConfigDict(extra="forbid")

    events: list[LeadEventCreate] = Field(min_length=1, description="The events, in CRM order.")


class LeadEventAccepted(BaseModel):
    """The 202 answer: the event is stored; ``delivery`` says if it is on its way."""

    event_id: str = Field(description="UUID of the stored event (also in its feed frame).")
    accepted_at: float = Field(description="Epoch seconds when the ingest accepted it.")
    stream_id: str | None = Field(
        description="Position in the tenant's stream (null while delivery is deferred)."
    )
    delivery: DeliveryStatus = Field(
        description="'published': sent to the feed; 'deferred': Redis was unreachable, "
        "the outbox relay publishes it when Redis is back."
    )
    score: float = Field(description="Conversion probability from the lead-scoring model.")
    model_version: str


class LeadEventBatchAccepted(BaseModel):
    """The 202 answer to a batch: one acknowledgement per event, in request order."""

    events: list[LeadEventAccepted]
