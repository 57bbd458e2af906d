"""Node autoscaling on EKS: Karpenter, its AWS side, and the node pool it fills.

Karpenter watches for pods the scheduler cannot place and launches EC2
instances that fit them; when nodes empty out or are under-used it consolidates
them. Everything it needs is declared here:

* the controller's IAM role, assumable only by its ServiceAccount (IRSA), with
  the permissions of Karpenter's reference CloudFormation template, scoped by
  the cluster's tags;
* the node role (and its EC2_LINUX access entry) the instances it launches use;
* the SQS interruption queue and the EventBridge rules feeding it (spot
  interruptions, rebalance recommendations, scheduled maintenance, instance
  state changes), so nodes are drained before EC2 takes them away;
* the pinned ``karpenter-crd`` and ``karpenter`` Helm charts (CRDs as a release
  of their own, so that a chart upgrade also upgrades them);
* one ``EC2NodeClass`` (AMI alias, the cluster's private subnets and security
  group, gp3 volumes encrypted with the cluster's volumes key, IMDSv2 with one
  hop, as the managed node groups' launch templates) and one
  ``NodePool`` (instance types chosen by how the pods pack, capacity limits,
  consolidation with a disruption budget).

The managed node groups stay for what must run before Karpenter does (Karpenter
itself, CoreDNS); Karpenter's default affinity keeps it off its own nodes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.components.addons import ChartPin, load_pins, pinned_release
from infra.components.base import AwsComponent
from infra.components.iam import (
    EKS_NODE_POLICIES,
    deny_insecure_transport,
    ebs_key_statements,
    irsa_role,
    managed_policy_attachments,
    policy_document,
    service_role,
)

NAMESPACE: Final = "kube-system"
SERVICE_ACCOUNT: Final = "karpenter"
NODE_CLASS: Final = "default"
NODE_POOL: Final = "default"

#: EventBridge patterns of the events Karpenter handles (its reference template):
#: scheduled maintenance, spot interruption warnings, rebalance recommendations,
#: instance state changes. Short keys: a rule's name is at most 64 characters.
INTERRUPTION_EVENTS: Final[Mapping[str, dict[str, Any]]] = {
    "health": {"source": ["aws.health"], "detail-type": ["AWS Health Event"]},
    "spot": {
        "source": ["aws.ec2"],
        "detail-type": ["EC2 Spot Instance Interruption Warning"],
    },
    "rebalance": {"source": ["aws.ec2"], "detail-type": ["EC2 Instance Rebalance Recommendation"]},
    "state": {
        "source": ["aws.ec2"],
        "detail-type": ["EC2 Instance State-change Notification"],
    },
}


@dataclass(frozen=True, kw_only=True)
class KarpenterSpec:
    """The NodePool's shape (plain values: they decide objects at preview)."""

    instance_types: Sequence[str]
    capacity_types: Sequence[str]
    cpu_limit: int
    memory_limit_gb: int
    ami_alias: str = "al2023@latest"
    root_volume_gb: int = 100


@dataclass(frozen=True, kw_only=True)
class KarpenterArgs:
    """Inputs of :class:`Karpenter`."""

    cluster_name: pulumi.Input[str]
    cluster_endpoint: pulumi.Input[str]
    cluster_arn: pulumi.Input[str]
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer_url: pulumi.Input[str]
    subnet_ids: pulumi.Input[Sequence[pulumi.Input[str]]]
    security_group_id: pulumi.Input[str]
    #: The KMS key the nodes' volumes are encrypted with (the cluster's volumes key).
    volume_key_arn: pulumi.Input[str]
    partition: str
    region: str
    spec: KarpenterSpec
    #: The Kubernetes provider for cluster-level objects.
    provider: k8s.Provider
    #: What the chart must wait for (nodes to run on, the VPC CNI, CoreDNS).
    after: Sequence[pulumi.Resource] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    #: Tags of the instances and volumes Karpenter launches.
    node_tags: Mapping[str, str] = field(default_factory=dict)


def controller_policy(
    *,
    partition: str,
    region: str,
    cluster_name: str,
    cluster_arn: str,
    queue_arn: str,
    node_role_arn: str,
    volume_key_arn: str,
    spot: bool = False,
) -> str:
    """The controller's permissions, after Karpenter's reference CloudFormation template.

    Launch and tag actions are limited to resources tagged for this cluster; the
    only role it may pass is the node role; it reads only its own queue. It may
    use the volumes key for what it launches: CreateFleet creates the encrypted
    volumes with the caller's rights, and without them each instance is
    terminated as it starts (Client.InternalError). With
    ``spot`` (the NodePool may launch spot capacity) it may also create EC2
    Spot's service-linked role, which the first spot launch of an account needs.
    """
    owned = {f"aws:RequestTag/kubernetes.io/cluster/{cluster_name}": "owned"}
    owned_resource = {f"aws:ResourceTag/kubernetes.io/cluster/{cluster_name}": "owned"}
    regional = {"aws:RequestedRegion": region}
    ec2 = f"arn:{partition}:ec2:{region}"
    # What a launch creates: launching it and tagging it at creation cover the same list.
    launched = [
        f"{ec2}:*:{kind}/*"
        for kind in (
            "fleet",
            "instance",
            "volume",
            "network-interface",
            "launch-template",
            "spot-instances-request",
        )
    ]
    # Resources of this cluster that a node pool of its Karpenter created.
    of_a_node_pool = {
        "StringEquals": owned_resource,
        "StringLike": {"aws:ResourceTag/karpenter.sh/nodepool": "*"},
    }
    instance_profiles = f"arn:{partition}:iam::*:instance-profile/*"
    statements: list[dict[str, Any]] = [
        {
            "Sid": "AllowScopedEC2InstanceAccessActions",
            "Effect": "Allow",
            "Resource": [
                f"arn:{partition}:ec2:{region}::image/*",
                f"arn:{partition}:ec2:{region}::snapshot/*",
                f"{ec2}:*:security-group/*",
                f"{ec2}:*:subnet/*",
                f"{ec2}:*:capacity-reservation/*",
            ],
            "Action": ["ec2:RunInstances", "ec2:CreateFleet"],
        },
        {
            "Sid": "AllowScopedEC2LaunchTemplateAccessActions",
            "Effect": "Allow",
            "Resource": f"{ec2}:*:launch-template/*",
            "Action": ["ec2:RunInstances", "ec2:CreateFleet"],
            "Condition": of_a_node_pool,
        },
        {
            "Sid": "AllowScopedEC2InstanceActionsWithTags",
            "Effect": "Allow",
            "Resource": launched,
            "Action": ["ec2:RunInstances", "ec2:CreateFleet", "ec2:CreateLaunchTemplate"],
            "Condition": {
                "StringEquals": {**owned, "aws:RequestTag/eks:eks-cluster-name": cluster_name},
                "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"},
            },
        },
        {
            "Sid": "AllowScopedResourceCreationTagging",
            "Effect": "Allow",
            "Resource": launched,
            "Action": "ec2:CreateTags",
            "Condition": {
                "StringEquals": {
                    **owned,
                    "aws:RequestTag/eks:eks-cluster-name": cluster_name,
                    "ec2:CreateAction": ["RunInstances", "CreateFleet", "CreateLaunchTemplate"],
                },
                "StringLike": {"aws:RequestTag/karpenter.sh/nodepool": "*"},
            },
        },
        {
            "Sid": "AllowScopedResourceTagging",
            "Effect": "Allow",
            "Resource": f"{ec2}:*:instance/*",
            "Action": "ec2:CreateTags",
            "Condition": {
                **of_a_node_pool,
                "StringEqualsIfExists": {"aws:RequestTag/eks:eks-cluster-name": cluster_name},
                "ForAllValues:StringEquals": {
                    "aws:TagKeys": ["eks:eks-cluster-name", "karpenter.sh/nodeclaim", "Name"]
                },
            },
        },
        {
            "Sid": "AllowScopedDeletion",
            "Effect": "Allow",
            "Resource": [f"{ec2}:*:instance/*", f"{ec2}:*:launch-template/*"],
            "Action": ["ec2:TerminateInstances", "ec2:DeleteLaunchTemplate"],
            "Condition": of_a_node_pool,
        },
        {
            "Sid": "AllowRegionalReadActions",
            "Effect": "Allow",
            "Resource": "*",
            "Action": [
                "ec2:DescribeCapacityReservations",
                "ec2:DescribeImages",
                "ec2:DescribeInstances",
                "ec2:DescribeInstanceTypeOfferings",
                "ec2:DescribeInstanceTypes",
                "ec2:DescribeLaunchTemplates",
                "ec2:DescribeSecurityGroups",
                "ec2:DescribeSpotPriceHistory",
                "ec2:DescribeSubnets",
            ],
            "Condition": {"StringEquals": regional},
        },
        {
            "Sid": "AllowSSMReadActions",
            "Effect": "Allow",
            "Resource": f"arn:{partition}:ssm:{region}::parameter/aws/service/*",
            "Action": "ssm:GetParameter",
        },
        {
            "Sid": "AllowPricingReadActions",
            "Effect": "Allow",
            "Resource": "*",
            "Action": "pricing:GetProducts",
        },
        {
            "Sid": "AllowInterruptionQueueActions",
            "Effect": "Allow",
            "Resource": queue_arn,
            "Action": ["sqs:DeleteMessage", "sqs:GetQueueUrl", "sqs:ReceiveMessage"],
        },
        {
            "Sid": "AllowPassingInstanceRole",
            "Effect": "Allow",
            "Resource": node_role_arn,
            "Action": "iam:PassRole",
            "Condition": {
                "StringEquals": {
                    "iam:PassedToService": ["ec2.amazonaws.com", "ec2.amazonaws.com.cn"]
                }
            },
        },
        {
            "Sid": "AllowScopedInstanceProfileActions",
            "Effect": "Allow",
            "Resource": instance_profiles,
            "Action": [
                "iam:CreateInstanceProfile",
                "iam:TagInstanceProfile",
                "iam:AddRoleToInstanceProfile",
                "iam:RemoveRoleFromInstanceProfile",
                "iam:DeleteInstanceProfile",
            ],
            "Condition": {
                "StringEquals": {
                    f"aws:ResourceTag/kubernetes.io/cluster/{cluster_name}": "owned",
                    "aws:ResourceTag/topology.kubernetes.io/region": region,
                },
                "StringLike": {"aws:ResourceTag/karpenter.k8s.aws/ec2nodeclass": "*"},
            },
        },
        {
            "Sid": "AllowScopedInstanceProfileCreation",
            "Effect": "Allow",
            "Resource": instance_profiles,
            "Action": ["iam:CreateInstanceProfile", "iam:TagInstanceProfile"],
            "Condition": {
                "StringEquals": {
                    **owned,
                    "aws:RequestTag/eks:eks-cluster-name": cluster_name,
                    "aws:RequestTag/topology.kubernetes.io/region": region,
                },
                "StringLike": {"aws:RequestTag/karpenter.k8s.aws/ec2nodeclass": "*"},
            },
        },
        {
            "Sid": "AllowInstanceProfileReadActions",
            "Effect": "Allow",
            "Resource": instance_profiles,
            "Action": "iam:GetInstanceProfile",
        },
        {
            # The instance-profile garbage collector lists every profile (IAM's List
            # calls take no resource scope); without it each sweep is AccessDenied and
            # the profiles of deleted node classes pile up against the account quota.
            "Sid": "AllowUnscopedInstanceProfileListAction",
            "Effect": "Allow",
            "Resource": "*",
            "Action": "iam:ListInstanceProfiles",
        },
        {
            "Sid": "AllowAPIServerEndpointDiscovery",
            "Effect": "Allow",
            "Resource": cluster_arn,
            "Action": "eks:DescribeCluster",
        },
        *ebs_key_statements(volume_key_arn, sid="AllowNodeVolumeKey"),
    ]
    if spot:
        # CreateFleet creates AWSServiceRoleForEC2Spot on an account's first spot
        # launch with the caller's rights; without them every spot launch of a new
        # account fails (AuthFailure.ServiceLinkedRoleCreationNotPermitted).
        statements.append(
            {
                "Sid": "AllowSpotServiceLinkedRoleCreation",
                "Effect": "Allow",
                "Resource": (
                    f"arn:{partition}:iam::*:role/aws-service-role/spot.amazonaws.com/"
                    "AWSServiceRoleForEC2Spot"
                ),
                "Action": "iam:CreateServiceLinkedRole",
                "Condition": {"StringEquals": {"iam:AWSServiceName": "spot.amazonaws.com"}},
            }
        )
    # Compact: inline role policies share a 10,240-character quota per role.
    return policy_document(statements, compact=True)


def queue_policy(queue_arn: str) -> str:
    """Only EventBridge and SQS itself may send to the queue, and only over TLS."""
    return policy_document(
        [
            {
                "Sid": "EventBridgeWrite",
                "Effect": "Allow",
                "Principal": {"Service": ["events.amazonaws.com", "sqs.amazonaws.com"]},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
            },
            deny_insecure_transport("DenyHTTP", "sqs:*", queue_arn),
        ]
    )


class Karpenter(AwsComponent[KarpenterArgs]):
    """Karpenter's IAM, interruption queue, Helm releases, EC2NodeClass and NodePool."""

    component_type = "enterprisehub:aws:Karpenter"

    node_role_arn: pulumi.Output[str]
    controller_role_arn: pulumi.Output[str]
    queue_name: pulumi.Output[str]
    chart_version: str

    def __init__(
        self, name: str, args: KarpenterArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(name, args, opts)

        node_role, node_permissions = self._node_role()
        queue = self._interruption_queue()
        controller_role, controller_permissions = self._controller_role(queue, node_role)
        pins = load_pins(section="awsCharts")
        crd_pin, chart_pin = pins["karpenter-crd"], pins["karpenter"]
        crds = pinned_release(f"{name}-crd", crd_pin, opts=self._k8s_options(args.after))
        release = self._controller(
            chart_pin,
            queue,
            controller_role,
            depends_on=[crds, controller_permissions, *node_permissions],
        )
        node_class = self._node_class(node_role, depends_on=[release])
        self._node_pool(depends_on=[release, node_class])

        self.node_role_arn = node_role.arn
        self.controller_role_arn = controller_role.arn
        self.queue_name = queue.name
        self.chart_version = chart_pin.version
        self.register_outputs(
            {
                "node_role_arn": self.node_role_arn,
                "controller_role_arn": self.controller_role_arn,
                "queue_name": self.queue_name,
            }
        )

    def _node_role(self) -> tuple[aws.iam.Role, list[pulumi.Resource]]:
        """The launched nodes' role, its policies and its access entry (the chart waits)."""
        name, args = self._name, self._args
        role = service_role(
            f"{name}-node",
            "ec2.amazonaws.com",
            parent=self,
            tags=self._tags,
            description="Nodes launched by Karpenter",
        )
        # Karpenter's reference template adds SSM (Session Manager) to the node policies.
        policies = managed_policy_attachments(
            f"{name}-node",
            role,
            partition=args.partition,
            policy_names=(*EKS_NODE_POLICIES, "AmazonSSMManagedInstanceCore"),
        )
        # Nodes join through an access entry (authentication mode API, no aws-auth).
        access = aws.eks.AccessEntry(
            f"{name}-node-access",
            cluster_name=args.cluster_name,
            principal_arn=role.arn,
            type="EC2_LINUX",
            tags=self._tags,
            opts=pulumi.ResourceOptions(parent=role),
        )
        return role, [access, *policies]

    def _interruption_queue(self) -> aws.sqs.Queue:
        """The SQS queue, and the EventBridge rules that feed it the interruption events."""
        name, tags = self._name, self._tags
        queue = aws.sqs.Queue(
            f"{name}-interruptions",
            # Events older than five minutes describe nodes already gone.
            message_retention_seconds=300,
            sqs_managed_sse_enabled=True,
            tags=tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.sqs.QueuePolicy(
            f"{name}-interruptions-policy",
            queue_url=queue.url,
            policy=queue.arn.apply(queue_policy),
            opts=pulumi.ResourceOptions(parent=queue),
        )
        for event, pattern in INTERRUPTION_EVENTS.items():
            rule = aws.cloudwatch.EventRule(
                f"{name}-{event}",
                description=f"Karpenter interruption handling: {event}",
                event_pattern=json.dumps(pattern),
                tags=tags,
                opts=pulumi.ResourceOptions(parent=queue),
            )
            aws.cloudwatch.EventTarget(
                f"{name}-{event}-target",
                rule=rule.name,
                arn=queue.arn,
                opts=pulumi.ResourceOptions(parent=rule),
            )
        return queue

    def _controller_role(
        self, queue: aws.sqs.Queue, node_role: aws.iam.Role
    ) -> tuple[aws.iam.Role, aws.iam.RolePolicy]:
        """The controller's IRSA role and its permissions (:func:`controller_policy`)."""
        name, args = self._name, self._args
        role = irsa_role(
            f"{name}-controller",
            oidc_provider_arn=args.oidc_provider_arn,
            oidc_issuer_url=args.oidc_issuer_url,
            namespace=NAMESPACE,
            service_account=SERVICE_ACCOUNT,
            purpose="Karpenter",
            tags=self._tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        permissions = aws.iam.RolePolicy(
            f"{name}-controller-policy",
            role=role.id,
            policy=pulumi.Output.all(
                args.cluster_name, args.cluster_arn, queue.arn, node_role.arn, args.volume_key_arn
            ).apply(
                lambda v: controller_policy(
                    partition=args.partition,
                    region=args.region,
                    cluster_name=str(v[0]),
                    cluster_arn=str(v[1]),
                    queue_arn=str(v[2]),
                    node_role_arn=str(v[3]),
                    volume_key_arn=str(v[4]),
                    spot="spot" in args.spec.capacity_types,
                )
            ),
            opts=pulumi.ResourceOptions(parent=role),
        )
        return role, permissions

    def _k8s_options(self, depends_on: Sequence[pulumi.Resource]) -> pulumi.ResourceOptions:
        """A child in the cluster (through the system provider) that waits for ``depends_on``."""
        return pulumi.ResourceOptions(
            parent=self, provider=self._args.provider, depends_on=list(depends_on)
        )

    def _controller(
        self,
        pin: ChartPin,
        queue: aws.sqs.Queue,
        role: aws.iam.Role,
        *,
        depends_on: Sequence[pulumi.Resource],
    ) -> k8s.helm.v3.Release:
        """The controller's Helm release (its CRDs are a release of their own)."""
        args = self._args
        return pinned_release(
            f"{self._name}-chart",
            pin,
            skip_crds=True,
            cleanup_on_fail=True,
            values={
                "settings": {
                    "clusterName": args.cluster_name,
                    "clusterEndpoint": args.cluster_endpoint,
                    "interruptionQueue": queue.name,
                },
                "serviceAccount": {
                    "name": SERVICE_ACCOUNT,
                    "annotations": {"eks.amazonaws.com/role-arn": role.arn},
                },
                # Two controllers (leader election) spread over the managed nodes.
                "replicas": 2,
                "podDisruptionBudget": {"name": "karpenter", "maxUnavailable": 1},
                "controller": {
                    # Given, not discovered: with one metadata hop, the pod cannot
                    # read the region from the node's instance metadata.
                    "env": [{"name": "AWS_REGION", "value": args.region}],
                    "resources": {
                        "requests": {"cpu": "250m", "memory": "512Mi"},
                        "limits": {"memory": "1Gi"},
                    },
                },
                "logLevel": "info",
            },
            opts=self._k8s_options(depends_on),
        )

    def _node_class(
        self, node_role: aws.iam.Role, *, depends_on: Sequence[pulumi.Resource]
    ) -> k8s.apiextensions.CustomResource:
        """The EC2NodeClass: AMI, subnets, security group, root volume, IMDS of the nodes."""
        args = self._args
        spec = args.spec
        return k8s.apiextensions.CustomResource(
            f"{self._name}-node-class",
            api_version="karpenter.k8s.aws/v1",
            kind="EC2NodeClass",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=NODE_CLASS),
            spec={
                "role": node_role.name,
                "amiSelectorTerms": [{"alias": spec.ami_alias}],
                "subnetSelectorTerms": pulumi.Output.from_input(args.subnet_ids).apply(
                    lambda ids: [{"id": subnet} for subnet in ids]
                ),
                "securityGroupSelectorTerms": [{"id": args.security_group_id}],
                "blockDeviceMappings": block_device_mappings(
                    spec.ami_alias, spec.root_volume_gb, args.volume_key_arn
                ),
                # IMDSv2 only, one hop: pods use IRSA, never the node's role.
                "metadataOptions": {
                    "httpEndpoint": "enabled",
                    "httpTokens": "required",
                    "httpPutResponseHopLimit": 1,
                },
                "tags": {
                    **self._tags,
                    **args.node_tags,
                    "karpenter.sh/discovery": args.cluster_name,
                },
            },
            opts=self._k8s_options(depends_on),
        )

    def _node_pool(self, *, depends_on: Sequence[pulumi.Resource]) -> None:
        """The NodePool (:func:`node_pool_spec`)."""
        k8s.apiextensions.CustomResource(
            f"{self._name}-node-pool",
            api_version="karpenter.sh/v1",
            kind="NodePool",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=NODE_POOL),
            spec=node_pool_spec(self._args.spec),
            opts=self._k8s_options(depends_on),
        )


#: Bottlerocket's OS volume: the size of Karpenter's own default for the family.
BOTTLEROCKET_OS_VOLUME_GB: Final = 4


def block_device_mappings(
    ami_alias: str, data_volume_gb: int, key_arn: pulumi.Input[str]
) -> list[dict[str, Any]]:
    """The EC2NodeClass's volumes for the AMI family of ``ami_alias``, each encrypted with the key.

    AL2023 keeps everything (images, emptyDir, logs) on its root volume,
    /dev/xvda. Bottlerocket boots from a small OS volume on /dev/xvda and keeps
    that data on /dev/xvdb: listing only /dev/xvda would leave the data volume as
    the AMI declares it, encrypted only if the account's EBS default says so.
    """

    def volume(device: str, size_gb: int) -> dict[str, Any]:
        return {
            "deviceName": device,
            "ebs": {
                "volumeSize": f"{size_gb}Gi",
                "volumeType": "gp3",
                "encrypted": True,
                "kmsKeyID": key_arn,
                "deleteOnTermination": True,
            },
        }

    if ami_alias.startswith("bottlerocket@"):
        return [
            volume("/dev/xvda", BOTTLEROCKET_OS_VOLUME_GB),
            volume("/dev/xvdb", data_volume_gb),
        ]
    return [volume("/dev/xvda", data_volume_gb)]


def node_pool_spec(spec: KarpenterSpec) -> dict[str, Any]:
    """The NodePool: which instances Karpenter may launch, and how far it may go."""
    return {
        "template": {
            "metadata": {"labels": {"enterprisehub.io/node-group": NODE_POOL}},
            "spec": {
                "nodeClassRef": {
                    "group": "karpenter.k8s.aws",
                    "kind": "EC2NodeClass",
                    "name": NODE_CLASS,
                },
                "requirements": [
                    {
                        "key": "node.kubernetes.io/instance-type",
                        "operator": "In",
                        "values": list(spec.instance_types),
                    },
                    {
                        "key": "karpenter.sh/capacity-type",
                        "operator": "In",
                        "values": list(spec.capacity_types),
                    },
                    {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]},
                ],
                # Nodes are replaced after 30 days, picking up new AMIs and patches.
                "expireAfter": "720h",
            },
        },
        "limits": {"cpu": str(spec.cpu_limit), "memory": f"{spec.memory_limit_gb}Gi"},
        "disruption": {
            "consolidationPolicy": "WhenEmptyOrUnderutilized",
            "consolidateAfter": "5m",
            # At most one node in ten is disrupted at a time, so PDBs can hold.
            "budgets": [{"nodes": "10%"}],
        },
    }
