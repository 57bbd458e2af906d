"""Claude's analysis of a listing photo, exactly once per (tenant, image, model, prompt).

The scale (documented in the API and stored as NUMERIC(3,2)): ``luxury_score``
and ``condition_score`` are 0.00 to 1.00, two decimals.

- luxury: 0.00 basic or builder-grade finishes, 0.50 good mid-market quality,
  1.00 top-tier luxury (custom millwork, stone, designer fixtures);
- condition: 0.00 uninhabitable or major damage, 0.50 dated but sound,
  1.00 new or immaculate.

Exactly once: a stored analysis is returned from the database; concurrent
requests for the same photo in this process share one task (a client that
disconnects does not cancel it); across replicas the unique ``pending`` row
of ``store.claim`` decides who calls, and the others poll for its result. A
call that times out is not repeated by the client (see
``services.common.claude.client``); its claim is released so a later
request can try again. The owner's whole call is bounded by
VISION_ANALYSIS_TIMEOUT_SECONDS, below VISION_CLAIM_STALE_SECONDS, so a claim
is only ever taken over from a replica that died, never from one still calling.

Once per photo, not per property: a photo posted for a second property is
answered with the stored analysis (no call) under that property, and linked
to it (``store``), so each property's listing shows it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
import uuid
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

from services.common.claude import ClaudeClient, ClaudeTimeout, ClaudeUnavailable
from services.common.database import Database
from services.common.latency import LatencyWindow
from services.ml.vision import store
from services.ml.vision.images import PreparedImage

PROMPT_VERSION: Final = "pv1"
FEATURE: Final = "property_vision"
MAX_OUTPUT_TOKENS: Final = 1024
POLL_SECONDS: Final = 0.1

SYSTEM_PROMPT: Final = """\
You are a licensed property appraiser reviewing one listing photo for a real-estate CRM.
Describe only what is visible in the photo; never guess at what is outside it.

Scores are numbers from 0.00 to 1.00 with two decimals:
- luxury_score: 0.00 basic or builder-grade finishes; 0.50 good mid-market quality;
  1.00 top-tier luxury (custom millwork, natural stone, designer fixtures, premium views).
- condition_score: 0.00 uninhabitable or major damage; 0.50 dated but sound;
  1.00 new or immaculate.
room_type is the single best match. features lists notable visible features (at most 20,
short noun phrases). defects lists visible defects with a severity (minor, moderate, major);
an empty list when none are visible. summary is at most three sentences for an agent.
If the image is not a property photo, use room_type "not_a_property" and scores of 0.00.
"""


class RoomType(StrEnum):
    """What the photo shows."""

    EXTERIOR = "exterior"
    LIVING_ROOM = "living_room"
    KITCHEN = "kitchen"
    BEDROOM = "bedroom"
    BATHROOM = "bathroom"
    DINING_ROOM = "dining_room"
    OFFICE = "office"
    GARAGE = "garage"
    OUTDOOR = "outdoor"
    OTHER_ROOM = "other_room"
    NOT_A_PROPERTY = "not_a_property"


class Severity(StrEnum):
    """How serious a visible defect is."""

    MINOR = "minor"
    MODERATE = "moderate"
    MAJOR = "major"


class Defect(BaseModel):
    """One visible defect."""

    model_config = ConfigDict(extra="forbid")

    description: str = Field(min_length=1, max_length=200)
    severity: Severity


class VisionAnalysis(BaseModel):
    """Claude's structured output for one photo (see the module docstring for the scale)."""

    model_config = ConfigDict(extra="forbid")

    room_type: RoomType
    luxury_score: float = Field(ge=0, le=1, description="0.00 basic to 1.00 top-tier luxury")
    condition_score: float = Field(ge=0, le=1, description="0.00 uninhabitable to 1.00 new")
    features: list[str] = Field(max_length=20)
    defects: list[Defect] = Field(max_length=20)
    summary: str = Field(min_length=1, max_length=600)


def two_decimals(value: float) -> Decimal:
    """The NUMERIC(3,2) value stored for a score."""
    return Decimal(str(value)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def request_params(image: PreparedImage, *, model: str) -> dict[str, Any]:
    """The Messages API request for ``image`` (also used by the batch backfill)."""
    return {
        "model": model,
        "max_tokens": MAX_OUTPUT_TOKENS,
        "system": SYSTEM_PROMPT,
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "image",
                        "source": {
                            "type": "base64",
                            "media_type": image.media_type,
                            "data": base64.b64encode(image.data).decode("ascii"),
                        },
                    },
                    {"type": "text", "text": "Analyse this listing photo."},
                ],
            }
        ],
    }


@dataclass(slots=True, eq=False, kw_only=True)
class VisionAnalyzer:
    """Runs analyses under the exactly-once rule (see the module docstring)."""

    db: Database
    model: str
    wait_seconds: float
    stale_seconds: float
    #: Below ``stale_seconds``: the owner gives its claim back before it goes stale.
    analysis_timeout: float
    latency: LatencyWindow = field(default_factory=lambda: LatencyWindow(max_samples=1000))
    _inflight: dict[tuple[str, str], asyncio.Task[tuple[dict[str, Any], bool]]] = field(
        default_factory=dict, init=False
    )

    @property
    def in_flight(self) -> int:
        """Analyses this process is running now."""
        return len(self._inflight)

    async def stored(
        self, tenant_id: str, sha256: str, *, property_id: str
    ) -> dict[str, Any] | None:
        """The finished analysis of the image ``sha256`` for ``property_id``, if there is one.

        Found, it is linked to the property in the same statement, and
        returned under that property's id.
        """
        row = await self._find(tenant_id, sha256, property_id)
        if row is None or row["status"] != "done":
            return None
        return _for_property(row, property_id)

    async def mark_photo_missing(
        self, tenant_id: str, analysis_id: uuid.UUID, *, missing: bool
    ) -> None:
        """Record that an upload's photo is missing from the bucket (or stored at last)."""
        await store.set_photo_missing(self.db, tenant_id, analysis_id, missing=missing)

    async def photo_stored(self, tenant_id: str, row: dict[str, Any]) -> dict[str, Any]:
        """``row`` once its upload's photo is in the bucket: ``photo_missing`` cleared."""
        if not row["photo_missing"]:
            return row
        await self.mark_photo_missing(tenant_id, row["analysis_id"], missing=False)
        return {**row, "photo_missing": False}

    async def _find(self, tenant_id: str, sha256: str, property_id: str) -> dict[str, Any] | None:
        """The image's row under this model and prompt (a done one linked to ``property_id``)."""
        return await store.find(
            self.db,
            tenant_id,
            sha256=sha256,
            model=self.model,
            prompt_version=PROMPT_VERSION,
            property_id=property_id,
        )

    async def analyse(
        self,
        *,
        claude: ClaudeClient,
        tenant_id: str,
        property_id: str,
        image: PreparedImage,
        image_url: str,
        source: str,
    ) -> tuple[dict[str, Any], bool]:
        """The analysis row (under ``property_id``, linked to it) and whether it was already
        stored (no call made).

        The caller has looked for a stored analysis (``stored``) before
        preparing the image; one stored since then is found by the claim.
        """
        key = (tenant_id, image.sha256)
        task = self._inflight.get(key)
        joined = task is not None
        if task is None:
            task = asyncio.create_task(
                self._run(claude, tenant_id, property_id, image, image_url, source)
            )
            self._inflight[key] = task
            task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        # shield: a client that goes away must not cancel the call others wait for.
        row, cached = await asyncio.shield(task)
        if joined:
            # The task linked the property it was started for, maybe another one.
            await store.link(
                self.db, tenant_id, analysis_id=row["analysis_id"], property_ids=[property_id]
            )
        return _for_property(row, property_id), cached

    async def _run(
        self,
        claude: ClaudeClient,
        tenant_id: str,
        property_id: str,
        image: PreparedImage,
        image_url: str,
        source: str,
    ) -> tuple[dict[str, Any], bool]:
        deadline = time.monotonic() + self.wait_seconds
        while True:
            claim = await store.claim(
                self.db,
                tenant_id,
                sha256=image.sha256,
                model=self.model,
                prompt_version=PROMPT_VERSION,
                property_id=property_id,
                image_url=image_url,
                source=source,
                stale_seconds=self.stale_seconds,
            )
            if claim.owned:
                try:
                    return await self._call(claude, tenant_id, property_id, claim, image), False
                except store.ClaimLost:
                    # Taken over while this call ran: the new owner's result is
                    # the stored one, and is answered when it is there.
                    continue
            if claim.status == "done":
                row = await self._find(tenant_id, image.sha256, property_id)
                if row is not None:
                    return row, True
            if time.monotonic() > deadline:
                raise ClaudeUnavailable(
                    "analysis_in_progress",
                    "another replica is analysing this photo; retry shortly for its result",
                    retry_after=2,
                )
            await asyncio.sleep(POLL_SECONDS)

    async def _call(
        self,
        claude: ClaudeClient,
        tenant_id: str,
        property_id: str,
        claim: store.Claim,
        image: PreparedImage,
    ) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            # The ledger rows are stored with the result (one transaction); on
            # an exception the client has booked the calls it made.
            async with asyncio.timeout(self.analysis_timeout):
                result = await claude.structured(
                    tenant_id=tenant_id,
                    feature=FEATURE,
                    output_format=VisionAnalysis,
                    defer_ledger=True,
                    **request_params(image, model=self.model),
                )
        except BaseException as exc:
            await asyncio.shield(store.release(self.db, tenant_id, claim))
            if isinstance(exc, TimeoutError):
                raise ClaudeTimeout(
                    "vision_timeout",
                    "the analysis took longer than VISION_ANALYSIS_TIMEOUT_SECONDS "
                    f"({self.analysis_timeout:g} s)",
                ) from None
            raise
        latency = time.perf_counter() - started
        self.latency.record(latency)
        output = result.output
        try:
            return await store.complete(
                self.db,
                tenant_id,
                claim=claim,
                results={
                    **output.model_dump(mode="json"),
                    "image": {
                        "width": image.original_width,
                        "height": image.original_height,
                        "sent_width": image.width,
                        "sent_height": image.height,
                    },
                    "attempts": result.attempts,
                },
                luxury_score=float(two_decimals(output.luxury_score)),
                condition_score=float(two_decimals(output.condition_score)),
                latency_seconds=latency,
                usage=result.usage,
                cost_micro_usd=result.cost_micro_usd,
                property_ids=[property_id],
                ledger=result.ledger,
            )
        except Exception:
            # The calls were billed whatever happened to their result's row.
            await asyncio.shield(claude.book(result.ledger))
            # Without a result the claim goes back for the next copy, which
            # otherwise waited VISION_CLAIM_WAIT_SECONDS and got 503 until the
            # claim went stale. Unreleased (the database may be what failed),
            # it goes stale as before.
            with contextlib.suppress(Exception):
                await asyncio.shield(store.release(self.db, tenant_id, claim))
            raise


def _for_property(row: dict[str, Any], property_id: str) -> dict[str, Any]:
    """The analysis as answered for ``property_id`` (its row names the first property)."""
    return {**row, "property_id": property_id}
