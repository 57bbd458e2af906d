"""Every AWS policy with a compliant, a violating and a missing-property case."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.policies.policy_helpers import PROVIDER_URN, aws_provider, entry, findings

RDS = "aws:rds/instance:Instance"
REDIS = "aws:elasticache/replicationGroup:ReplicationGroup"
KMS = "aws:kms/key:Key"
EKS = "aws:eks/cluster:Cluster"
NODES = "aws:eks/nodeGroup:NodeGroup"
TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"

GOOD_RDS: dict[str, Any] = {
    "storageEncrypted": True,
    "publiclyAccessible": False,
    "backupRetentionPeriod": 30,
    "deletionProtection": True,
    "multiAz": True,
    "instanceClass": "db.r6g.large",
}
GOOD_REDIS: dict[str, Any] = {
    "transitEncryptionEnabled": True,
    "atRestEncryptionEnabled": True,
    "authToken": "[secret]",
    "nodeType": "cache.m7g.large",
}
GOOD_NODES: dict[str, Any] = {
    "instanceTypes": ["m6i.xlarge"],
    "launchTemplate": {"id": "lt-0123", "version": "1"},
}
GOOD_TEMPLATE: dict[str, Any] = {
    "blockDeviceMappings": [
        {
            "deviceName": "/dev/xvda",
            "ebs": {"encrypted": "true", "kmsKeyId": "arn:aws:kms:us-east-1:1:key/k"},
        }
    ],
    "metadataOptions": {"httpTokens": "required", "httpPutResponseHopLimit": 1},
}
GOOD_EKS: dict[str, Any] = {
    "vpcConfig": {"endpointPublicAccess": False, "endpointPrivateAccess": True},
    "enabledClusterLogTypes": ["api", "audit", "authenticator", "scheduler"],
}


def without(props: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in props.items() if k != key}


# (policy, type, compliant, violating, missing, property named in the message)
CASES = [
    (
        "sqs-queue-encrypted",
        "aws:sqs/queue:Queue",
        {"sqsManagedSseEnabled": True},
        {"sqsManagedSseEnabled": False},
        {},
        "sqsManagedSseEnabled",
    ),
    (
        "rds-encrypted",
        RDS,
        GOOD_RDS,
        {**GOOD_RDS, "storageEncrypted": False},
        without(GOOD_RDS, "storageEncrypted"),
        "storageEncrypted",
    ),
    (
        "rds-private",
        RDS,
        GOOD_RDS,
        {**GOOD_RDS, "publiclyAccessible": True},
        None,
        "publiclyAccessible",
    ),
    (
        "rds-backup-retention",
        RDS,
        GOOD_RDS,
        {**GOOD_RDS, "backupRetentionPeriod": 7},
        without(GOOD_RDS, "backupRetentionPeriod"),
        "backupRetentionPeriod",
    ),
    (
        "rds-production-safety",
        RDS,
        GOOD_RDS,
        {**GOOD_RDS, "multiAz": False},
        without(GOOD_RDS, "deletionProtection"),
        "production",
    ),
    (
        "elasticache-encrypted",
        REDIS,
        GOOD_REDIS,
        {**GOOD_REDIS, "transitEncryptionEnabled": False},
        without(GOOD_REDIS, "authToken"),
        "Encryption",
    ),
    (
        "kms-key-rotation",
        KMS,
        {"enableKeyRotation": True},
        {"enableKeyRotation": False},
        {},
        "enableKeyRotation",
    ),
    (
        "eks-endpoint-restricted",
        EKS,
        GOOD_EKS,
        {
            **GOOD_EKS,
            "vpcConfig": {"endpointPublicAccess": True, "publicAccessCidrs": ["0.0.0.0/0"]},
        },
        {**GOOD_EKS, "vpcConfig": {}},
        "endpointPublicAccess",
    ),
    (
        "eks-control-plane-logging",
        EKS,
        GOOD_EKS,
        {**GOOD_EKS, "enabledClusterLogTypes": ["api"]},
        without(GOOD_EKS, "enabledClusterLogTypes"),
        "enabledClusterLogTypes",
    ),
    (
        "eks-node-group-launch-template",
        NODES,
        GOOD_NODES,
        {**GOOD_NODES, "launchTemplate": {"version": "1"}},
        without(GOOD_NODES, "launchTemplate"),
        "launchTemplate",
    ),
    (
        "ec2-launch-template-hardened",
        TEMPLATE,
        GOOD_TEMPLATE,
        {
            **GOOD_TEMPLATE,
            "blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"encrypted": "false"}}],
        },
        without(GOOD_TEMPLATE, "blockDeviceMappings"),
        "blockDeviceMappings",
    ),
    (
        "aws-allowed-instance-classes",
        RDS,
        GOOD_RDS,
        {**GOOD_RDS, "instanceClass": "db.x2g.16xlarge"},
        without(GOOD_RDS, "instanceClass"),
        "instanceClass",
    ),
]


@pytest.mark.parametrize(("policy", "rtype", "good", "bad", "missing", "prop"), CASES)
def test_aws_policy_cases(
    policy: str,
    rtype: str,
    good: dict[str, Any],
    bad: dict[str, Any],
    missing: dict[str, Any] | None,
    prop: str,
) -> None:
    assert findings(policy, [entry(rtype, good)]) == []
    found = findings(policy, [entry(rtype, bad)])
    assert len(found) >= 1
    assert all(f.level == "mandatory" for f in found)
    assert prop in found[0].message
    assert "Fix:" in found[0].message
    assert found[0].urn == f"urn:pulumi:t::enterprisehub::{rtype}::r"
    if missing is not None:
        assert findings(policy, [entry(rtype, missing)]), f"{policy} accepted a missing property"


def test_a_node_group_with_a_template_and_a_disk_size_is_refused() -> None:
    # EKS fails the creation; the policy says so at preview.
    (found,) = findings(
        "eks-node-group-launch-template", [entry(NODES, {**GOOD_NODES, "diskSize": 50})]
    )
    assert "`diskSize`" in found.message
    named = {**GOOD_NODES, "launchTemplate": {"name": "nodes", "version": "3"}}
    assert findings("eks-node-group-launch-template", [entry(NODES, named)]) == []


def test_a_launch_template_needs_imdsv2_and_every_volume_encrypted() -> None:
    policy = "ec2-launch-template-hardened"
    optional = {**GOOD_TEMPLATE, "metadataOptions": {"httpTokens": "optional"}}
    (found,) = findings(policy, [entry(TEMPLATE, optional)])
    assert "metadataOptions.httpTokens" in found.message
    (found,) = findings(policy, [entry(TEMPLATE, without(GOOD_TEMPLATE, "metadataOptions"))])
    assert "missing" in found.message
    second = {"deviceName": "/dev/xvdb", "ebs": {"volumeSize": 100}}
    two = {**GOOD_TEMPLATE, "blockDeviceMappings": [*GOOD_TEMPLATE["blockDeviceMappings"], second]}
    assert findings(policy, [entry(TEMPLATE, two)])
    as_bool = copy.deepcopy(GOOD_TEMPLATE)
    as_bool["blockDeviceMappings"][0]["ebs"]["encrypted"] = True
    assert findings(policy, [entry(TEMPLATE, as_bool)]) == []


def test_rds_private_missing_property_is_private() -> None:
    # The provider's default for publiclyAccessible is false: absent is compliant.
    assert findings("rds-private", [entry(RDS, without(GOOD_RDS, "publiclyAccessible"))]) == []


def test_backup_and_safety_thresholds_follow_the_environment() -> None:
    seven = [entry(RDS, {**GOOD_RDS, "backupRetentionPeriod": 7, "deletionProtection": False})]
    assert findings("rds-backup-retention", seven, "dev") == []
    assert findings("rds-backup-retention", seven, "production")
    assert findings("rds-production-safety", seven, "staging") == []
    assert findings("rds-production-safety", seven, "production")
    assert findings("rds-backup-retention", [entry(RDS, {"backupRetentionPeriod": 6})], "dev")


def test_eks_public_endpoint_limited_to_cidrs_is_allowed() -> None:
    limited = {
        **GOOD_EKS,
        "vpcConfig": {"endpointPublicAccess": True, "publicAccessCidrs": ["203.0.113.0/24"]},
    }
    assert findings("eks-endpoint-restricted", [entry(EKS, limited)]) == []


def test_instance_classes_per_environment_and_node_groups() -> None:
    small = [entry(RDS, {"instanceClass": "db.t4g.medium"})]
    assert findings("aws-allowed-instance-classes", small, "dev") == []
    assert findings("aws-allowed-instance-classes", small, "production")
    nodes = entry(NODES, {"instanceTypes": ["m6i.2xlarge", "p4d.24xlarge"]})
    found = findings("aws-allowed-instance-classes", [nodes])
    assert [("p4d.24xlarge" in f.message) for f in found] == [True]
    assert findings(
        "aws-allowed-instance-classes",
        [entry(REDIS, {"nodeType": "cache.t4g.small"})],
        "production",
    )


def test_required_tags_come_from_provider_defaults_or_the_resource() -> None:
    full = {"Project": "enterprisehub", "Environment": "production", "ManagedBy": "pulumi"}
    via_provider = [
        aws_provider(full),
        entry(KMS, {"enableKeyRotation": True, "tags": {}}, provider=PROVIDER_URN),
    ]
    assert findings("aws-required-tags", via_provider) == []
    own = [entry(KMS, {"tags": full})]
    assert findings("aws-required-tags", own) == []
    partial = [
        aws_provider({"Project": "enterprisehub"}),
        entry(KMS, {"tags": {"ManagedBy": "pulumi"}}, provider=PROVIDER_URN),
    ]
    found = findings("aws-required-tags", partial)
    assert len(found) == 1
    assert "Environment" in found[0].message
    assert "ManagedBy" not in found[0].message.split("Fix")[0]
    missing = [entry(KMS, {"enableKeyRotation": True})]
    assert findings("aws-required-tags", missing)
    # The provider itself is not a taggable resource.
    assert findings("aws-required-tags", [aws_provider(None)]) == []


# --- S3: stack policies joining a bucket to its settings -------------------------

BUCKET = "aws:s3/bucket:Bucket"


def bucket_resources(name: str = "media-bucket", **overrides: Any) -> list[dict[str, Any]]:
    settings: dict[str, Any] = {
        "encryption": entry(
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
            {
                "bucket": name,
                "rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms"}}],
            },
            "enc",
        ),
        "versioning": entry(
            "aws:s3/bucketVersioning:BucketVersioning",
            {"bucket": name, "versioningConfiguration": {"status": "Enabled"}},
            "ver",
        ),
        "public": entry(
            "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock",
            {
                "bucket": name,
                "blockPublicAcls": True,
                "blockPublicPolicy": True,
                "ignorePublicAcls": True,
                "restrictPublicBuckets": True,
            },
            "pab",
        ),
        "policy": entry(
            "aws:s3/bucketPolicy:BucketPolicy",
            {
                "bucket": name,
                "policy": json.dumps(
                    {
                        "Statement": [
                            {
                                "Effect": "Deny",
                                "Principal": "*",
                                "Action": "s3:*",
                                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                            }
                        ]
                    }
                ),
            },
            "pol",
        ),
    }
    settings.update(overrides)
    return [
        entry(BUCKET, {"bucket": name}, "bucket"),
        *(v for v in settings.values() if v is not None),
    ]


S3_CASES = [
    ("s3-bucket-encrypted", "encryption", {"rules": [{"applyServerSideEncryptionByDefault": {}}]}),
    ("s3-bucket-versioned", "versioning", {"versioningConfiguration": {"status": "Suspended"}}),
    ("s3-bucket-public-access-blocked", "public", {"blockPublicPolicy": False}),
    ("s3-bucket-tls-only", "policy", {"policy": json.dumps({"Statement": [{"Effect": "Allow"}]})}),
]


@pytest.mark.parametrize(("policy", "setting", "bad_inputs"), S3_CASES)
def test_s3_policy_cases(policy: str, setting: str, bad_inputs: dict[str, Any]) -> None:
    assert findings(policy, bucket_resources()) == []
    good = {r["name"]: r for r in bucket_resources()}
    key = {"encryption": "enc", "versioning": "ver", "public": "pab", "policy": "pol"}[setting]
    bad = dict(good[key])
    bad["inputs"] = {**bad["inputs"], **bad_inputs}
    found = findings(policy, bucket_resources(**{setting: bad}))
    assert len(found) == 1
    assert "Fix:" in found[0].message
    # Missing: the setting resource is not declared at all.
    missing = findings(policy, bucket_resources(**{setting: None}))
    assert len(missing) == 1
    assert missing[0].urn.endswith("::bucket")


def test_s3_settings_of_another_bucket_do_not_count() -> None:
    resources = bucket_resources("models-bucket")
    resources[0] = entry(BUCKET, {"bucket": "media-bucket"}, "bucket")
    for policy, _, _ in S3_CASES:
        assert findings(policy, resources), policy
