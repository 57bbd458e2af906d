"""Request and response bodies of the realtime HTTP API.

What validation accepts must also be storable and deliverable: Postgres
refuses NUL characters in text and JSONB, the JSON encoder refuses integers
beyond 64 bits and unpaired surrogates, and would write infinities as null.
`storable_data` refuses all of these with a 422 naming the field, instead
of a 500 from the database (which, under group commit, used to fail every
request stored together with the bad one); the ids (`LeadId`, `AgentId`,
`services.common.identifiers`) hold none of them.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from services.common.identifiers import AgentId, IdentifierFormat, LeadId
from services.common.scoring import LeadFeatures

DeliveryStatus = Literal["published", "deferred"]

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_DATA_DEPTH = 32
"""Deepest nesting of objects and arrays accepted in ``data``."""


def _text_problem(value: str) -> str | None:
    if "\x00" in value:
        return "contains a NUL character (\\u0000), which cannot be stored"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains an unpaired UTF-16 surrogate (not valid Unicode)"
    return None


def _key_label(key: str) -> str:
    # Keys are client input: shown shortened and escaped, never raw.
    return repr(key[:40] + ("..." if len(key) > 40 else ""))


def storable_data(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` if every key and value can be stored and delivered as JSON, else ValueError.

    Refused: NUL characters and unpaired surrogates in keys or strings,
    integers outside the signed 64-bit range, NaN and infinities (``1e400``
    parses as infinity), nesting deeper than `MAX_DATA_DEPTH`.
    """
    stack: list[tuple[Any, str, int]] = [(data, "data", 0)]
    while stack:
        value, where, depth = stack.pop()
        if value is None or isinstance(value, bool):
            continue
        if isinstance(value, str):
            problem = _text_problem(value)
            if problem is not None:
                raise ValueError(f"{where} {problem}")
        elif isinstance(value, int):
            if not INT64_MIN <= value <= INT64_MAX:
                raise ValueError(f"{where} is an integer beyond 64 bits; send it as a string")
        elif isinstance(value, float):
            if not math.isfinite(value):
                raise ValueError(f"{where} is not a finite number (NaN, infinity or out of range)")
        elif isinstance(value, dict | list):
            if depth >= MAX_DATA_DEPTH:
                raise ValueError(f"{where} nests deeper than {MAX_DATA_DEPTH} levels")
            if isinstance(value, dict):
                for key, item in value.items():
                    problem = _text_problem(key)
                    if problem is not None:
                        raise ValueError(f"{where} has a key that {problem}")
                    stack.append((item, f"{where}.{_key_label(key)}", depth + 1))
            else:
                stack.extend((item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value))
    return data


class LeadEventBase(BaseModel):
    """Fields shared by what a CRM sends and what the feed carries."""

    # The same formats as churn's and coaching's: free text here took ids the
    # other services refuse, and an agent_id no token subject can equal (a
    # trailing newline) was stored, acknowledged and delivered to no one.
    lead_id: LeadId = Field(description="The CRM's lead id.")
    event_type: Annotated[str, IdentifierFormat(100)] = Field(
        description="What happened, e.g. 'lead.created', 'email.opened'."
    )
    agent_id: AgentId | None = Field(
        default=None,
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
    data: Annotated[dict[str, Any], AfterValidator(storable_data)] = Field(
        default_factory=dict,
        description="Free-form CRM payload, stored and forwarded as is (JSON without NUL "
        "characters, with finite numbers and integers within 64 bits).",
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
