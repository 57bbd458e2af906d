"""Fixtures shared by the services' tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest

from localrun.standins.aws import moto_server


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3-compatible server on a loopback port: boto3 runs its real request path."""
    with moto_server() as url:
        yield url


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], Any]]:
    """``s3_bucket(name)``: a boto3 client for a fresh bucket on moto's server.

    The environment points the code under test at the server (S3_ENDPOINT_URL and
    test credentials); the buckets are emptied and removed after the test.
    """
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("S3_ENDPOINT_URL", s3_endpoint)
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    created: list[str] = []

    def create(name: str) -> Any:
        client.create_bucket(Bucket=name)
        created.append(name)
        return client

    yield create
    for name in created:
        for item in client.list_objects_v2(Bucket=name).get("Contents", []):
            client.delete_object(Bucket=name, Key=item["Key"])
        client.delete_bucket(Bucket=name)
