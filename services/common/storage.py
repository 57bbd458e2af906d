"""Object storage: the one place that builds S3 (or MinIO) clients.

``create_storage(settings)`` returns a `Storage`: a boto3 S3 client pointed at
S3_ENDPOINT_URL (in-cluster MinIO) or at AWS (unset), in AWS_REGION, and the
platform's bucket names (MODELS_BUCKET, MEDIA_BUCKET). Credentials come from
boto3's usual chain (IRSA in EKS, the access-key variables locally), so none
is held in settings. Building a client opens no connection.

boto3 is synchronous: call it from a worker thread (``asyncio.to_thread``) in
request paths. A service that declares ``Need.STORAGE`` gets one `Storage` on
``app.state.storage`` (``StorageDep`` in ``services.common.deps``), closed with
the app.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from services.common.settings import StorageSettings

Bucket = Literal["models", "media"]


class BucketNotConfigured(RuntimeError):  # noqa: N818 - reads as the condition it names
    """A bucket's variable is unset; the message names it."""


def s3_client(settings: StorageSettings) -> Any:
    """A boto3 S3 client for S3_ENDPOINT_URL (unset: AWS) in AWS_REGION."""
    import boto3  # imported lazily: file-only deployments and tools never pay for it

    return boto3.client(
        "s3", endpoint_url=settings.s3_endpoint_url, region_name=settings.aws_region
    )


@dataclass(frozen=True, slots=True)
class Storage:
    """An S3 client and the platform's bucket names."""

    client: Any
    models_bucket: str | None
    media_bucket: str | None

    def bucket(self, which: Bucket) -> str:
        """The name of the ``models`` or ``media`` bucket; raises when it is not configured."""
        name = self.models_bucket if which == "models" else self.media_bucket
        if name is None:
            variable = f"{which.upper()}_BUCKET"
            raise BucketNotConfigured(f"{variable} is not set; the stack writes it (see docs)")
        return name

    def close(self) -> None:
        """Close the client's connection pool."""
        self.client.close()


def create_storage(settings: StorageSettings) -> Storage:
    """The `Storage` described by ``settings``."""
    return Storage(
        client=s3_client(settings),
        models_bucket=settings.models_bucket,
        media_bucket=settings.media_bucket,
    )
