"""AWS policies: storage, databases, caches, keys, the cluster, tags, sizes.

S3 settings live in separate resources since pulumi-aws 7 (a bucket plus its
encryption, versioning, public access block and policy), so the S3 policies
are stack policies that join those resources to their bucket by name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pulumi_policy import (
    PolicyResource,
    ResourceValidationArgs,
    StackValidationArgs,
)

from policies.common import (
    Report,
    get,
    provider_default_tags,
    resource_policy,
    rules,
    say,
    stack_policy,
)

BUCKET = "aws:s3/bucket:Bucket"
BUCKET_ENCRYPTION = (
    "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
)
BUCKET_VERSIONING = "aws:s3/bucketVersioning:BucketVersioning"
BUCKET_PUBLIC_ACCESS = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
RDS = "aws:rds/instance:Instance"
REDIS = "aws:elasticache/replicationGroup:ReplicationGroup"
KMS_KEY = "aws:kms/key:Key"
EKS = "aws:eks/cluster:Cluster"
SQS_QUEUE = "aws:sqs/queue:Queue"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"

REQUIRED_TAGS = ("Project", "Environment", "ManagedBy")
#: AWS types of the program that accept `tags` (the provider's schema).
TAGGABLE = frozenset(
    {
        "aws:cloudwatch/logGroup:LogGroup",
        "aws:ec2/eip:Eip",
        "aws:ec2/internetGateway:InternetGateway",
        LAUNCH_TEMPLATE,
        "aws:ec2/natGateway:NatGateway",
        "aws:ec2/routeTable:RouteTable",
        "aws:ec2/securityGroup:SecurityGroup",
        "aws:ec2/subnet:Subnet",
        "aws:ec2/vpc:Vpc",
        "aws:ec2/vpcEndpoint:VpcEndpoint",
        "aws:cloudwatch/eventRule:EventRule",
        SQS_QUEUE,
        "aws:ecr/repository:Repository",
        "aws:eks/addon:Addon",
        EKS,
        NODE_GROUP,
        "aws:elasticache/parameterGroup:ParameterGroup",
        REDIS,
        "aws:elasticache/subnetGroup:SubnetGroup",
        "aws:iam/openIdConnectProvider:OpenIdConnectProvider",
        "aws:iam/role:Role",
        KMS_KEY,
        RDS,
        "aws:rds/parameterGroup:ParameterGroup",
        "aws:rds/subnetGroup:SubnetGroup",
        BUCKET,
        "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule",
    }
)
REQUIRED_LOG_TYPES = ("api", "audit", "authenticator")


def _buckets(args: StackValidationArgs) -> dict[str, PolicyResource]:
    return {
        str(get(r.props, "bucket")): r
        for r in args.resources
        if r.resource_type == BUCKET and get(r.props, "bucket") is not None
    }


def _settings(args: StackValidationArgs, resource_type: str) -> dict[str, list[PolicyResource]]:
    by_bucket: dict[str, list[PolicyResource]] = {}
    for r in args.resources:
        if r.resource_type == resource_type:
            by_bucket.setdefault(str(get(r.props, "bucket")), []).append(r)
    return by_bucket


def _s3_encrypted(args: StackValidationArgs, report: Report) -> None:
    configs = _settings(args, BUCKET_ENCRYPTION)
    for name, bucket in sorted(_buckets(args).items()):
        algorithms = [
            get(rule, "applyServerSideEncryptionByDefault.sseAlgorithm")
            for c in configs.get(name, [])
            for rule in (get(c.props, "rules") or [])
        ]
        if not any(a in ("aws:kms", "aws:kms:dsse", "AES256") for a in algorithms):
            report(
                say(
                    bucket.urn,
                    "serverSideEncryptionConfiguration",
                    f"is missing: bucket {name} has no default encryption",
                    "declare an aws.s3.BucketServerSideEncryptionConfiguration with sseAlgorithm "
                    "aws:kms (the storage component does) for the bucket",
                ),
                bucket.urn,
            )


def _s3_versioned(args: StackValidationArgs, report: Report) -> None:
    versionings = _settings(args, BUCKET_VERSIONING)
    for name, bucket in sorted(_buckets(args).items()):
        statuses = [
            get(v.props, "versioningConfiguration.status") for v in versionings.get(name, [])
        ]
        if "Enabled" not in statuses:
            report(
                say(
                    bucket.urn,
                    "versioningConfiguration.status",
                    f"is {statuses[0] if statuses else 'missing'} for bucket {name}",
                    "declare an aws.s3.BucketVersioning with status Enabled",
                ),
                bucket.urn,
            )


_BLOCK_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")


def _s3_public_access_blocked(args: StackValidationArgs, report: Report) -> None:
    blocks = _settings(args, BUCKET_PUBLIC_ACCESS)
    for name, bucket in sorted(_buckets(args).items()):
        found = blocks.get(name, [])
        if not found:
            report(
                say(
                    bucket.urn,
                    "publicAccessBlock",
                    f"is missing for bucket {name}",
                    "declare an aws.s3.BucketPublicAccessBlock with all four flags true",
                ),
                bucket.urn,
            )
            continue
        for block in found:
            off = [f for f in _BLOCK_FLAGS if get(block.props, f) is not True]
            if off:
                report(
                    say(
                        block.urn,
                        ", ".join(off),
                        f"not true for bucket {name}",
                        "set blockPublicAcls, blockPublicPolicy, ignorePublicAcls and "
                        "restrictPublicBuckets to true",
                    ),
                    block.urn,
                )


def _denies_insecure_transport(document: Any) -> bool:
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except json.JSONDecodeError:
            return False
    statements = get(document, "Statement", [])
    if isinstance(statements, Mapping):
        statements = [statements]
    for statement in statements or []:
        condition = get(statement, "Condition.Bool", {}) or {}
        if (
            get(statement, "Effect") == "Deny"
            and str(condition.get("aws:SecureTransport", "")).lower() == "false"
        ):
            return True
    return False


def _s3_tls_only(args: StackValidationArgs, report: Report) -> None:
    policies = _settings(args, BUCKET_POLICY)
    for name, bucket in sorted(_buckets(args).items()):
        if not any(
            _denies_insecure_transport(get(p.props, "policy")) for p in policies.get(name, [])
        ):
            report(
                say(
                    bucket.urn,
                    "policy",
                    f"of bucket {name} does not deny requests without TLS",
                    'attach an aws.s3.BucketPolicy with a Deny statement on "aws:SecureTransport": '
                    '"false"',
                ),
                bucket.urn,
            )


def _rds_encrypted(args: ResourceValidationArgs, report: Report) -> None:
    if get(args.props, "storageEncrypted") is not True:
        report(
            say(
                args.urn,
                "storageEncrypted",
                "is not true",
                "set storage_encrypted=True with a KMS key",
            )
        )


def _rds_private(args: ResourceValidationArgs, report: Report) -> None:
    if get(args.props, "publiclyAccessible") is True:
        report(
            say(
                args.urn,
                "publiclyAccessible",
                "is true",
                "set publicly_accessible=False; reach the database from the VPC",
            )
        )


def _rds_backups(args: ResourceValidationArgs, report: Report) -> None:
    minimum = rules(args).min_backup_days
    days = get(args.props, "backupRetentionPeriod")
    if not isinstance(days, int | float) or days < minimum:
        report(
            say(
                args.urn,
                "backupRetentionPeriod",
                f"is {days if days is not None else 'missing'} (at least {minimum} days here)",
                f"set backup_retention_period >= {minimum} (database.backupRetentionDays)",
            )
        )


def _rds_production_safety(args: ResourceValidationArgs, report: Report) -> None:
    env = rules(args)
    if env.require_deletion_protection and get(args.props, "deletionProtection") is not True:
        report(
            say(
                args.urn,
                "deletionProtection",
                "is not true in production",
                "set deletion_protection=True (database.deletionProtection)",
            )
        )
    if env.require_multi_az and get(args.props, "multiAz") is not True:
        report(
            say(
                args.urn,
                "multiAz",
                "is not true in production",
                "set multi_az=True (database.multiAz)",
            )
        )


def _cache_encrypted(args: ResourceValidationArgs, report: Report) -> None:
    for prop, fix in (
        ("transitEncryptionEnabled", "set transit_encryption_enabled=True"),
        ("atRestEncryptionEnabled", "set at_rest_encryption_enabled=True with a KMS key"),
    ):
        if get(args.props, prop) is not True:
            report(say(args.urn, prop, "is not true", fix))
    if not get(args.props, "authToken"):
        report(
            say(
                args.urn,
                "authToken",
                "is missing",
                "pass a generated auth token (random.RandomPassword, kept secret)",
            )
        )


def _sqs_encrypted(args: ResourceValidationArgs, report: Report) -> None:
    managed = get(args.props, "sqsManagedSseEnabled") is True
    if not managed and not get(args.props, "kmsMasterKeyId"):
        report(
            say(
                args.urn,
                "sqsManagedSseEnabled",
                "is not true and no kmsMasterKeyId is set",
                "set sqs_managed_sse_enabled=True (or a KMS key)",
            )
        )


def _kms_rotation(args: ResourceValidationArgs, report: Report) -> None:
    if get(args.props, "enableKeyRotation") is not True:
        report(say(args.urn, "enableKeyRotation", "is not true", "set enable_key_rotation=True"))


def _eks_endpoint(args: ResourceValidationArgs, report: Report) -> None:
    public = get(args.props, "vpcConfig.endpointPublicAccess")
    if public is False:
        return
    cidrs = get(args.props, "vpcConfig.publicAccessCidrs") or []
    # The provider's default for a missing endpointPublicAccess is true, open to 0.0.0.0/0.
    if not cidrs or any(c in ("0.0.0.0/0", "::/0") for c in cidrs):
        report(
            say(
                args.urn,
                "vpcConfig.endpointPublicAccess",
                "leaves the API endpoint open to the internet"
                + ("" if public is not None else " (unset means public)"),
                "set endpoint_public_access=False, or list the allowed networks in "
                "public_access_cidrs",
            )
        )


def _eks_logging(args: ResourceValidationArgs, report: Report) -> None:
    enabled = set(get(args.props, "enabledClusterLogTypes") or [])
    missing = [t for t in REQUIRED_LOG_TYPES if t not in enabled]
    if missing:
        report(
            say(
                args.urn,
                "enabledClusterLogTypes",
                f"lacks {', '.join(missing)}",
                "enable at least api, audit and authenticator control-plane logs",
            )
        )


def _node_group_launch_template(args: ResourceValidationArgs, report: Report) -> None:
    template = get(args.props, "launchTemplate") or {}
    if not (get(template, "id") or get(template, "name")):
        report(
            say(
                args.urn,
                "launchTemplate",
                "is missing: the nodes' root volumes are encrypted only if the account's "
                "EBS default says so, and their metadata options are EKS's defaults",
                "launch the group from an aws.ec2.LaunchTemplate with an encrypted root "
                "volume and IMDSv2 (infra/components/cluster.py does)",
            )
        )
    if get(args.props, "diskSize") is not None:
        report(
            say(
                args.urn,
                "diskSize",
                "is set: EKS refuses it beside a launch template, and without one the "
                "root volume follows the account's EBS default",
                "drop disk_size and size the launch template's root volume",
            )
        )


def _encrypted(value: Any) -> bool:
    """The provider's schema types `encrypted` as a string ("true"); a bool is accepted too."""
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _launch_template_hardened(args: ResourceValidationArgs, report: Report) -> None:
    mappings = get(args.props, "blockDeviceMappings") or []
    ebs = [get(m, "ebs") for m in mappings if get(m, "ebs") is not None]
    if not ebs or not all(_encrypted(get(volume, "encrypted")) for volume in ebs):
        report(
            say(
                args.urn,
                "blockDeviceMappings",
                "has an EBS volume that is not encrypted (or declares none, leaving the root "
                "volume to the account's EBS default)",
                'map the root device with ebs.encrypted "true" and the volumes key',
            )
        )
    tokens = get(args.props, "metadataOptions.httpTokens")
    if tokens != "required":
        report(
            say(
                args.urn,
                "metadataOptions.httpTokens",
                f"is {tokens if tokens is not None else 'missing'}, not required",
                'set metadata_options http_tokens="required" (IMDSv2 only)',
            )
        )


def _required_tags(args: ResourceValidationArgs, report: Report) -> None:
    tags = dict(provider_default_tags(args))
    own = get(args.props, "tags") or {}
    if isinstance(own, Mapping):
        tags.update({str(k): str(v) for k, v in own.items()})
    missing = [t for t in REQUIRED_TAGS if not tags.get(t)]
    if missing:
        report(
            say(
                args.urn,
                "tags",
                f"lacks {', '.join(missing)}",
                "give the AWS provider default_tags with Project, Environment and ManagedBy "
                "(infra/program.py does), or tag the resource",
            )
        )


def _instance_classes(args: ResourceValidationArgs, report: Report) -> None:
    env = rules(args)
    if args.resource_type == RDS:
        checks = [("instanceClass", [get(args.props, "instanceClass")], env.database_classes)]
    elif args.resource_type == REDIS:
        checks = [("nodeType", [get(args.props, "nodeType")], env.cache_node_types)]
    else:
        checks = [
            (
                "instanceTypes",
                list(get(args.props, "instanceTypes") or [None]),
                env.node_instance_types,
            )
        ]
    for prop, values, allowed in checks:
        for value in values:
            if value not in allowed:
                report(
                    say(
                        args.urn,
                        prop,
                        f"is {value if value is not None else 'missing'}, not one allowed here",
                        f"use one of {', '.join(allowed)} (policies/common.py RULES)",
                    )
                )


POLICIES = [
    stack_policy(
        "s3-bucket-encrypted",
        "Every S3 bucket has default server-side encryption.",
        [BUCKET, BUCKET_ENCRYPTION],
        _s3_encrypted,
    ),
    stack_policy(
        "s3-bucket-versioned",
        "Every S3 bucket has versioning enabled.",
        [BUCKET, BUCKET_VERSIONING],
        _s3_versioned,
    ),
    stack_policy(
        "s3-bucket-public-access-blocked",
        "Every S3 bucket blocks public ACLs and policies.",
        [BUCKET, BUCKET_PUBLIC_ACCESS],
        _s3_public_access_blocked,
    ),
    stack_policy(
        "s3-bucket-tls-only",
        "Every S3 bucket's policy denies requests without TLS.",
        [BUCKET, BUCKET_POLICY],
        _s3_tls_only,
    ),
    resource_policy("rds-encrypted", "RDS storage is encrypted.", [RDS], _rds_encrypted),
    resource_policy(
        "rds-private", "RDS instances are not publicly accessible.", [RDS], _rds_private
    ),
    resource_policy(
        "rds-backup-retention",
        "RDS keeps automated backups at least 7 days (30 in production).",
        [RDS],
        _rds_backups,
    ),
    resource_policy(
        "rds-production-safety",
        "In production RDS has deletion protection and Multi-AZ.",
        [RDS],
        _rds_production_safety,
    ),
    resource_policy(
        "elasticache-encrypted",
        "ElastiCache encrypts in transit and at rest and requires an auth token.",
        [REDIS],
        _cache_encrypted,
    ),
    resource_policy("kms-key-rotation", "KMS keys rotate yearly.", [KMS_KEY], _kms_rotation),
    resource_policy(
        "sqs-queue-encrypted",
        "SQS queues (Karpenter's interruption queue) are encrypted at rest.",
        [SQS_QUEUE],
        _sqs_encrypted,
    ),
    resource_policy(
        "eks-endpoint-restricted",
        "The EKS API endpoint is private or limited to given CIDRs.",
        [EKS],
        _eks_endpoint,
    ),
    resource_policy(
        "eks-control-plane-logging",
        "EKS control-plane logs (api, audit, authenticator) are on.",
        [EKS],
        _eks_logging,
    ),
    resource_policy(
        "eks-node-group-launch-template",
        "EKS managed node groups launch from a launch template, without diskSize.",
        [NODE_GROUP],
        _node_group_launch_template,
    ),
    resource_policy(
        "ec2-launch-template-hardened",
        "Launch templates encrypt every EBS volume and require IMDSv2.",
        [LAUNCH_TEMPLATE],
        _launch_template_hardened,
    ),
    resource_policy(
        "aws-required-tags",
        "Taggable AWS resources carry Project, Environment and ManagedBy.",
        TAGGABLE,
        _required_tags,
    ),
    resource_policy(
        "aws-allowed-instance-classes",
        "Database, cache and node sizes come from the environment's allowed list.",
        [RDS, REDIS, NODE_GROUP],
        _instance_classes,
    ),
]
