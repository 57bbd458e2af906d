"""The ECR repository of the services' image."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from infra.components.registry import KEEP_IMAGES, ROLLBACK_WINDOW
from infra.synth.mocks import ProgramRun


@pytest.fixture(scope="module")
def repository(stack_run: Callable[[str], ProgramRun]) -> dict[str, Any]:
    return stack_run("production").one("aws:ecr/repository:Repository").inputs


def test_tags_are_immutable(repository: dict[str, Any]) -> None:
    assert repository["imageTagMutability"] == "IMMUTABLE"


def test_every_push_is_scanned(repository: dict[str, Any]) -> None:
    assert repository["imageScanningConfiguration"] == {"scanOnPush": True}


def test_images_are_encrypted_with_a_customer_key(repository: dict[str, Any]) -> None:
    (encryption,) = repository["encryptionConfigurations"]
    assert encryption["encryptionType"] == "KMS"
    assert encryption["kmsKey"].startswith("arn:aws:kms:")


def test_lifecycle_policy_expires_untagged_images(stack_run: Callable[[str], ProgramRun]) -> None:
    policy = stack_run("production").one("aws:ecr/lifecyclePolicy:LifecyclePolicy").inputs
    rules = json.loads(policy["policy"])["rules"]
    assert rules[0]["selection"]["tagStatus"] == "untagged"
    assert [rule["rulePriority"] for rule in rules] == sorted(r["rulePriority"] for r in rules)


def test_lifecycle_policy_keeps_the_images_the_rollback_may_deploy(
    stack_run: Callable[[str], ProgramRun],
) -> None:
    # A rollback reaches back ROLLBACK_WINDOW deployed commits (infra.deploy):
    # tagged images go only by count, newest kept, at least one per release of
    # that window; never by age, which would also expire the running image of
    # a stack not deployed for that long.
    policy = stack_run("production").one("aws:ecr/lifecyclePolicy:LifecyclePolicy").inputs
    rules = json.loads(policy["policy"])["rules"]
    tagged = [r for r in rules if r["selection"]["tagStatus"] != "untagged"]
    assert [r["selection"]["countType"] for r in tagged] == ["imageCountMoreThan"]
    assert tagged[0]["selection"]["tagStatus"] == "any"
    assert tagged[0]["selection"]["countNumber"] == KEEP_IMAGES
    assert KEEP_IMAGES >= 4 * ROLLBACK_WINDOW
    assert f"rollback window: {ROLLBACK_WINDOW} releases" in tagged[0]["description"]


def test_repository_url_is_exported(stack_run: Callable[[str], ProgramRun]) -> None:
    outputs = stack_run("production").plain_stack_outputs()
    assert outputs["imageRepository"].endswith(".amazonaws.com/enterprisehub-production")
