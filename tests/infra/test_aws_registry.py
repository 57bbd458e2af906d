"""The ECR repository of the services' image."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

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


def test_repository_url_is_exported(stack_run: Callable[[str], ProgramRun]) -> None:
    outputs = stack_run("production").plain_stack_outputs()
    assert outputs["imageRepository"].endswith(".amazonaws.com/enterprisehub-production")
