"""An ECR registry for the rollback tests: moto's server on a loopback port.

The code under test finds it the way it would find any endpoint,
``AWS_ENDPOINT_URL_ECR`` in boto3's configuration chain, so boto3 runs its
real request path (signing, retries, error parsing) against ECR's API.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from localrun.standins.aws import moto_server

ACCOUNT = "123456789012"  # moto's account
REGION = "us-east-1"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


@pytest.fixture(scope="module")
def ecr_endpoint() -> Iterator[str]:
    """moto's server, stopped when the module's tests are done (no thread outlives them)."""
    with moto_server() as url:
        yield url


class Registry:
    """Pushes and expires images in moto's ECR as CI and the lifecycle policy do."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.repositories: set[str] = set()

    def push(self, repository: str, tag: str) -> str:
        """Push a one-layer image tagged `tag`; its ``REPOSITORY@sha256:DIGEST``."""
        if repository not in self.repositories:
            self.client.create_repository(repositoryName=repository)
            self.repositories.add(repository)
        blob = hashlib.sha256(f"{repository}:{tag}".encode()).hexdigest()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": f"sha256:{blob}",
                    "size": 1024,
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": f"sha256:{blob[::-1]}",
                        "size": 2048,
                    }
                ],
            },
            separators=(",", ":"),
        )
        # The digest is the manifest's own sha256, as ECR computes and checks it.
        digest = "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
        self.client.put_image(
            repositoryName=repository,
            imageManifest=manifest,
            imageManifestMediaType=OCI_MANIFEST,
            imageTag=tag,
            imageDigest=digest,
        )
        return f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/{repository}@{digest}"

    def expire(self, image: str) -> None:
        """Delete the image by digest, as the lifecycle policy's expiry does."""
        repository = image.split("/", 1)[1].split("@")[0]
        digest = image.split("@")[1]
        result = self.client.batch_delete_image(
            repositoryName=repository, imageIds=[{"imageDigest": digest}]
        )
        assert not result.get("failures"), result


@pytest.fixture
def ecr(ecr_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    """The registry, with the environment pointing boto3 (and subprocesses) at it."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL_ECR", ecr_endpoint)
    registry = Registry(boto3.client("ecr", endpoint_url=ecr_endpoint, region_name=REGION))
    yield registry
    for name in registry.repositories:
        registry.client.delete_repository(repositoryName=name, force=True)
