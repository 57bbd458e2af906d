"""Customer-managed KMS keys, one per kind of data.

Each data store gets its own key (EKS secrets, RDS, ElastiCache, S3, ECR) so
that access to one kind of data can be granted, audited or revoked without
touching the others. Keys rotate yearly and wait 30 days before deletion, the
longest window, so that a mistaken delete can still be cancelled.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_aws as aws


def encryption_key(
    name: str,
    *,
    description: str,
    tags: Mapping[str, str],
    parent: pulumi.Resource,
) -> aws.kms.Key:
    """A rotating symmetric key and an alias ``alias/<name>`` that names it in the console."""
    key = aws.kms.Key(
        name,
        description=description,
        enable_key_rotation=True,
        deletion_window_in_days=30,
        tags=dict(tags),
        opts=pulumi.ResourceOptions(parent=parent),
    )
    aws.kms.Alias(
        f"{name}-alias",
        name=f"alias/{name}",
        target_key_id=key.key_id,
        opts=pulumi.ResourceOptions(parent=key),
    )
    return key
