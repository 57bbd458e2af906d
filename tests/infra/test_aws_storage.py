"""S3 buckets for models and media as declared for the production stack."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from infra.synth.mocks import ProgramRun


@pytest.fixture(scope="module")
def production(stack_run: Callable[[str], ProgramRun]) -> ProgramRun:
    return stack_run("production")


def _by_bucket(run: ProgramRun, type_token: str) -> dict[str, dict]:
    return {r.inputs["bucket"]: r.inputs for r in run.of_type(f"aws:s3/{type_token}")}


def test_a_models_and_a_media_bucket_exist(production: ProgramRun) -> None:
    names = sorted(r.inputs["bucket"] for r in production.of_type("aws:s3/bucket:Bucket"))
    assert [name.split("-")[2] for name in names] == ["media", "models"]


def test_buckets_are_not_force_destroyed(production: ProgramRun) -> None:
    assert all(
        r.inputs["forceDestroy"] is False for r in production.of_type("aws:s3/bucket:Bucket")
    )


def test_every_bucket_is_versioned(production: ProgramRun) -> None:
    versioning = _by_bucket(production, "bucketVersioning:BucketVersioning")
    assert len(versioning) == 2
    assert {v["versioningConfiguration"]["status"] for v in versioning.values()} == {"Enabled"}


def test_every_bucket_is_encrypted_with_kms(production: ProgramRun) -> None:
    encryption = _by_bucket(
        production,
        "bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
    )
    assert len(encryption) == 2
    for config in encryption.values():
        default = config["rules"][0]["applyServerSideEncryptionByDefault"]
        assert default["sseAlgorithm"] == "aws:kms"
        assert default["kmsMasterKeyId"].startswith("arn:aws:kms:")


def test_public_access_is_blocked_on_every_switch(production: ProgramRun) -> None:
    blocks = _by_bucket(production, "bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert len(blocks) == 2
    switches = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")
    for block in blocks.values():
        assert all(block[switch] is True for switch in switches)


def test_policy_denies_requests_without_tls(production: ProgramRun) -> None:
    policies = _by_bucket(production, "bucketPolicy:BucketPolicy")
    assert len(policies) == 2
    for bucket, inputs in policies.items():
        (statement,) = json.loads(inputs["policy"])["Statement"]
        assert statement["Effect"] == "Deny"
        assert statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        assert f"arn:aws:s3:::{bucket}/*" in statement["Resource"]


def test_lifecycle_expires_old_versions_and_aborts_uploads(production: ProgramRun) -> None:
    for inputs in _by_bucket(
        production, "bucketLifecycleConfiguration:BucketLifecycleConfiguration"
    ).values():
        ids = {rule["id"] for rule in inputs["rules"]}
        assert {"expire-noncurrent-versions", "abort-incomplete-multipart-uploads"} <= ids


def test_media_moves_to_cheaper_tiers(production: ProgramRun) -> None:
    lifecycle = _by_bucket(production, "bucketLifecycleConfiguration:BucketLifecycleConfiguration")
    media = next(v for k, v in lifecycle.items() if "-media-" in k)
    tiering = next(rule for rule in media["rules"] if rule["id"] == "media-tiering")
    assert [t["storageClass"] for t in tiering["transitions"]] == ["STANDARD_IA", "GLACIER_IR"]
