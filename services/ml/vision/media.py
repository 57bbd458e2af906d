"""A tenant's photos in the media bucket, under ``tenants/{tenant_id}/photos/``.

Object keys given by clients must lie under their own tenant's prefix (full
match, no ``..``), so no tenant can have another's photo analysed. boto3 is
synchronous: calls run in a worker thread.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from services.common.storage import Storage, storage_errors
from services.common.tenancy import TENANT_ID_PATTERN
from services.ml.vision.images import ImageRejected

# The tenant segment is a tenant id (services.common.tenancy: dots allowed).
_KEY = re.compile(
    rf"tenants/(?P<tenant>{TENANT_ID_PATTERN.pattern})/photos/[A-Za-z0-9._/-]{{1,400}}"
)


def photo_key(tenant_id: str, sha256: str, suffix: str = "img") -> str:
    """Where an uploaded photo is stored: content-addressed under the tenant's prefix."""
    return f"tenants/{tenant_id}/photos/{sha256}.{suffix}"


def check_key(tenant_id: str, key: str) -> str:
    """``key`` when it is a photo key of ``tenant_id``; ``ImageRejected`` otherwise."""
    match = _KEY.fullmatch(key)
    if match is None or ".." in key.split("/") or "//" in key:
        raise ImageRejected("invalid_object_key", "expected tenants/<tenant>/photos/<name>")
    if match["tenant"] != tenant_id:
        raise ImageRejected("object_key_forbidden", "the object key is not in your tenant's media")
    return key


class MediaStore:
    """The media bucket (S3, or MinIO through S3_ENDPOINT_URL)."""

    def __init__(self, bucket: str, client: Any) -> None:
        self.bucket = bucket
        self._client = client

    @classmethod
    def from_storage(cls, storage: Storage) -> MediaStore | None:
        """The media bucket of the shared storage client; None when MEDIA_BUCKET is unset."""
        if storage.media_bucket is None:
            return None
        return cls(storage.media_bucket, storage.client)

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` at ``key``. Raises ``StorageUnavailable``."""
        with storage_errors():
            await asyncio.to_thread(
                self._client.put_object,
                Bucket=self.bucket,
                Key=key,
                Body=data,
                ContentType=content_type,
            )

    async def get(self, key: str, *, max_bytes: int) -> bytes:
        """The object's bytes; ``ImageRejected`` when missing or larger than ``max_bytes``,
        ``StorageUnavailable`` when the bucket cannot be read."""

        def read() -> bytes:
            try:
                response = self._client.get_object(Bucket=self.bucket, Key=key)
            except self._client.exceptions.NoSuchKey:
                raise ImageRejected("object_not_found", "no photo at that object key") from None
            if int(response.get("ContentLength") or 0) > max_bytes:
                raise ImageRejected("image_too_big", f"the photo exceeds {max_bytes} bytes")
            body: bytes = response["Body"].read(max_bytes + 1)
            if len(body) > max_bytes:
                raise ImageRejected("image_too_big", f"the photo exceeds {max_bytes} bytes")
            return body

        with storage_errors():
            return await asyncio.to_thread(read)

    async def list_photos(self, tenant_id: str) -> list[str]:
        """Every key under the tenant's photo prefix. Raises ``StorageUnavailable``."""

        def keys() -> list[str]:
            paginator = self._client.get_paginator("list_objects_v2")
            found: list[str] = []
            for page in paginator.paginate(
                Bucket=self.bucket, Prefix=f"tenants/{tenant_id}/photos/"
            ):
                found.extend(item["Key"] for item in page.get("Contents", []))
            return found

        with storage_errors():
            return await asyncio.to_thread(keys)
