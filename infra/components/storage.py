"""S3 buckets for ML models and media: versioned, KMS-encrypted, private, TLS-only.

Each bucket gets the pulumi-aws v7 split resources (the Bucket itself only
names it): ownership controls (ACLs disabled), a public access block with all
four switches on, versioning, default SSE-KMS with an S3 bucket key (fewer KMS
calls), lifecycle rules, and a policy that denies any request not made over TLS.

Lifecycle: both buckets expire noncurrent versions and abort stale multipart
uploads; media objects move to Standard-IA and later Glacier Instant Retrieval
(photos are read rarely after a listing closes but must open instantly). Model
artifacts stay in Standard: they are small and read at every start-up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws

from infra import catalog
from infra.components.base import AwsComponent
from infra.components.iam import deny_insecure_transport, policy_document


@dataclass(frozen=True, kw_only=True)
class StorageArgs:
    """Inputs of :class:`Storage`. Bucket names are global, so they are given whole."""

    bucket_names: Mapping[catalog.Bucket, str]
    noncurrent_version_expiration_days: pulumi.Input[int]
    abort_incomplete_multipart_days: pulumi.Input[int]
    media_transition_ia_days: pulumi.Input[int]
    media_transition_glacier_days: pulumi.Input[int]
    #: Delete objects with the bucket on destroy (never in production).
    force_destroy: bool = False
    tags: Mapping[str, str] = field(default_factory=dict)


def tls_only_policy(bucket_arn: str) -> str:
    """A bucket policy denying every request that does not use TLS."""
    return policy_document(
        [deny_insecure_transport("DenyInsecureTransport", "s3:*", [bucket_arn, f"{bucket_arn}/*"])]
    )


class Storage(AwsComponent[StorageArgs]):
    """The models and media buckets and the KMS key that encrypts them."""

    component_type = "enterprisehub:aws:Storage"

    bucket_names: dict[catalog.Bucket, pulumi.Output[str]]
    bucket_arns: dict[catalog.Bucket, pulumi.Output[str]]
    key_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: StorageArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(name, args, opts)
        key = self._encryption_key("S3 models and media", protect=not args.force_destroy)
        self.key_arn = key.arn
        self.bucket_names = {}
        self.bucket_arns = {}
        for purpose, bucket_name in args.bucket_names.items():
            bucket = self._bucket(purpose, bucket_name, key)
            self.bucket_names[purpose] = bucket.bucket
            self.bucket_arns[purpose] = bucket.arn
        self.register_outputs(
            {
                "bucket_names": {k.value: v for k, v in self.bucket_names.items()},
                "key_arn": self.key_arn,
            }
        )

    def _bucket(self, purpose: catalog.Bucket, bucket_name: str, key: aws.kms.Key) -> aws.s3.Bucket:
        """One bucket with its access controls, encryption, lifecycle and TLS-only policy."""
        args = self._args
        prefix = f"{self._name}-{purpose.value}"
        bucket = aws.s3.Bucket(
            prefix,
            bucket=bucket_name,
            force_destroy=args.force_destroy,
            tags={**self._tags, "Purpose": purpose.value},
            # A bucket whose objects must outlive it is protected: a renamed
            # bucket (storage.bucketPrefix) would be created empty and the old
            # one's delete fail half-way through the update.
            opts=pulumi.ResourceOptions(parent=self, protect=not args.force_destroy),
        )
        # Children inherit `protect`; the bucket's settings hold no data.
        inner = pulumi.ResourceOptions(parent=bucket, protect=False)
        public_block = _access_controls(prefix, bucket, inner)
        _versioned_encryption(prefix, bucket, key, inner)
        aws.s3.BucketLifecycleConfiguration(
            f"{prefix}-lifecycle",
            bucket=bucket.id,
            rules=self._lifecycle_rules(purpose, args),
            opts=inner,
        )
        aws.s3.BucketPolicy(
            f"{prefix}-tls-only",
            bucket=bucket.id,
            policy=bucket.arn.apply(tls_only_policy),
            # S3 rejects policy writes racing the public access block's creation.
            opts=pulumi.ResourceOptions.merge(
                inner, pulumi.ResourceOptions(depends_on=[public_block])
            ),
        )
        return bucket

    @staticmethod
    def _lifecycle_rules(
        purpose: catalog.Bucket, args: StorageArgs
    ) -> list[aws.s3.BucketLifecycleConfigurationRuleArgs]:
        rules = [
            _whole_bucket_rule(
                "expire-noncurrent-versions",
                noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                    noncurrent_days=args.noncurrent_version_expiration_days
                ),
            ),
            _whole_bucket_rule(
                "abort-incomplete-multipart-uploads",
                abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
                    days_after_initiation=args.abort_incomplete_multipart_days
                ),
            ),
        ]
        if purpose is catalog.Bucket.MEDIA:
            rules.append(
                _whole_bucket_rule(
                    "media-tiering",
                    transitions=[
                        aws.s3.BucketLifecycleConfigurationRuleTransitionArgs(
                            days=args.media_transition_ia_days, storage_class="STANDARD_IA"
                        ),
                        aws.s3.BucketLifecycleConfigurationRuleTransitionArgs(
                            days=args.media_transition_glacier_days, storage_class="GLACIER_IR"
                        ),
                    ],
                )
            )
        return rules


def _whole_bucket_rule(rule_id: str, **action: Any) -> aws.s3.BucketLifecycleConfigurationRuleArgs:
    """An enabled lifecycle rule over every object of the bucket (an empty prefix)."""
    return aws.s3.BucketLifecycleConfigurationRuleArgs(
        id=rule_id,
        status="Enabled",
        filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
        **action,
    )


def _access_controls(
    prefix: str, bucket: aws.s3.Bucket, opts: pulumi.ResourceOptions
) -> aws.s3.BucketPublicAccessBlock:
    """ACLs disabled (the owner owns every object) and all four public access switches on."""
    aws.s3.BucketOwnershipControls(
        f"{prefix}-ownership",
        bucket=bucket.id,
        rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"),
        opts=opts,
    )
    return aws.s3.BucketPublicAccessBlock(
        f"{prefix}-public-access",
        bucket=bucket.id,
        block_public_acls=True,
        block_public_policy=True,
        ignore_public_acls=True,
        restrict_public_buckets=True,
        opts=opts,
    )


def _versioned_encryption(
    prefix: str, bucket: aws.s3.Bucket, key: aws.kms.Key, opts: pulumi.ResourceOptions
) -> None:
    """Versioning, and SSE-KMS with ``key`` and an S3 bucket key (fewer KMS calls)."""
    aws.s3.BucketVersioning(
        f"{prefix}-versioning",
        bucket=bucket.id,
        versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(
            status="Enabled"
        ),
        opts=opts,
    )
    aws.s3.BucketServerSideEncryptionConfiguration(
        f"{prefix}-encryption",
        bucket=bucket.id,
        rules=[
            aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=aws.s3.BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                    sse_algorithm="aws:kms", kms_master_key_id=key.arn
                ),
                bucket_key_enabled=True,
            )
        ],
        opts=opts,
    )
