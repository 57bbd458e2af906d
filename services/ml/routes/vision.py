"""Property vision routes under ``/v1/ml/vision``.

- ``POST /v1/ml/vision/analyses``: JSON ``{property_id, object_key | image_url}``.
- ``POST /v1/ml/vision/analyses/upload?property_id=...``: the photo's bytes as
  the body (``Content-Type: image/...``); it is stored in the media bucket
  under the tenant's prefix, then analysed.
- ``GET /v1/ml/vision/analyses?property_id=...``: the property's analyses.

The caller's token needs the ``vision:analyze`` scope (each analysis is a
billed Claude call) and is checked before any body byte is read; a stored analysis
of the same photo is answered from the database (``cached: true``) without
calling Claude, whichever property it was first analysed for: the answer
carries the request's ``property_id``, and the photo is listed for every
property it was posted for. Bad input is a 4xx ``{detail, reason}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from services.common.auth import VisionPrincipalDep, auth_responses
from services.common.body import (
    BODY_ERROR_RESPONSES,
    read_body,
    read_model,
    request_body_openapi,
)
from services.common.claude import ClaudeDep
from services.common.flags import require_scope_and_feature
from services.common.scopes import VISION_ANALYZE
from services.common.storage import StorageUnavailable
from services.ml.deps import (
    MediaDep,
    OptionalMediaDep,
    PhotoFetcherDep,
    SettingsDep,
    VisionAnalyzerDep,
)
from services.ml.schemas import (
    PropertyId,
    VisionAnalysisCreate,
    VisionAnalysisList,
    VisionAnalysisPublic,
)
from services.ml.vision.images import ACCEPTED_FORMATS, ImageRejected, prepare_image
from services.ml.vision.media import check_key, photo_key
from services.ml.vision.store import list_for_property

# A token without vision:analyze gets 403 insufficient_scope, then a tenant
# outside the property_vision rollout 403 feature_disabled (after
# authentication, before any body byte or Claude call).
router = APIRouter(
    prefix="/v1/ml/vision",
    tags=["property-vision"],
    dependencies=require_scope_and_feature(VISION_ANALYZE, "property_vision"),
    responses=auth_responses(VISION_ANALYZE, feature="property_vision"),
)

PropertyIdQuery = Annotated[PropertyId, Query()]

#: Bodies at least this big are hashed in a worker thread (hashlib releases the
#: GIL): about 2.4 ms of sha256 per MiB here would otherwise hold up every
#: other request on the event loop. Smaller ones are not worth a thread hop.
HASH_IN_THREAD_BYTES = 1024 * 1024
#: ``{property_id, object_key | image_url}``: three short strings (at most 2,755
#: characters by the schema), however big MAX_REQUEST_BODY_BYTES is for uploads.
MAX_ANALYSIS_BODY_BYTES = 16_384


def _hexdigest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def _sha256(data: bytes) -> str:
    """The photo's identity: the sha256 of its bytes as received."""
    if len(data) < HASH_IN_THREAD_BYTES:
        return _hexdigest(data)
    return await asyncio.to_thread(_hexdigest, data)


def _public(row: dict[str, Any], cached: bool) -> VisionAnalysisPublic:
    return VisionAnalysisPublic.from_row(row, cached=cached)


@router.post(
    "/analyses/upload",
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": f"The photo's bytes ({', '.join(sorted(ACCEPTED_FORMATS))}), "
            "at most VISION_MAX_IMAGE_BYTES.",
            "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
    responses=BODY_ERROR_RESPONSES,
)
async def analyse_upload(
    request: Request,
    property_id: PropertyIdQuery,
    principal: VisionPrincipalDep,
    claude: ClaudeDep,
    analyzer: VisionAnalyzerDep,
    media: MediaDep,
    settings: SettingsDep,
) -> VisionAnalysisPublic:
    """Store the uploaded photo under the tenant's prefix and analyse it for ``property_id``.

    A photo the tenant had analysed before (for any property) is answered
    from its stored analysis (``cached: true``, no call) and listed for
    ``property_id`` from now on.
    """
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if not content_type.startswith("image/"):
        raise ImageRejected("unsupported_image_type", "send the photo with Content-Type image/*")
    data = await read_body(
        request, limit=settings.vision_max_image_bytes, setting="VISION_MAX_IMAGE_BYTES"
    )
    # A photo analysed before is answered without decoding it again (its key is
    # content-addressed: stored once).
    sha256 = await _sha256(data)
    key = photo_key(principal.tenant_id, sha256)
    ref = f"s3://{media.bucket}/{key}"
    stored = await analyzer.stored(principal.tenant_id, sha256, property_id=property_id)
    if stored is not None:
        if stored["photo_missing"] or stored["image_url"] != ref:
            # Analysed while storage refused this photo (that upload answered
            # 503), or analysed from a URL or another object: an upload's photo
            # is kept under its own key all the same, so it is stored now. (The
            # put is idempotent: the key is the content's hash.)
            await media.put(key, data, content_type)
        return _public(await analyzer.photo_stored(principal.tenant_id, stored), True)
    image = await asyncio.to_thread(prepare_image, data, sha256=sha256)
    # The photo is stored while Claude looks at it: the upload is off the
    # analysis' critical path, and is kept even when the analysis fails.
    stored_photo = asyncio.create_task(media.put(key, data, content_type))
    try:
        row, cached = await analyzer.analyse(
            claude=claude,
            tenant_id=principal.tenant_id,
            property_id=property_id,
            image=image,
            image_url=ref,
            source="upload",
        )
    except BaseException:
        # The analysis' own error is the answer; the photo is kept if it could be.
        with contextlib.suppress(Exception):
            await stored_photo
        raise
    try:
        await stored_photo
    except StorageUnavailable:
        # The analysis is stored (and billed): answered 503, the client's retry
        # is answered from it and stores the photo then. (An upload's analysis
        # starts missing its photo; one from a URL or an object key does not.)
        if not row["photo_missing"]:
            await analyzer.mark_photo_missing(principal.tenant_id, row["analysis_id"], missing=True)
        raise
    return _public(await analyzer.photo_stored(principal.tenant_id, row), cached)


@router.post(
    "/analyses",
    openapi_extra=request_body_openapi(VisionAnalysisCreate),
    responses=BODY_ERROR_RESPONSES,
)
async def analyse(
    request: Request,
    principal: VisionPrincipalDep,
    claude: ClaudeDep,
    analyzer: VisionAnalyzerDep,
    media: OptionalMediaDep,
    fetcher: PhotoFetcherDep,
    settings: SettingsDep,
) -> VisionAnalysisPublic:
    """Analyse a photo of the tenant's media bucket (``object_key``) or an HTTPS URL.

    As the upload: a photo analysed before is answered from storage for
    ``property_id`` (``cached: true``) and listed for it.
    """
    # Read here rather than as a body parameter: FastAPI reads and validates
    # those before any dependency, so a token without the scope, or a tenant
    # outside the rollout, had its body parsed and got its 422.
    body = await read_model(
        request, VisionAnalysisCreate, limit=MAX_ANALYSIS_BODY_BYTES, setting="analysis body"
    )
    limit = settings.vision_max_image_bytes
    if body.object_key is not None:
        key = check_key(principal.tenant_id, body.object_key)
        if media is None:
            raise ImageRejected("media_not_configured", "no MEDIA_BUCKET is configured")
        data = await media.get(key, max_bytes=limit)
        ref, source = f"s3://{media.bucket}/{key}", "object"
    else:
        assert body.image_url is not None
        data = await fetcher.fetch(body.image_url)
        ref, source = body.image_url, "url"
    sha256 = await _sha256(data)
    stored = await analyzer.stored(principal.tenant_id, sha256, property_id=body.property_id)
    if stored is not None:
        return _public(stored, True)
    image = await asyncio.to_thread(prepare_image, data, sha256=sha256)
    row, cached = await analyzer.analyse(
        claude=claude,
        tenant_id=principal.tenant_id,
        property_id=body.property_id,
        image=image,
        image_url=ref,
        source=source,
    )
    return _public(row, cached)


@router.get("/analyses")
async def list_analyses(
    property_id: PropertyIdQuery, principal: VisionPrincipalDep, analyzer: VisionAnalyzerDep
) -> VisionAnalysisList:
    """The analyses of the photos posted for the property, most recently posted first (at most 50).

    A photo shared with another property is listed for both, each time under
    the requested ``property_id``.
    """
    rows = await list_for_property(analyzer.db, principal.tenant_id, property_id)
    return VisionAnalysisList(analyses=[_public(row, True) for row in rows])
