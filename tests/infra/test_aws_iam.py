"""Service-account roles (IRSA): trust scoped to one ServiceAccount, least privilege."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from infra import catalog
from infra.components.iam import PrefixWriterGrant, ServiceRoles, ServiceRolesArgs
from infra.components.jobs import MODEL_PUBLISHER_SERVICE_ACCOUNT
from infra.synth.mocks import ProgramRun

PREFIX = "enterprisehub-production-roles-"


@pytest.fixture(scope="module")
def production(stack_run: Callable[[str], ProgramRun]) -> ProgramRun:
    return stack_run("production")


def _trust(run: ProgramRun, service: str) -> dict[str, Any]:
    role = run.one("aws:iam/role:Role", f"{PREFIX}{service}")
    statement: dict[str, Any] = json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]
    return statement


def _policy(run: ProgramRun, service: str) -> dict[str, Any] | None:
    found = [
        r
        for r in run.of_type("aws:iam/rolePolicy:RolePolicy")
        if r.name == f"{PREFIX}{service}-storage"
    ]
    return json.loads(found[0].inputs["policy"]) if found else None


@pytest.mark.parametrize("service", list(catalog.SHIPPED_SERVICES))
def test_each_service_has_its_own_role(production: ProgramRun, service: str) -> None:
    assert production.one("aws:iam/role:Role", f"{PREFIX}{service}")


@pytest.mark.parametrize("service", list(catalog.SHIPPED_SERVICES))
def test_trust_is_limited_to_the_service_account(production: ProgramRun, service: str) -> None:
    statement = _trust(production, service)
    conditions = statement["Condition"]["StringEquals"]
    subjects = [v for k, v in conditions.items() if k.endswith(":sub")]
    audiences = [v for k, v in conditions.items() if k.endswith(":aud")]
    assert subjects == [f"system:serviceaccount:enterprisehub:{service}"]
    assert audiences == ["sts.amazonaws.com"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"


def test_trust_names_the_cluster_oidc_provider(production: ProgramRun) -> None:
    provider_arn = production.one("aws:iam/openIdConnectProvider:OpenIdConnectProvider").outputs[
        "arn"
    ]
    assert _trust(production, "ml-services")["Principal"] == {"Federated": provider_arn}


def test_ml_services_reads_models_and_writes_media_only(production: ProgramRun) -> None:
    policy = _policy(production, "ml-services")
    assert policy is not None
    objects = {s["Sid"]: s for s in policy["Statement"]}
    assert "s3:PutObject" not in objects["ModelsObjects"]["Action"]
    assert "s3:PutObject" in objects["MediaObjects"]["Action"]
    assert objects["ModelsObjects"]["Resource"].endswith("-models-123456789012/*")


def test_kms_use_is_scoped_to_the_storage_key_through_s3(production: ProgramRun) -> None:
    policy = _policy(production, "ml-services")
    assert policy is not None
    kms = next(s for s in policy["Statement"] if s["Sid"] == "StorageKeyThroughS3")
    assert kms["Resource"].startswith("arn:aws:kms:")
    assert kms["Condition"]["StringEquals"]["kms:ViaService"] == "s3.us-east-1.amazonaws.com"


@pytest.mark.parametrize("service", ["coaching-engine"])
def test_services_without_buckets_get_no_permissions(production: ProgramRun, service: str) -> None:
    assert _policy(production, service) is None


def test_churn_orchestrator_only_reads_the_models_bucket(production: ProgramRun) -> None:
    # It loads the churn model (CHURN_MODEL_URI); it writes nothing to S3.
    policy = _policy(production, "churn-orchestrator")
    assert policy is not None
    objects = {s["Sid"]: s for s in policy["Statement"]}
    assert set(objects) == {"ModelsObjects", "ModelsList", "StorageKeyThroughS3"}
    assert objects["ModelsObjects"]["Action"] == ["s3:GetObject", "s3:GetObjectVersion"]
    assert objects["ModelsObjects"]["Resource"].endswith("-models-123456789012/*")
    assert objects["StorageKeyThroughS3"]["Action"] == ["kms:Decrypt"]


def test_no_policy_grants_wildcard_actions(production: ProgramRun) -> None:
    for resource in production.of_type("aws:iam/rolePolicy:RolePolicy"):
        for statement in json.loads(resource.inputs["policy"])["Statement"]:
            actions = (
                statement["Action"]
                if isinstance(statement["Action"], list)
                else [statement["Action"]]
            )
            assert not any(action.endswith("*") for action in actions), resource.name


def test_service_accounts_carry_their_role(production: ProgramRun) -> None:
    annotations = {
        r.inputs["metadata"]["name"]: r.inputs["metadata"].get("annotations", {})
        for r in production.kubernetes_objects("ServiceAccount")
    }
    for service in catalog.SHIPPED_SERVICES:
        role_arn = production.one("aws:iam/role:Role", f"{PREFIX}{service}").outputs["arn"]
        assert annotations[service]["eks.amazonaws.com/role-arn"] == role_arn


# ---------------------------------------------------------- the model publisher


def _statements(run: ProgramRun, account: str) -> dict[str, dict[str, Any]]:
    policy = _policy(run, account)
    assert policy is not None
    return {s["Sid"]: s for s in policy["Statement"]}


def test_model_publisher_role_is_trusted_by_its_service_account_only(
    production: ProgramRun,
) -> None:
    conditions = _trust(production, MODEL_PUBLISHER_SERVICE_ACCOUNT)["Condition"]["StringEquals"]
    subjects = [v for k, v in conditions.items() if k.endswith(":sub")]
    assert subjects == [f"system:serviceaccount:enterprisehub:{MODEL_PUBLISHER_SERVICE_ACCOUNT}"]


def test_model_publisher_writes_only_under_the_model_prefixes(production: ProgramRun) -> None:
    statements = _statements(production, MODEL_PUBLISHER_SERVICE_ACCOUNT)
    objects = statements["PrefixObjects"]
    assert objects["Action"] == ["s3:GetObject", "s3:PutObject"]
    # The lead-scoring and the churn-risk prefixes, each ending in "/" (no sibling keys).
    assert [resource.split("/", 1)[1] for resource in objects["Resource"]] == [
        f"{catalog.ML_MODEL_PREFIX}*",
        f"{catalog.CHURN_MODEL_PREFIX}*",
    ]
    for resource in objects["Resource"]:
        assert resource.split("/", 1)[0].endswith("-models-123456789012")
    # Listing is what makes S3 answer 404 (not 403) for a version not yet published.
    assert statements["BucketList"]["Action"] == "s3:ListBucket"
    assert statements["BucketList"]["Resource"].endswith("-models-123456789012")
    granted = [
        action
        for statement in statements.values()
        for action in (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
    ]
    assert "s3:DeleteObject" not in granted
    assert not any("-media-" in str(statement["Resource"]) for statement in statements.values())


def test_model_publisher_account_carries_its_role(production: ProgramRun) -> None:
    role_arn = production.one("aws:iam/role:Role", f"{PREFIX}{MODEL_PUBLISHER_SERVICE_ACCOUNT}")
    accounts = {
        r.inputs["metadata"]["name"]: r.inputs["metadata"].get("annotations", {})
        for r in production.kubernetes_objects("ServiceAccount")
    }
    assert accounts[MODEL_PUBLISHER_SERVICE_ACCOUNT] == {
        "eks.amazonaws.com/role-arn": role_arn.outputs["arn"]
    }


@pytest.mark.parametrize("prefix", ["", "/", "lead-scoring", "/lead-scoring/", "lead-*/"])
def test_a_publisher_prefix_that_could_reach_the_whole_bucket_is_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="must be a non-empty key prefix"):
        ServiceRoles("roles", _publisher_args(("churn-risk/", prefix)))


def test_a_publisher_grant_without_prefixes_is_refused() -> None:
    with pytest.raises(ValueError, match="names no prefix"):
        ServiceRoles("roles", _publisher_args(()))


def _publisher_args(prefixes: tuple[str, ...]) -> ServiceRolesArgs:
    return ServiceRolesArgs(
        oidc_provider_arn="arn:aws:iam::123456789012:oidc-provider/x",
        oidc_issuer_url="https://oidc.example",
        namespace="enterprisehub",
        services=list(catalog.SERVICES.values()),
        bucket_arns={bucket: f"arn:aws:s3:::b-{bucket.value}" for bucket in catalog.Bucket},
        storage_key_arn="arn:aws:kms:us-east-1:123456789012:key/k",
        region="us-east-1",
        model_publisher=PrefixWriterGrant(service_account="model-publisher", prefixes=prefixes),
    )
