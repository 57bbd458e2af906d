"""Least-privilege IAM roles for the services' Kubernetes ServiceAccounts (IRSA).

Every service gets its own role, even one without AWS permissions: with a role
annotation on its ServiceAccount the AWS SDK uses the pod's web identity and
never falls back to the node's instance role. A role trusts only the cluster's
OIDC provider, and only for one ``system:serviceaccount:<namespace>:<name>``
subject with the ``sts.amazonaws.com`` audience, so no other pod can assume it.

Bucket permissions follow the catalog (``ServiceSpec.buckets``): object reads
for "read", plus writes and deletes for "readwrite", on that bucket only. KMS
use is limited to the storage key and to requests S3 makes on the service's
behalf (``kms:ViaService``).

One more role exists when ``ServiceRolesArgs.model_publisher`` is given: the
model-publish Jobs'. It may read and write objects under the published models'
prefixes of the models bucket (``catalog.PUBLISHED_MODELS``: ``lead-scoring/``,
``churn-risk/``) and nothing else; it cannot delete, because published
versions are immutable and the alias is overwritten, never removed. The
services keep read-only access to that bucket.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from infra import catalog
from infra.components.base import AwsComponent

_READ_ACTIONS = ("s3:GetObject", "s3:GetObjectVersion")
_WRITE_ACTIONS = ("s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload")


#: The IAM policy language version every document declares.
POLICY_VERSION = "2012-10-17"


def policy_document(statements: Sequence[Mapping[str, Any]], *, compact: bool = False) -> str:
    """An IAM policy document (JSON) holding ``statements``.

    ``compact`` drops the spaces JSON would put after separators: inline role
    policies share a 10,240-character quota per role.
    """
    return json.dumps(
        {"Version": POLICY_VERSION, "Statement": list(statements)},
        separators=(",", ":") if compact else None,
    )


def deny_insecure_transport(sid: str, action: str, resource: str | list[str]) -> dict[str, Any]:
    """A statement refusing every request to ``resource`` that does not use TLS."""
    return {
        "Sid": sid,
        "Effect": "Deny",
        "Principal": "*",
        "Action": action,
        "Resource": resource,
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }


#: What EC2 does with a customer-managed key for the EBS volumes it creates on a
#: caller's behalf: encrypt a new volume, decrypt it to attach, re-encrypt a copy.
#: Spelled out: no role policy grants a wildcard action (tests/infra/test_aws_iam.py).
EBS_KEY_USE_ACTIONS: tuple[str, ...] = (
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:DescribeKey",
)


def ebs_key_statements(
    key_arn: str, *, sid: str, grant_actions: Sequence[str] = ("kms:CreateGrant",)
) -> list[dict[str, Any]]:
    """An identity policy's statements for launching or creating EBS volumes under ``key_arn``.

    EC2 attaches an encrypted volume through a grant it creates with the
    caller's rights, so the grant actions are limited to grants for an AWS
    resource (``kms:GrantIsForAWSResource``).
    """
    return [
        {
            "Sid": f"{sid}Grants",
            "Effect": "Allow",
            "Action": list(grant_actions),
            "Resource": key_arn,
            "Condition": {"Bool": {"kms:GrantIsForAWSResource": "true"}},
        },
        {
            "Sid": f"{sid}Use",
            "Effect": "Allow",
            "Action": list(EBS_KEY_USE_ACTIONS),
            "Resource": key_arn,
        },
    ]


#: The AWS managed policies every EKS worker node needs (managed node groups and
#: Karpenter's nodes alike).
EKS_NODE_POLICIES: tuple[str, ...] = (
    "AmazonEKSWorkerNodePolicy",
    "AmazonEKS_CNI_Policy",
    "AmazonEC2ContainerRegistryReadOnly",
)


def service_role(
    name: str,
    service: str,
    *,
    parent: pulumi.Resource,
    tags: Mapping[str, str],
    description: str | None = None,
) -> aws.iam.Role:
    """A role that the AWS service ``service`` (e.g. ``ec2.amazonaws.com``) may assume."""
    return aws.iam.Role(
        name,
        description=description,
        assume_role_policy=policy_document(
            [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]
        ),
        tags=dict(tags),
        opts=pulumi.ResourceOptions(parent=parent),
    )


def managed_policy_attachment(
    resource_name: str, role: aws.iam.Role, *, partition: str, policy_name: str
) -> aws.iam.RolePolicyAttachment:
    """Attach the AWS managed policy ``policy_name`` (its path after ``policy/``) to ``role``."""
    return aws.iam.RolePolicyAttachment(
        resource_name,
        role=role.name,
        policy_arn=f"arn:{partition}:iam::aws:policy/{policy_name}",
        opts=pulumi.ResourceOptions(parent=role),
    )


def managed_policy_attachments(
    prefix: str, role: aws.iam.Role, *, partition: str, policy_names: Sequence[str]
) -> list[aws.iam.RolePolicyAttachment]:
    """Attach AWS managed policies to ``role``, one ``{prefix}-{policy}`` resource each."""
    return [
        managed_policy_attachment(
            f"{prefix}-{policy_name}", role, partition=partition, policy_name=policy_name
        )
        for policy_name in policy_names
    ]


def irsa_trust_policy(
    oidc_provider_arn: pulumi.Input[str],
    oidc_issuer_url: pulumi.Input[str],
    namespace: str,
    service_account: str,
) -> pulumi.Output[str]:
    """An assume-role policy for exactly one ServiceAccount of the cluster."""

    def render(values: list[Any]) -> str:
        provider_arn, issuer_url = str(values[0]), str(values[1])
        issuer = issuer_url.removeprefix("https://")
        return policy_document(
            [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": provider_arn},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {
                        "StringEquals": {
                            f"{issuer}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                            f"{issuer}:aud": "sts.amazonaws.com",
                        }
                    },
                }
            ]
        )

    return pulumi.Output.all(oidc_provider_arn, oidc_issuer_url).apply(render)


def irsa_role(
    resource_name: str,
    *,
    oidc_provider_arn: pulumi.Input[str],
    oidc_issuer_url: pulumi.Input[str],
    namespace: str,
    service_account: str,
    purpose: str,
    tags: Mapping[str, str],
    opts: pulumi.ResourceOptions,
    max_session_duration: int | None = None,
) -> aws.iam.Role:
    """An IAM role that only ``namespace/service_account`` of the cluster may assume (IRSA)."""
    return aws.iam.Role(
        resource_name,
        description=f"IRSA role of {namespace}/{service_account} ({purpose})",
        assume_role_policy=irsa_trust_policy(
            oidc_provider_arn, oidc_issuer_url, namespace, service_account
        ),
        max_session_duration=max_session_duration,
        tags=dict(tags),
        opts=opts,
    )


def prefix_writer_policy_document(
    bucket_arn: str, prefixes: Sequence[str], key_arn: str, region: str
) -> str:
    """The inline policy of the model publisher: read and write under ``prefixes`` only."""
    statements: list[dict[str, Any]] = [
        {
            "Sid": "PrefixObjects",
            "Effect": "Allow",
            # Get: the idempotency check reads the version's metadata and the alias.
            "Action": ["s3:GetObject", "s3:PutObject"],
            "Resource": [f"{bucket_arn}/{prefix}*" for prefix in prefixes],
        },
        {
            # Without ListBucket, S3 answers a missing key with 403 instead of 404,
            # and the publisher could not tell "not published yet" from "denied".
            # It reveals key names only, in a bucket that holds models only.
            "Sid": "BucketList",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": bucket_arn,
        },
        {
            "Sid": "StorageKeyThroughS3",
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": key_arn,
            "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}},
        },
    ]
    return policy_document(statements)


def bucket_policy_document(
    grants: Mapping[catalog.Bucket, catalog.BucketAccess],
    bucket_arns: Mapping[catalog.Bucket, str],
    key_arn: str,
    region: str,
) -> str:
    """The inline policy of one service: its buckets' objects and the storage key."""
    statements: list[dict[str, Any]] = []
    needs_write = False
    for bucket, access in sorted(grants.items()):
        arn = bucket_arns[bucket]
        actions = list(_READ_ACTIONS)
        if access == "readwrite":
            actions += _WRITE_ACTIONS
            needs_write = True
        statements.append(
            {
                "Sid": f"{bucket.value.capitalize()}Objects",
                "Effect": "Allow",
                "Action": actions,
                "Resource": f"{arn}/*",
            }
        )
        statements.append(
            {
                "Sid": f"{bucket.value.capitalize()}List",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": arn,
            }
        )
    kms_actions = ["kms:Decrypt"] + (["kms:GenerateDataKey"] if needs_write else [])
    statements.append(
        {
            "Sid": "StorageKeyThroughS3",
            "Effect": "Allow",
            "Action": kms_actions,
            "Resource": key_arn,
            "Condition": {"StringEquals": {"kms:ViaService": f"s3.{region}.amazonaws.com"}},
        }
    )
    return policy_document(statements)


@dataclass(frozen=True, kw_only=True)
class PrefixWriterGrant:
    """A role for the Jobs that publish under some prefixes of one bucket (model publish)."""

    #: The Jobs' ServiceAccount; also the key of its ARN in ``ServiceRoles.role_arns``.
    service_account: str
    #: Non-empty key prefixes ending in ``/`` (an empty one would grant the whole bucket).
    prefixes: tuple[str, ...]
    bucket: catalog.Bucket = catalog.Bucket.MODELS


@dataclass(frozen=True, kw_only=True)
class ServiceRolesArgs:
    """Inputs of :class:`ServiceRoles`."""

    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer_url: pulumi.Input[str]
    namespace: str
    #: The services to create roles for (their names are the ServiceAccount names).
    services: Sequence[catalog.ServiceSpec]
    bucket_arns: Mapping[catalog.Bucket, pulumi.Input[str]]
    storage_key_arn: pulumi.Input[str]
    region: str
    tags: Mapping[str, str] = field(default_factory=dict)
    #: The model-publish Job's role, if the platform runs that Job.
    model_publisher: PrefixWriterGrant | None = None


class ServiceRoles(AwsComponent[ServiceRolesArgs]):
    """One IAM role per service (and the model publisher), each trusted by one ServiceAccount."""

    component_type = "enterprisehub:aws:ServiceRoles"

    #: Role ARN per ServiceAccount name (the services' names, plus the publisher's).
    role_arns: dict[str, pulumi.Output[str]]

    def __init__(
        self, name: str, args: ServiceRolesArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        _validate(args)
        super().__init__(name, args, opts)
        self.role_arns = {}
        buckets = list(args.bucket_arns)
        for spec in args.services:
            role = self._role(spec.service_account, spec.name)
            if spec.buckets:
                grants = dict(spec.buckets)
                aws.iam.RolePolicy(
                    f"{name}-{spec.name}-storage",
                    role=role.id,
                    policy=pulumi.Output.all(
                        args.storage_key_arn, *[args.bucket_arns[b] for b in buckets]
                    ).apply(self._policy_renderer(grants, buckets, args.region)),
                    opts=pulumi.ResourceOptions(parent=role),
                )
            self.role_arns[spec.name] = role.arn
        if args.model_publisher is not None:
            self._prefix_writer(args.model_publisher)
        self.register_outputs({"role_arns": self.role_arns})

    def _role(self, service_account: str, purpose: str) -> aws.iam.Role:
        """An IRSA role that only ``<namespace>/<service_account>`` can assume."""
        args = self._args
        return irsa_role(
            f"{self._name}-{service_account}",
            oidc_provider_arn=args.oidc_provider_arn,
            oidc_issuer_url=args.oidc_issuer_url,
            namespace=args.namespace,
            service_account=service_account,
            purpose=purpose,
            max_session_duration=3600,
            tags=self._tags,
            opts=pulumi.ResourceOptions(parent=self),
        )

    def _prefix_writer(self, grant: PrefixWriterGrant) -> None:
        args = self._args
        where = ", ".join(f"{grant.bucket.value}/{prefix}" for prefix in grant.prefixes)
        role = self._role(grant.service_account, f"publishes {where}")
        aws.iam.RolePolicy(
            f"{self._name}-{grant.service_account}-storage",
            role=role.id,
            policy=pulumi.Output.all(args.bucket_arns[grant.bucket], args.storage_key_arn).apply(
                lambda values: prefix_writer_policy_document(
                    str(values[0]), grant.prefixes, str(values[1]), args.region
                )
            ),
            opts=pulumi.ResourceOptions(parent=role),
        )
        self.role_arns[grant.service_account] = role.arn

    @staticmethod
    def _policy_renderer(
        grants: Mapping[catalog.Bucket, catalog.BucketAccess],
        buckets: Sequence[catalog.Bucket],
        region: str,
    ) -> Callable[[list[Any]], str]:
        """Turns the resolved [key ARN, *bucket ARNs] into one service's policy JSON."""

        def render(values: list[Any]) -> str:
            arns = dict(zip(buckets, (str(v) for v in values[1:]), strict=True))
            return bucket_policy_document(grants, arns, str(values[0]), region)

        return render


def _validate(args: ServiceRolesArgs) -> None:
    """Refuse a publisher grant that would reach beyond one prefix, before any resource."""
    grant = args.model_publisher
    if grant is None:
        return
    if not grant.prefixes:
        raise ValueError("ServiceRoles: model_publisher.prefixes names no prefix")
    for prefix in grant.prefixes:
        if not prefix or not prefix.endswith("/") or prefix.startswith("/") or "*" in prefix:
            raise ValueError(
                f"ServiceRoles: model_publisher prefix {prefix!r} must be a non-empty key "
                "prefix ending in '/' without a leading '/' or wildcards, e.g. 'lead-scoring/'"
            )
    if grant.bucket not in args.bucket_arns:
        raise ValueError(f"ServiceRoles: model_publisher bucket {grant.bucket.value!r} is unknown")
    if grant.service_account in {spec.service_account for spec in args.services}:
        raise ValueError(
            f"ServiceRoles: model_publisher account {grant.service_account!r} is a service's"
        )
