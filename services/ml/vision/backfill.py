"""``enterprisehub vision backfill --tenant T``: analyse a tenant's photos in bulk.

Through the Message Batches API (half the price of single calls), resumable:

1. Resume: batches recorded in ``vision_backfill_items`` as ``submitted`` are
   collected first (nothing is submitted twice for them).
2. Plan: every photo under the tenant's prefix of the media bucket that has no
   item row yet gets one: ``done`` when an analysis of the same image, model
   and prompt version already exists (no call; it is linked to the property
   whose folder holds the photo, ``tenants/T/photos/<property>/<file>``),
   else ``queued``.
3. Submit: the queued photos (one request per distinct image, ``custom_id`` =
   image sha256) go in one batch; their rows become ``submitted`` with the
   batch id in the same transaction as nothing else: right after the API
   answers. A crash in the instant between the API's answer and that update
   leaves them ``queued``, and the next run would submit them again: that
   window is one round trip wide and the only one.
4. Collect: the batch is polled (a batch not yet visible right after its
   creation answers 404, read as "in progress") until it has ended; each
   result is validated like a single call's, stored through the same
   exactly-once claim as the API route (linked to every property the photo
   was found under) and booked in the ledger at batch price. An invalid or
   failed result marks its items ``failed`` with the reason (no repair round
   in bulk; a later run or the single-photo API retries them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import anthropic
from pydantic import ValidationError

from services.common.claude import ClaudeClient, Usage, without_nul
from services.common.database import Database
from services.ml.vision import store
from services.ml.vision.analysis import (
    FEATURE,
    PROMPT_VERSION,
    VisionAnalysis,
    request_params,
    two_decimals,
)
from services.ml.vision.images import ImageRejected, PreparedImage, prepare_image
from services.ml.vision.media import MediaStore

log = logging.getLogger(__name__)

#: How often a result waits for a live request's claim on the same photo to end.
CLAIM_POLL_SECONDS = 0.5


@dataclass
class BackfillReport:
    """What one run did."""

    planned: int = 0
    already_done: int = 0
    submitted: int = 0
    stored: int = 0
    failed: int = 0
    batches: list[str] = field(default_factory=list)


async def _items(db: Database, tenant_id: str, model: str, status: str) -> list[dict[str, Any]]:
    async with db.tenant(tenant_id) as conn:
        rows = await conn.fetch(
            "SELECT object_key, image_sha256, batch_id FROM vision_backfill_items "
            "WHERE model = $1 AND prompt_version = $2 AND status = $3 ORDER BY object_key",
            model,
            PROMPT_VERSION,
            status,
        )
    return [dict(row) for row in rows]


async def _set_status(
    db: Database,
    tenant_id: str,
    model: str,
    keys: list[str],
    status: str,
    *,
    batch_id: str | None = None,
    error: str | None = None,
) -> None:
    async with db.tenant(tenant_id) as conn:
        await conn.execute(
            "UPDATE vision_backfill_items SET status = $1, batch_id = coalesce($2, batch_id), "
            "error = $3 WHERE model = $4 AND prompt_version = $5 AND object_key = ANY($6)",
            status,
            batch_id,
            error,
            model,
            PROMPT_VERSION,
            keys,
        )


@dataclass(slots=True, eq=False, kw_only=True)
class Backfill:
    """One tenant's backfill (see the module docstring)."""

    db: Database
    claude: ClaudeClient
    media: MediaStore
    tenant_id: str
    max_image_bytes: int
    #: VISION_CLAIM_STALE_SECONDS: a pending claim this old belongs to a dead request.
    claim_stale_seconds: float
    poll_seconds: float = 30.0
    model: str = field(init=False)
    report: BackfillReport = field(default_factory=BackfillReport, init=False)

    def __post_init__(self) -> None:
        self.model = self.claude.model

    async def run(self) -> BackfillReport:
        """Resume, plan, submit, collect."""
        submitted = await _items(self.db, self.tenant_id, self.model, "submitted")
        for batch_id in sorted({row["batch_id"] for row in submitted}):
            log.info("resuming batch %s", batch_id)
            await self._collect(batch_id)
        images = await self._plan()
        if images:
            batch_id = await self._submit(images)
            await self._collect(batch_id)
        return self.report

    async def _prepare(self, key: str) -> PreparedImage | None:
        try:
            data = await self.media.get(key, max_bytes=self.max_image_bytes)
            return await asyncio.to_thread(prepare_image, data)
        except ImageRejected as exc:
            log.warning("skipping %s: %s", key, exc.detail)
            return None

    async def _plan(self) -> dict[str, tuple[PreparedImage, list[str]]]:
        async with self.db.tenant(self.tenant_id) as conn:
            known = {
                row["object_key"]
                for row in await conn.fetch(
                    "SELECT object_key FROM vision_backfill_items "
                    "WHERE model = $1 AND prompt_version = $2",
                    self.model,
                    PROMPT_VERSION,
                )
            }
        for key in await self.media.list_photos(self.tenant_id):
            if key in known:
                continue
            image = await self._prepare(key)
            if image is None:
                continue
            # A photo analysed before (maybe for another property) is linked to the
            # property whose folder holds it; an upload's key names no property.
            existing = await store.find(
                self.db,
                self.tenant_id,
                sha256=image.sha256,
                model=self.model,
                prompt_version=PROMPT_VERSION,
                property_id=_folder_property(key),
            )
            status = "done" if existing is not None and existing["status"] == "done" else "queued"
            async with self.db.tenant(self.tenant_id) as conn:
                await conn.execute(
                    "INSERT INTO vision_backfill_items (object_key, image_sha256, model, "
                    "prompt_version, status) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                    key,
                    image.sha256,
                    self.model,
                    PROMPT_VERSION,
                    status,
                )
            self.report.planned += 1
            self.report.already_done += status == "done"
        images: dict[str, tuple[PreparedImage, list[str]]] = {}
        for row in await _items(self.db, self.tenant_id, self.model, "queued"):
            if row["image_sha256"] in images:
                images[row["image_sha256"]][1].append(row["object_key"])
                continue
            image = await self._prepare(row["object_key"])
            if image is not None:
                images[image.sha256] = (image, [row["object_key"]])
        return images

    async def _submit(self, images: dict[str, tuple[PreparedImage, list[str]]]) -> str:
        requests = [
            {"custom_id": sha, "params": request_params(image, model=self.model)}
            for sha, (image, _keys) in images.items()
        ]
        batch = await self.claude.api.messages.batches.create(requests=requests)  # type: ignore[arg-type]
        keys = [key for _image, item_keys in images.values() for key in item_keys]
        await _set_status(self.db, self.tenant_id, self.model, keys, "submitted", batch_id=batch.id)
        self.report.submitted += len(requests)
        self.report.batches.append(batch.id)
        log.info("submitted batch %s with %d photos", batch.id, len(requests))
        return batch.id

    async def _wait_ended(self, batch_id: str) -> None:
        while True:
            try:
                batch = await self.claude.api.messages.batches.retrieve(batch_id)
            except anthropic.NotFoundError:
                # A new batch may not be readable yet: eventual consistency.
                batch = None
            if batch is not None and batch.processing_status == "ended":
                return
            await asyncio.sleep(self.poll_seconds)

    async def _collect(self, batch_id: str) -> None:
        await self._wait_ended(batch_id)
        by_sha: dict[str, list[str]] = defaultdict(list)
        async with self.db.tenant(self.tenant_id) as conn:
            for row in await conn.fetch(
                "SELECT object_key, image_sha256 FROM vision_backfill_items "
                "WHERE batch_id = $1 AND status = 'submitted'",
                batch_id,
            ):
                by_sha[row["image_sha256"]].append(row["object_key"])
        results = await self.claude.api.messages.batches.results(batch_id)
        async for item in results:
            keys = by_sha.get(item.custom_id, [])
            if not keys:
                continue
            if item.result.type != "succeeded":
                await self._fail(keys, f"batch result {item.result.type}")
                continue
            message = item.result.message
            usage = Usage.from_api(message.usage.model_dump())
            cost = await self.claude.account_batch(
                tenant_id=self.tenant_id,
                feature=FEATURE,
                model=message.model,
                usage=usage,
                request_id=message.id,
            )
            text = "".join(block.text for block in message.content if block.type == "text")
            try:
                if message.stop_reason != "end_turn":
                    raise ValueError(f"stop_reason {message.stop_reason}")
                output = without_nul(VisionAnalysis.model_validate_json(text))
            except (ValidationError, ValueError) as exc:
                await self._fail(keys, f"unusable answer: {str(exc)[:300]}")
                continue
            await self._store(item.custom_id, keys, output, usage, cost)

    async def _fail(self, keys: list[str], error: str) -> None:
        await _set_status(self.db, self.tenant_id, self.model, keys, "failed", error=error)
        self.report.failed += len(keys)

    async def _store(
        self, sha: str, keys: list[str], output: VisionAnalysis, usage: Usage, cost: int
    ) -> None:
        # Every property the photo was found under shows its analysis.
        properties = sorted({_property_of(key) for key in keys})
        while True:
            claim = await store.claim(
                self.db,
                self.tenant_id,
                sha256=sha,
                model=self.model,
                prompt_version=PROMPT_VERSION,
                property_id=_property_of(keys[0]),
                image_url=f"s3://{self.media.bucket}/{keys[0]}",
                source="batch",
                stale_seconds=self.claim_stale_seconds,
            )
            if claim.owned:
                with contextlib.suppress(store.ClaimLost):
                    await store.complete(
                        self.db,
                        self.tenant_id,
                        claim=claim,
                        results={**output.model_dump(mode="json"), "batch": True},
                        luxury_score=float(two_decimals(output.luxury_score)),
                        condition_score=float(two_decimals(output.condition_score)),
                        latency_seconds=0.0,
                        usage=usage,
                        cost_micro_usd=cost,
                        property_ids=properties,
                    )
                    break
            elif claim.status == "done":
                await store.link(
                    self.db, self.tenant_id, analysis_id=claim.analysis_id, property_ids=properties
                )
                break
            # A live request is analysing the same photo: its result (linked
            # then) or its release (ours stored then) comes before its claim
            # goes stale. Taking the claim over stored two results, the second
            # under readers of the first.
            await asyncio.sleep(CLAIM_POLL_SECONDS)
        await _set_status(self.db, self.tenant_id, self.model, keys, "done")
        self.report.stored += len(keys)


def _folder_property(key: str) -> str | None:
    """The property of ``tenants/T/photos/<property>/<file>``; None for a file of ``photos/``."""
    parts = key.split("/")[3:]
    return parts[0] if len(parts) > 1 else None


def _property_of(key: str) -> str:
    """``tenants/T/photos/<property>/<file>`` names the property; else the file stem."""
    return _folder_property(key) or key.rsplit("/", 1)[-1].rsplit(".", 1)[0][:255]


async def run_backfill(**kwargs: Any) -> BackfillReport:
    """Build and run a ``Backfill`` (``kwargs`` as its constructor's)."""
    started = time.perf_counter()
    report = await Backfill(**kwargs).run()
    log.info("backfill finished in %.1f s: %s", time.perf_counter() - started, report)
    return report
