"""AWS's APIs from moto's server on a loopback port: S3 for `make run`, S3 and ECR for tests.

moto answers the REST protocols boto3 speaks, in memory, so the code under it
runs its real request path. `make run` has no S3 on this machine (MinIO needs a
container): its photo uploads go to a bucket here, gone when the run stops.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import boto3
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
#: moto accepts any credentials; these only have to be present for boto3.
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "standin", "AWS_SECRET_ACCESS_KEY": "standin"}


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto's server on a free loopback port (its URL), stopped on exit."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def create_bucket(url: str, name: str) -> None:
    """Create the bucket ``name`` on the server at ``url``."""
    client = boto3.client(
        "s3",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    try:
        client.create_bucket(Bucket=name)
    finally:
        client.close()


def s3_env(url: str, *, media_bucket: str) -> dict[str, str]:
    """The variables that point a service's object storage (StorageSettings) here."""
    return {
        "S3_ENDPOINT_URL": url,
        "AWS_REGION": REGION,
        "MEDIA_BUCKET": media_bucket,
        **CREDENTIALS,
    }
