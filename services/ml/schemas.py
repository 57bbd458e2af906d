"""Request and response bodies of the lead-scoring API."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.common.claude.ledger import stored_call_cost
from services.common.identifiers import IdentifierFormat, LeadId
from services.common.scoring import LeadFeatures
from services.ml.config import MAX_BATCH_LEADS


class LeadScoreCreate(BaseModel):
    """One lead to score: its CRM attributes and, optionally, the caller's id for it."""

    model_config = ConfigDict(extra="forbid")

    # Never stored, but the caller's id for a lead is the CRM's: one format
    # for it in every service.
    lead_id: LeadId | None = Field(default=None, description="Echoed back; never stored.")
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


# -- property vision ---------------------------------------------------------

#: A property's id, as the CRM names it.
PropertyId = Annotated[str, IdentifierFormat(255)]


class VisionAnalysisCreate(BaseModel):
    """A photo to analyse: an object key of the tenant's media, or an HTTPS URL."""

    model_config = ConfigDict(extra="forbid")

    property_id: PropertyId
    object_key: str | None = Field(default=None, min_length=1, max_length=500)
    image_url: str | None = Field(default=None, min_length=9, max_length=2000)

    @model_validator(mode="after")
    def _one_source(self) -> VisionAnalysisCreate:
        if (self.object_key is None) == (self.image_url is None):
            raise ValueError("give exactly one of object_key and image_url")
        return self


class VisionAnalysisPublic(BaseModel):
    """A stored analysis. Scores are 0.00 (basic / uninhabitable) to 1.00 (luxury / new).

    ``property_id`` is the property of the request (the upload's, or the
    listing's), also when the photo was first analysed for another one.
    """

    analysis_id: str
    property_id: str
    image_sha256: str
    model: str
    prompt_version: str
    room_type: str
    luxury_score: float = Field(ge=0, le=1)
    condition_score: float = Field(ge=0, le=1)
    features: list[str]
    defects: list[dict[str, Any]]
    summary: str
    latency_seconds: float | None
    input_tokens: int
    output_tokens: int
    cost_micro_usd: int
    cached: bool = Field(description="True when answered from a stored analysis (no call).")
    photo_missing: bool = Field(
        description=(
            "True when the photo was uploaded but storage refused it (that upload answered "
            "503): the analysis is kept, and uploading the same photo again stores it."
        )
    )

    @classmethod
    def from_row(cls, row: dict[str, Any], *, cached: bool) -> VisionAnalysisPublic:
        """From a ``property_vision_analyses`` row."""
        results = row["analysis_results"] or {}
        return cls(
            analysis_id=str(row["analysis_id"]),
            property_id=row["property_id"],
            image_sha256=row["image_sha256"],
            model=row["model"],
            prompt_version=row["prompt_version"],
            room_type=results.get("room_type", ""),
            luxury_score=float(row["luxury_score"]),
            condition_score=float(row["condition_score"]),
            features=list(results.get("features", [])),
            defects=list(results.get("defects", [])),
            summary=results.get("summary", ""),
            cached=cached,
            photo_missing=row["photo_missing"],
            **stored_call_cost(row),
        )


class VisionAnalysisList(BaseModel):
    """The analyses of the photos posted for a property, most recently posted first.

    A photo shared by several properties is analysed once and listed for
    each, under the requested ``property_id``.
    """

    analyses: list[VisionAnalysisPublic]
