"""Request and response bodies of the lead-scoring API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from services.common.scoring import LeadFeatures
from services.ml.config import MAX_BATCH_LEADS


class LeadScoreCreate(BaseModel):
    """One lead to score: its CRM attributes and, optionally, the caller's id for it."""

    model_config = ConfigDict(extra="forbid")

    lead_id: str | None = Field(
        default=None, min_length=1, max_length=255, description="Echoed back; never stored."
    )
    features: LeadFeatures


class LeadScorePublic(BaseModel):
    """The conversion probability of one lead."""

    lead_id: str | None
    score: float = Field(ge=0, le=1, description="Probability that the lead converts.")
    model_version: str


class LeadScoreBatchCreate(BaseModel):
    """Up to `MAX_BATCH_LEADS` leads scored in one call."""

    model_config = ConfigDict(extra="forbid")

    leads: list[LeadScoreCreate] = Field(min_length=1, max_length=MAX_BATCH_LEADS)


class LeadScoreItemPublic(BaseModel):
    """One result of a batch, in the order of the request."""

    lead_id: str | None
    score: float = Field(ge=0, le=1)


class LeadScoreBatchPublic(BaseModel):
    """Scores of a batch, in request order, and the model that produced them."""

    model_version: str
    scores: list[LeadScoreItemPublic]
