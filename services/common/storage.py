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

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, Literal

from services.common.settings import StorageSettings

Bucket = Literal["models", "media"]


class BucketNotConfigured(RuntimeError):  # noqa: N818 - reads as the condition it names
    """A bucket's variable is unset; the message names it."""


class StorageUnavailable(RuntimeError):  # noqa: N818 - reads as the condition it names
    """S3 (or MinIO) did not serve a request; ``reason`` is safe to show to a client."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


#: botocore waits 60 s for a connection by default, on a request path: an
#: unreachable endpoint is known long before that.
CONNECT_TIMEOUT_SECONDS: Final = 5.0
#: And 60 s for each reply: storage that accepts connections but hangs held an
#: upload for three minutes (three attempts) and one of the default executor's
#: few threads with it. A reply to a photo's PUT or GET comes in well under this.
READ_TIMEOUT_SECONDS: Final = 10.0
#: botocore's "standard" retry mode (throttling and transient errors, with
#: jitter) rather than its legacy one; three attempts in all.
MAX_ATTEMPTS: Final = 3


def s3_client(settings: StorageSettings) -> Any:
    """A boto3 S3 client for S3_ENDPOINT_URL (unset: AWS) in AWS_REGION."""
    import boto3  # imported lazily: file-only deployments and tools never pay for it
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=settings.s3_endpoint_url,
        region_name=settings.aws_region,
        config=Config(
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            read_timeout=READ_TIMEOUT_SECONDS,
            retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS},
        ),
    )


@contextmanager
def storage_errors() -> Iterator[None]:
    """Turn botocore's failures inside the block into `StorageUnavailable` (a 503).

    The reason names the error's code or type only: botocore's messages carry
    the endpoint and the bucket.
    """
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "error")
        raise StorageUnavailable(f"object storage refused the request ({code})") from exc
    except BotoCoreError as exc:
        raise StorageUnavailable(f"object storage unavailable ({type(exc).__name__})") from exc


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
