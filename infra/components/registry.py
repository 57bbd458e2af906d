"""The ECR repository of the services' image.

Tags are immutable, so a tag once pushed always names the same image and the
digest the stack deploys can be traced back to it; every push is scanned; the
repository is encrypted with its own KMS key. The lifecycle policy removes
untagged images (left over from multi-arch or failed pushes) after a week and
keeps the newest `KEEP_IMAGES` images, by count and never by age: an age limit
would expire the running image of a stack nobody deployed for that long, and its
next node could not pull it.

The rollback (`python -m infra.deploy rollback-plan`) reaches back at most
`ROLLBACK_WINDOW` deployed commits, and `KEEP_IMAGES` covers them: each deploy
of a new commit pushes one image (a re-run reuses it), so the newest
`KEEP_IMAGES` images hold the last `ROLLBACK_WINDOW` deployed commits' images
even with three failed or abandoned deploys per release in between. The plan
also asks ECR for the target's digest, so an image gone for any other reason
(deleted by hand, more failed deploys) is refused rather than deployed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from infra.components.base import AwsComponent

UNTAGGED_EXPIRY_DAYS = 7
#: How many deployed commits back a stack rollback may go (docs/deploying.md).
ROLLBACK_WINDOW = 25
#: Images kept: one per deploy attempt of a new commit, four per release in the window.
KEEP_IMAGES = 4 * ROLLBACK_WINDOW


@dataclass(frozen=True, kw_only=True)
class RegistryArgs:
    """Inputs of :class:`Registry`."""

    repository_name: pulumi.Input[str]
    #: Allow deleting a repository that still holds images (never in production).
    force_delete: bool = False
    tags: Mapping[str, str] = field(default_factory=dict)


def lifecycle_policy() -> str:
    """ECR lifecycle rules: expire untagged images, then cap the image count."""
    return json.dumps(
        {
            "rules": [
                {
                    "rulePriority": 1,
                    "description": f"Expire untagged images after {UNTAGGED_EXPIRY_DAYS} days",
                    "selection": {
                        "tagStatus": "untagged",
                        "countType": "sinceImagePushed",
                        "countUnit": "days",
                        "countNumber": UNTAGGED_EXPIRY_DAYS,
                    },
                    "action": {"type": "expire"},
                },
                {
                    "rulePriority": 2,
                    "description": (
                        f"Keep the newest {KEEP_IMAGES} images "
                        f"(rollback window: {ROLLBACK_WINDOW} releases)"
                    ),
                    "selection": {
                        "tagStatus": "any",
                        "countType": "imageCountMoreThan",
                        "countNumber": KEEP_IMAGES,
                    },
                    "action": {"type": "expire"},
                },
            ]
        }
    )


class Registry(AwsComponent[RegistryArgs]):
    """An ECR repository with immutable tags, scan on push, KMS and a lifecycle policy."""

    component_type = "enterprisehub:aws:Registry"

    repository_url: pulumi.Output[str]
    repository_arn: pulumi.Output[str]

    def __init__(
        self, name: str, args: RegistryArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(name, args, opts)
        key = self._encryption_key("container images", protect=not args.force_delete)
        repository = aws.ecr.Repository(
            f"{name}-repository",
            name=args.repository_name,
            image_tag_mutability="IMMUTABLE",
            image_scanning_configuration=aws.ecr.RepositoryImageScanningConfigurationArgs(
                scan_on_push=True
            ),
            encryption_configurations=[
                aws.ecr.RepositoryEncryptionConfigurationArgs(
                    encryption_type="KMS", kms_key=key.arn
                )
            ],
            force_delete=args.force_delete,
            tags=self._tags,
            # The images of earlier releases are what a rollback deploys again.
            opts=pulumi.ResourceOptions(parent=self, protect=not args.force_delete),
        )
        aws.ecr.LifecyclePolicy(
            f"{name}-lifecycle",
            repository=repository.name,
            policy=lifecycle_policy(),
            # Children inherit `protect`; the policy holds no data.
            opts=pulumi.ResourceOptions(parent=repository, protect=False),
        )
        self.repository_url = repository.repository_url
        self.repository_arn = repository.arn
        self.register_outputs(
            {"repository_url": self.repository_url, "repository_arn": self.repository_arn}
        )
