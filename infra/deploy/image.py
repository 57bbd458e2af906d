"""Is the image a rollback would deploy still in its registry?

A rollback deploys an earlier update's config again, its image included
(``REPOSITORY@sha256:DIGEST``). The stack's ECR repository keeps only the
newest images (``infra/components/registry.py``), so the image of an old
target may be gone: `pulumi up` would then roll every Deployment to an image
no node can pull (ImagePullBackOff; with maxUnavailable 0 the old pods keep
serving) and wait until its timeout, leaving the stack half rolled back. The
plan asks ECR first, by digest (``ecr:DescribeImages``).

boto3 is already a dependency of the project (the services' S3 storage), so
this is the SDK call rather than a subprocess of the AWS CLI, which the
deployer's virtualenv does not install. Credentials and endpoint come from
boto3's usual chain: the deploy role the workflow assumed, and
``AWS_ENDPOINT_URL_ECR`` where it is set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from infra.components.registry import KEEP_IMAGES

#: An image in a private ECR registry, pinned by digest (the form `image` config has).
ECR_IMAGE = re.compile(
    r"(?P<registry>[0-9]{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?"
    r"/(?P<repository>[a-z0-9]+(?:[._/-][a-z0-9]+)*)"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"@(?P<digest>sha256:[0-9a-f]{64})"
)


@dataclass(frozen=True)
class EcrImage:
    """An image reference split into what the ECR API asks for."""

    reference: str
    registry_id: str
    region: str
    repository: str
    digest: str

    @classmethod
    def parse(cls, reference: str) -> EcrImage | None:
        """The ECR image `reference` names; None for any other registry."""
        match = ECR_IMAGE.fullmatch(reference)
        if match is None:
            return None
        return cls(
            reference, match["registry"], match["region"], match["repository"], match["digest"]
        )


@dataclass(frozen=True)
class ImageCheck:
    """What the registry said: `refusal` stops the rollback, `note` only informs."""

    refusal: str | None = None
    note: str | None = None


def _what_to_do(image: EcrImage) -> str:
    return (
        "Nothing was changed. Roll back to a newer target whose image is still kept "
        "(`python -m infra.deploy history`, then `--to`), or fix forward (revert the code in a "
        "new commit: its deploy builds an image); if this digest is still in another stack's "
        "repository, copy it in by digest first (`bash scripts/ci-promote-image.sh SOURCE "
        f"{image.registry_id}.dkr.ecr.{image.region}.amazonaws.com/{image.repository} TAG`) "
        "and plan again."
    )


def check_image(reference: str) -> ImageCheck:
    """Ask the image's ECR registry whether `reference` can still be pulled.

    Refuses when the digest (or the repository) is not there, and when the
    registry cannot be asked: a rollback that cannot know must not start.
    An image outside ECR is only noted.
    """
    image = EcrImage.parse(reference)
    if image is None:
        return ImageCheck(
            note=f"the target's image {reference} is not in an ECR registry; whether it can "
            "still be pulled was not checked"
        )
    try:
        client = boto3.client("ecr", region_name=image.region)
        client.describe_images(
            registryId=image.registry_id,
            repositoryName=image.repository,
            imageIds=[{"imageDigest": image.digest}],
        )
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        if code == "ImageNotFoundException":
            return ImageCheck(
                refusal=f"the target's image {image.digest} is no longer in ECR repository "
                f"{image.repository} (account {image.registry_id}, {image.region}): the "
                f"registry's lifecycle policy keeps the newest {KEEP_IMAGES} images. Its update "
                "would roll the Deployments to an image no node can pull and hang until its "
                f"timeout. {_what_to_do(image)}"
            )
        if code == "RepositoryNotFoundException":
            return ImageCheck(
                refusal=f"the target's image {image.digest} cannot be pulled: ECR repository "
                f"{image.repository} does not exist in account {image.registry_id} "
                f"({image.region}). {_what_to_do(image)}"
            )
        return ImageCheck(refusal=_unchecked(image, f"{code}: {error.get('Message', exc)}"))
    except BotoCoreError as exc:
        return ImageCheck(refusal=_unchecked(image, str(exc)))
    return ImageCheck()


def _unchecked(image: EcrImage, why: str) -> str:
    return (
        f"could not check that the target's image {image.digest} is still in ECR repository "
        f"{image.repository} ({why}); the role running the rollback needs ecr:DescribeImages "
        "on it. Nothing was changed."
    )
