"""A photo's analysis is stored once: a claim is taken over only from a dead owner,
and a result whose claim was taken over is not stored over the new owner's.

Real Postgres; the claims as the API route and the batch backfill take them.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from services.common.claude import Usage
from services.common.database import Database
from services.ml.vision import store
from services.ml.vision.analysis import PROMPT_VERSION, VisionAnalysis
from services.ml.vision.backfill import Backfill
from services.ml.vision.media import MediaStore

pytestmark = pytest.mark.integration

MODEL = "claude-sonnet-4-5"
SHA = "ab" * 32
TENANT = "tenant-claims"


def _output(summary: str) -> VisionAnalysis:
    return VisionAnalysis(
        room_type="kitchen",
        luxury_score=0.5,
        condition_score=0.5,
        features=[],
        defects=[],
        summary=summary,
    )


async def _claim(db: Database, property_id: str) -> store.Claim:
    return await store.claim(
        db,
        TENANT,
        sha256=SHA,
        model=MODEL,
        prompt_version=PROMPT_VERSION,
        property_id=property_id,
        image_url="s3://media/k",
        source="upload",
        stale_seconds=180,
    )


async def _complete(
    db: Database, claim: store.Claim, summary: str, property_id: str
) -> dict[str, Any]:
    return await store.complete(
        db,
        TENANT,
        claim=claim,
        results=_output(summary).model_dump(mode="json"),
        luxury_score=0.5,
        condition_score=0.5,
        latency_seconds=1.0,
        usage=Usage(10, 10),
        cost_micro_usd=7,
        property_ids=[property_id],
    )


async def _stored(db: Database) -> dict[str, Any]:
    row = await store.find(db, TENANT, sha256=SHA, model=MODEL, prompt_version=PROMPT_VERSION)
    assert row is not None
    return row


async def test_a_batch_result_waits_for_a_live_analysis_of_the_same_photo(db: Database) -> None:
    """The backfill took the live request's claim over (a stale limit of 0) and
    stored its result; the live call's result then replaced it under the readers
    of the first, and the photo was billed and stored twice."""
    live = await _claim(db, "house-api")
    assert live.owned
    backfill = Backfill(
        db=db,
        claude=SimpleNamespace(model=MODEL),  # type: ignore[arg-type]
        media=MediaStore("media", None),
        tenant_id=TENANT,
        max_image_bytes=10**7,
        claim_stale_seconds=180.0,
    )
    batch = asyncio.create_task(
        backfill._store(
            SHA,
            [f"tenants/{TENANT}/photos/house-bf/x.jpg"],
            _output("from the batch"),
            Usage(10, 10),
            5,
        )
    )
    await asyncio.sleep(1.0)
    assert not batch.done()
    assert (await _stored(db))["status"] == "pending"

    await _complete(db, live, "from the live call", "house-api")
    await asyncio.wait_for(batch, 10)
    row = await _stored(db)
    assert row["analysis_results"]["summary"] == "from the live call"
    listed = await store.list_for_property(db, TENANT, "house-bf")
    assert [r["analysis_id"] for r in listed] == [live.analysis_id]


async def test_a_result_whose_claim_was_taken_over_is_not_stored(
    db: Database, owner_db: Database
) -> None:
    first = await _claim(db, "house-a")
    async with owner_db.unscoped() as conn:  # its owner died: the claim goes stale
        await conn.execute(
            "UPDATE property_vision_analyses SET claimed_at = claimed_at - interval '1 hour' "
            "WHERE analysis_id = $1",
            first.analysis_id,
        )
    second = await _claim(db, "house-b")
    assert second.owned
    assert second.analysis_id == first.analysis_id
    await _complete(db, second, "the new owner's", "house-b")
    with pytest.raises(store.ClaimLost):
        await _complete(db, first, "the late one's", "house-a")
    row = await _stored(db)
    assert row["analysis_results"]["summary"] == "the new owner's"
    # Nor is the photo listed for the late one's property by that completion.
    assert await store.list_for_property(db, TENANT, "house-a") == []
