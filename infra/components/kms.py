"""Customer-managed KMS keys, one per kind of data.

Each data store gets its own key (EKS secrets, RDS, ElastiCache, S3, ECR) so
that access to one kind of data can be granted, audited or revoked without
touching the others. Keys rotate yearly and wait 30 days before deletion, the
longest window, so that a mistaken delete can still be cancelled.

A key is protected in Pulumi exactly when the data it encrypts is: deleting
the key of a protected bucket or database would make that data unreadable
while the store itself is kept.
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
    protect: bool,
    policy: pulumi.Input[str] | None = None,
) -> aws.kms.Key:
    """A rotating symmetric key and an alias ``alias/<name>`` that names it in the console.

    ``protect``: Pulumi refuses to delete the key (pass the protection of the
    data it encrypts). ``policy``: the key policy; None keeps KMS's default,
    under which the account's IAM policies alone decide who uses the key.
    """
    key = aws.kms.Key(
        name,
        description=description,
        enable_key_rotation=True,
        deletion_window_in_days=30,
        policy=policy,
        tags=dict(tags),
        opts=pulumi.ResourceOptions(parent=parent, protect=protect),
    )
    aws.kms.Alias(
        f"{name}-alias",
        name=f"alias/{name}",
        target_key_id=key.key_id,
        # Children inherit `protect`; an alias only names the key.
        opts=pulumi.ResourceOptions(parent=key, protect=False),
    )
    return key
