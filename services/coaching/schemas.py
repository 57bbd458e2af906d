"""Request and response bodies of the coaching API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.common.claude.ledger import stored_call_cost
from services.common.identifiers import AgentId, IdentifierFormat

#: A message's or a conversation's id, as the CRM names them. An agent is an
#: `AgentId`: the token subject the feed targets, in the format churn and
#: realtime take it in.
CoachingId = Annotated[str, IdentifierFormat(128)]
MAX_MESSAGES = 2_000


class TranscriptMessage(BaseModel):
    """One message of a conversation, as the CRM exports it."""

    model_config = ConfigDict(extra="forbid")

    id: CoachingId
    speaker: Literal["agent", "lead"]
    text: str = Field(min_length=1, max_length=20_000)
    timestamp: datetime

    @model_validator(mode="after")
    def _no_nul(self) -> TranscriptMessage:
        if "\x00" in self.text:
            raise ValueError("text must not contain NUL characters")
        if self.timestamp.tzinfo is None:
            raise ValueError("timestamp must carry a time zone (for example 2026-12-03T10:00:00Z)")
        return self


class CoachingSessionCreate(BaseModel):
    """A transcript to analyse."""

    model_config = ConfigDict(extra="forbid")

    agent_id: AgentId
    conversation_id: CoachingId | None = None
    messages: list[TranscriptMessage] = Field(min_length=1, max_length=MAX_MESSAGES)

    @model_validator(mode="after")
    def _unique_ids(self) -> CoachingSessionCreate:
        ids = [message.id for message in self.messages]
        if len(set(ids)) != len(ids):
            raise ValueError("message ids must be unique within a transcript")
        return self


class CoachingSessionPublic(BaseModel):
    """A stored coaching session: local metrics, Claude's coaching, what it cost."""

    session_id: str
    agent_id: str
    conversation_id: str | None
    metrics: dict[str, Any]
    insights: dict[str, Any]
    improvement_areas: list[str]
    model: str | None
    prompt_version: str | None
    latency_seconds: float | None
    input_tokens: int
    output_tokens: int
    cache_write_tokens: int
    cache_read_tokens: int
    cost_micro_usd: int
    created_at: datetime
    cached: bool = False

    @classmethod
    def from_row(cls, row: dict[str, Any], *, cached: bool = False) -> CoachingSessionPublic:
        """From a ``coaching_sessions`` row."""
        return cls(
            session_id=str(row["session_id"]),
            agent_id=row["agent_id"],
            conversation_id=row["conversation_id"],
            metrics=row["analysis_data"],
            insights=row["coaching_insights"],
            improvement_areas=list(row["improvement_areas"]),
            model=row["model"],
            prompt_version=row["prompt_version"],
            cache_write_tokens=row["cache_write_tokens"],
            cache_read_tokens=row["cache_read_tokens"],
            created_at=row["created_at"],
            cached=cached,
            **stored_call_cost(row),
        )


class CoachingSessionList(BaseModel):
    """An agent's sessions, newest first."""

    sessions: list[CoachingSessionPublic]
