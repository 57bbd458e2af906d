"""Karpenter's controller role holds what the pinned controller calls on AWS.

The reference is the controller policy of Karpenter's getting-started
CloudFormation template (aws/karpenter-provider-aws,
``website/content/en/docs/getting-started/getting-started-with-karpenter/cloudformation.yaml``),
whose statements the program's ``controller_policy`` follows. An action the
controller calls and the role lacks is not a failed `pulumi up`: it is an
AccessDenied in the controller's log on every reconcile.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from infra.components.autoscaling import block_device_mappings
from infra.synth.mocks import ProgramRun

#: Every action the reference template grants the controller, by statement.
REFERENCE_ACTIONS = {
    "AllowScopedEC2InstanceAccessActions": {"ec2:RunInstances", "ec2:CreateFleet"},
    "AllowScopedEC2LaunchTemplateAccessActions": {"ec2:RunInstances", "ec2:CreateFleet"},
    "AllowScopedEC2InstanceActionsWithTags": {
        "ec2:RunInstances",
        "ec2:CreateFleet",
        "ec2:CreateLaunchTemplate",
    },
    "AllowScopedResourceCreationTagging": {"ec2:CreateTags"},
    "AllowScopedResourceTagging": {"ec2:CreateTags"},
    "AllowScopedDeletion": {"ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"},
    "AllowPassingInstanceRole": {"iam:PassRole"},
    "AllowScopedInstanceProfileCreationActions": {"iam:CreateInstanceProfile"},
    "AllowScopedInstanceProfileTagActions": {"iam:TagInstanceProfile"},
    "AllowScopedInstanceProfileActions": {
        "iam:AddRoleToInstanceProfile",
        "iam:RemoveRoleFromInstanceProfile",
        "iam:DeleteInstanceProfile",
    },
    "AllowAPIServerEndpointDiscovery": {"eks:DescribeCluster"},
    "AllowInterruptionQueueActions": {
        "sqs:DeleteMessage",
        "sqs:GetQueueUrl",
        "sqs:ReceiveMessage",
    },
    "AllowRegionalReadActions": {
        "ec2:DescribeCapacityReservations",
        "ec2:DescribeImages",
        "ec2:DescribeInstances",
        "ec2:DescribeInstanceTypeOfferings",
        "ec2:DescribeInstanceTypes",
        "ec2:DescribeLaunchTemplates",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeSpotPriceHistory",
        "ec2:DescribeSubnets",
    },
    "AllowSSMReadActions": {"ssm:GetParameter"},
    "AllowPricingReadActions": {"pricing:GetProducts"},
    # The instance-profile garbage collector lists every profile in the account.
    "AllowUnscopedInstanceProfileListAction": {"iam:ListInstanceProfiles"},
    "AllowInstanceProfileReadActions": {"iam:GetInstanceProfile"},
}
#: IAM's quota on the inline policies of one role, in characters.
INLINE_POLICY_QUOTA = 10_240


def _controller_policy(run: ProgramRun, stack: str) -> dict[str, Any]:
    policy = run.one(
        "aws:iam/rolePolicy:RolePolicy",
        f"enterprisehub-{stack}-cluster-karpenter-controller-policy",
    )
    document: dict[str, Any] = json.loads(policy.inputs["policy"])
    return document


def _node_pool_capacity_types(run: ProgramRun) -> list[str]:
    [pool] = [r for r in run.kubernetes_objects() if r.inputs.get("kind") == "NodePool"]
    requirements = pool.inputs["spec"]["template"]["spec"]["requirements"]
    return next(r["values"] for r in requirements if r["key"] == "karpenter.sh/capacity-type")


@pytest.fixture(scope="module")
def controller_policy(stack_run: Callable[[str], ProgramRun]) -> dict[str, Any]:
    return _controller_policy(stack_run("production"), "production")


def _granted(document: dict[str, Any]) -> set[str]:
    actions: set[str] = set()
    for statement in document["Statement"]:
        assert statement["Effect"] == "Allow"
        action = statement["Action"]
        actions.update([action] if isinstance(action, str) else action)
    return actions


@pytest.mark.parametrize("sid", sorted(REFERENCE_ACTIONS))
def test_the_controller_may_call_what_the_reference_template_grants(
    controller_policy: dict[str, Any], sid: str
) -> None:
    missing = REFERENCE_ACTIONS[sid] - _granted(controller_policy)
    assert not missing, f"{sid}: the controller role lacks {sorted(missing)}"


def test_listing_instance_profiles_is_unscoped(controller_policy: dict[str, Any]) -> None:
    # IAM's List* calls take no resource ARN: a scoped grant would still be denied.
    listing = [
        s for s in controller_policy["Statement"] if "iam:ListInstanceProfiles" in s["Action"]
    ]
    assert listing
    assert all(s["Resource"] == "*" and "Condition" not in s for s in listing)


def test_the_controller_policy_fits_the_inline_quota(controller_policy: dict[str, Any]) -> None:
    compact = json.dumps(controller_policy, separators=(",", ":"))
    assert len(compact) < INLINE_POLICY_QUOTA


@pytest.mark.parametrize("stack", ["dev", "staging", "production"])
def test_a_node_pool_with_spot_may_create_the_spot_service_linked_role(
    stack_run: Callable[[str], ProgramRun], stack: str
) -> None:
    # EC2 creates AWSServiceRoleForEC2Spot on an account's first spot launch with
    # the launcher's rights; lacking iam:CreateServiceLinkedRole, the launch fails
    # with AuthFailure.ServiceLinkedRoleCreationNotPermitted.
    run = stack_run(stack)
    spot = "spot" in _node_pool_capacity_types(run)
    grants = [
        s
        for s in _controller_policy(run, stack)["Statement"]
        if "iam:CreateServiceLinkedRole" in s["Action"]
    ]
    if not spot:
        assert grants == []
        return
    [grant] = grants
    assert grant["Condition"] == {"StringEquals": {"iam:AWSServiceName": "spot.amazonaws.com"}}
    assert grant["Resource"].endswith(
        ":role/aws-service-role/spot.amazonaws.com/AWSServiceRoleForEC2Spot"
    )


VOLUMES_KEY = "enterprisehub-production-cluster-volumes-key"


def _node_class(run: ProgramRun) -> dict[str, Any]:
    [node_class] = [r for r in run.kubernetes_objects() if r.inputs.get("kind") == "EC2NodeClass"]
    spec: dict[str, Any] = node_class.inputs["spec"]
    return spec


def test_karpenter_nodes_encrypt_their_volumes_with_the_volumes_key(
    stack_run: Callable[[str], ProgramRun],
) -> None:
    # As the managed node groups' launch templates: the same key, whatever the
    # account's EBS default.
    run = stack_run("production")
    key_arn = run.one("aws:kms/key:Key", VOLUMES_KEY).raw_outputs["arn"]
    spec = _node_class(run)
    assert spec["blockDeviceMappings"] == [
        {
            "deviceName": "/dev/xvda",
            "ebs": {
                "volumeSize": "100Gi",
                "volumeType": "gp3",
                "encrypted": True,
                "kmsKeyID": key_arn,
                "deleteOnTermination": True,
            },
        }
    ]
    assert spec["metadataOptions"]["httpPutResponseHopLimit"] == 1


def test_the_controller_may_launch_with_the_volumes_key(
    stack_run: Callable[[str], ProgramRun], controller_policy: dict[str, Any]
) -> None:
    # CreateFleet creates the encrypted volumes with the controller's rights; without
    # them each instance is terminated as it starts (Client.InternalError).
    key_arn = stack_run("production").one("aws:kms/key:Key", VOLUMES_KEY).raw_outputs["arn"]
    statements = {s["Sid"]: s for s in controller_policy["Statement"] if "Sid" in s}
    grants, use = statements["AllowNodeVolumeKeyGrants"], statements["AllowNodeVolumeKeyUse"]
    assert grants["Action"] == ["kms:CreateGrant"]
    assert grants["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}
    assert {"kms:GenerateDataKeyWithoutPlaintext", "kms:Decrypt"} <= set(use["Action"])
    assert grants["Resource"] == use["Resource"] == key_arn


def test_bottlerocket_nodes_encrypt_their_data_volume_too() -> None:
    # Bottlerocket keeps images and pod data on /dev/xvdb, not the OS volume.
    mappings = block_device_mappings("bottlerocket@latest", 100, "arn:key")
    assert [(m["deviceName"], m["ebs"]["volumeSize"]) for m in mappings] == [
        ("/dev/xvda", "4Gi"),
        ("/dev/xvdb", "100Gi"),
    ]
    assert all(
        m["ebs"]["encrypted"] is True and m["ebs"]["kmsKeyID"] == "arn:key" for m in mappings
    )
    assert [m["deviceName"] for m in block_device_mappings("al2023@latest", 50, "k")] == [
        "/dev/xvda"
    ]


def test_the_controller_is_given_its_region(stack_run: Callable[[str], ProgramRun]) -> None:
    # With one metadata hop the pod cannot read the region from the node's IMDS.
    release = stack_run("production").one(
        "kubernetes:helm.sh/v3:Release", "enterprisehub-production-cluster-karpenter-chart"
    )
    env = release.inputs["values"]["controller"]["env"]
    assert {"name": "AWS_REGION", "value": "us-east-1"} in env
