"""The edge's load balancer on EKS: the AWS Load Balancer Controller and its IAM role.

The Envoy proxies' LoadBalancer Service (``charts/envoy-gateway/proxy-<env>.yaml``)
asks for ``aws-load-balancer-type: external``: this controller, not the cloud
provider's legacy service controller, makes its Network Load Balancer. EKS
documents the legacy one as receiving critical fixes only, and it ignores the
NLB attributes the edge needs (cross-zone balancing, cloud-provider-aws#168).
The controller registers the proxies' pod IPs as targets (no NodePort hop,
no rule opening node ports), and with the pod readiness gate on their
namespace a rolling update of the proxies waits until the NLB sees the new
pods healthy.

The chart is installed by :class:`~infra.components.cluster.EksCluster` with
the cluster's system provider, before anything the workloads' provider
creates: on ``pulumi up`` the controller (and its webhooks) is running before
the proxies' namespace gets pods, and on ``pulumi destroy`` it goes last, so
it is still there to delete the load balancer and lift its Service's
finalizer. The Service mutator webhook is off: Services that do not ask for
this controller stay with the cloud provider's, as before.

The role's policy is written for the one thing this platform asks of the
controller, an internet-facing NLB per LoadBalancer Service. It follows the
controller's reference policy (``docs/install/iam_policy.json`` of
kubernetes-sigs/aws-load-balancer-controller) for that path, without the ALB,
WAF, Shield and Cognito grants. Its writes are held to load balancers, target
groups and security groups tagged ``elbv2.k8s.aws/cluster`` with this cluster's
name, to this VPC, and to the rules the controller adds to the cluster security
group (where the nodes, and so the pod IPs, sit); listener writes are
unconditioned, as in the reference (which resource ELB checks for each is not
documented well enough to narrow them safely).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.components.addons import ChartPin, load_pins, pinned_release
from infra.components.base import AwsComponent
from infra.components.iam import irsa_role, policy_document

NAMESPACE: Final = "kube-system"
SERVICE_ACCOUNT: Final = "aws-load-balancer-controller"
#: The tag the controller puts on everything it creates, valued with the cluster's name.
CLUSTER_TAG: Final = "elbv2.k8s.aws/cluster"
#: Namespaces carrying this label get the controller's pod readiness gate.
READINESS_GATE_LABEL: Final = "elbv2.k8s.aws/pod-readiness-gate-inject"
#: The controller's Gateway API features (kubernetes-sigs/aws-load-balancer-controller#4721).
GATEWAY_API_FEATURE_GATES: Final = ("ALBGatewayAPI", "NLBGatewayAPI", "GatewayListenerSet")

#: Read calls take no resource ARN: granted on ``*``.
READ_ACTIONS: Final = (
    "ec2:DescribeAccountAttributes",
    "ec2:DescribeAddresses",
    "ec2:DescribeAvailabilityZones",
    "ec2:DescribeCoipPools",
    "ec2:DescribeInstances",
    "ec2:DescribeInternetGateways",
    "ec2:DescribeIpamPools",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeRouteTables",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeSubnets",
    "ec2:DescribeTags",
    "ec2:DescribeVpcPeeringConnections",
    "ec2:DescribeVpcs",
    "ec2:GetCoipPoolUsage",
    "ec2:GetSecurityGroupsForVpc",
    "elasticloadbalancing:DescribeCapacityReservation",
    "elasticloadbalancing:DescribeListenerAttributes",
    "elasticloadbalancing:DescribeListenerCertificates",
    "elasticloadbalancing:DescribeListeners",
    "elasticloadbalancing:DescribeLoadBalancerAttributes",
    "elasticloadbalancing:DescribeLoadBalancers",
    "elasticloadbalancing:DescribeRules",
    "elasticloadbalancing:DescribeSSLPolicies",
    "elasticloadbalancing:DescribeTags",
    "elasticloadbalancing:DescribeTargetGroupAttributes",
    "elasticloadbalancing:DescribeTargetGroups",
    "elasticloadbalancing:DescribeTargetHealth",
    "elasticloadbalancing:DescribeTrustStores",
)
#: Changes to a load balancer or target group the controller created (tagged for this cluster).
OWNED_LOAD_BALANCER_ACTIONS: Final = (
    "elasticloadbalancing:DeleteLoadBalancer",
    "elasticloadbalancing:DeleteTargetGroup",
    "elasticloadbalancing:DeregisterTargets",
    "elasticloadbalancing:ModifyCapacityReservation",
    "elasticloadbalancing:ModifyIpPools",
    "elasticloadbalancing:ModifyListenerAttributes",
    "elasticloadbalancing:ModifyLoadBalancerAttributes",
    "elasticloadbalancing:ModifyTargetGroup",
    "elasticloadbalancing:ModifyTargetGroupAttributes",
    "elasticloadbalancing:RegisterTargets",
    "elasticloadbalancing:SetIpAddressType",
    "elasticloadbalancing:SetSecurityGroups",
    "elasticloadbalancing:SetSubnets",
)


def controller_policy(
    *,
    partition: str,
    region: str,
    cluster_name: str,
    vpc_id: str,
    cluster_security_group_id: str,
) -> str:
    """What the controller may do to run this cluster's NLBs, and nothing of other clusters'."""
    ec2 = f"arn:{partition}:ec2:{region}:*"
    elb = f"arn:{partition}:elasticloadbalancing:{region}:*"
    ours = {f"aws:ResourceTag/{CLUSTER_TAG}": cluster_name}
    tagged_request = {f"aws:RequestTag/{CLUSTER_TAG}": cluster_name}
    # Retagging may not move a resource to another cluster (or untag it).
    keeps_owner = {f"aws:RequestTag/{CLUSTER_TAG}": "true"}
    load_balancers = [f"{elb}:loadbalancer/net/*/*", f"{elb}:targetgroup/*/*"]
    listeners = f"{elb}:listener/net/*/*/*"
    return policy_document(
        [
            {"Sid": "Read", "Effect": "Allow", "Action": list(READ_ACTIONS), "Resource": "*"},
            {
                "Sid": "CreateTheLoadBalancingServiceLinkedRole",
                "Effect": "Allow",
                "Action": "iam:CreateServiceLinkedRole",
                "Resource": "*",
                "Condition": {
                    "StringEquals": {"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"}
                },
            },
            # CreateSecurityGroup is authorized on the VPC and on the new group apart;
            # only the group's side carries the request's tags.
            {
                "Sid": "CreateSecurityGroupsInTheVpc",
                "Effect": "Allow",
                "Action": "ec2:CreateSecurityGroup",
                "Resource": f"{ec2}:vpc/{vpc_id}",
            },
            {
                "Sid": "CreateTaggedSecurityGroups",
                "Effect": "Allow",
                "Action": "ec2:CreateSecurityGroup",
                "Resource": f"{ec2}:security-group/*",
                "Condition": {"StringEquals": tagged_request},
            },
            {
                "Sid": "TagSecurityGroupsOnCreation",
                "Effect": "Allow",
                "Action": "ec2:CreateTags",
                "Resource": f"{ec2}:security-group/*",
                "Condition": {
                    "StringEquals": {"ec2:CreateAction": "CreateSecurityGroup", **tagged_request}
                },
            },
            {
                "Sid": "RetagOwnSecurityGroups",
                "Effect": "Allow",
                "Action": ["ec2:CreateTags", "ec2:DeleteTags"],
                "Resource": f"{ec2}:security-group/*",
                "Condition": {"StringEquals": ours, "Null": keeps_owner},
            },
            {
                "Sid": "ManageOwnSecurityGroups",
                "Effect": "Allow",
                "Action": [
                    "ec2:AuthorizeSecurityGroupIngress",
                    "ec2:RevokeSecurityGroupIngress",
                    "ec2:DeleteSecurityGroup",
                ],
                "Resource": f"{ec2}:security-group/*",
                "Condition": {"StringEquals": ours},
            },
            {
                # The load balancer's traffic to the pod IPs, admitted where they sit.
                "Sid": "AdmitTheLoadBalancerToTheNodes",
                "Effect": "Allow",
                "Action": ["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"],
                "Resource": f"{ec2}:security-group/{cluster_security_group_id}",
            },
            {
                "Sid": "CreateTaggedLoadBalancers",
                "Effect": "Allow",
                "Action": [
                    "elasticloadbalancing:CreateLoadBalancer",
                    "elasticloadbalancing:CreateTargetGroup",
                ],
                "Resource": "*",
                "Condition": {"StringEquals": tagged_request},
            },
            {
                "Sid": "TagLoadBalancersOnCreation",
                "Effect": "Allow",
                "Action": "elasticloadbalancing:AddTags",
                "Resource": load_balancers,
                "Condition": {
                    "StringEquals": {
                        "elasticloadbalancing:CreateAction": [
                            "CreateLoadBalancer",
                            "CreateTargetGroup",
                        ],
                        **tagged_request,
                    }
                },
            },
            {
                "Sid": "RetagOwnLoadBalancers",
                "Effect": "Allow",
                "Action": ["elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"],
                "Resource": load_balancers,
                "Condition": {"StringEquals": ours, "Null": keeps_owner},
            },
            {
                "Sid": "ManageOwnLoadBalancers",
                "Effect": "Allow",
                "Action": list(OWNED_LOAD_BALANCER_ACTIONS),
                "Resource": "*",
                "Condition": {"StringEquals": ours},
            },
            {
                # Unconditioned, as in the reference policy: CreateListener is authorized
                # on the load balancer, the others on the listener (which the controller
                # tags too, but no test here shows IAM honouring that tag for them).
                "Sid": "ManageListeners",
                "Effect": "Allow",
                "Action": [
                    "elasticloadbalancing:CreateListener",
                    "elasticloadbalancing:DeleteListener",
                    "elasticloadbalancing:ModifyListener",
                ],
                "Resource": "*",
            },
            {
                "Sid": "TagListeners",
                "Effect": "Allow",
                "Action": ["elasticloadbalancing:AddTags", "elasticloadbalancing:RemoveTags"],
                "Resource": listeners,
            },
        ],
        compact=True,
    )


@dataclass(frozen=True, kw_only=True)
class LoadBalancerControllerArgs:
    """Inputs of :class:`LoadBalancerController`."""

    cluster_name: str
    vpc_id: pulumi.Input[str]
    #: The EKS cluster security group: the nodes', where the targets' rules go.
    cluster_security_group_id: pulumi.Input[str]
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer_url: pulumi.Input[str]
    partition: str
    region: str
    #: The Kubernetes provider for cluster-level objects.
    provider: k8s.Provider
    #: What the chart must wait for (nodes to run on, the VPC CNI, CoreDNS).
    after: Sequence[pulumi.Resource] = ()
    tags: Mapping[str, str] = field(default_factory=dict)


class LoadBalancerController(AwsComponent[LoadBalancerControllerArgs]):
    """The AWS Load Balancer Controller with an IRSA role limited to this cluster's NLBs."""

    component_type = "enterprisehub:aws:LoadBalancerController"

    role_arn: pulumi.Output[str]
    chart_version: str

    def __init__(
        self,
        name: str,
        args: LoadBalancerControllerArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(name, args, opts)
        role = irsa_role(
            f"{name}-role",
            oidc_provider_arn=args.oidc_provider_arn,
            oidc_issuer_url=args.oidc_issuer_url,
            namespace=NAMESPACE,
            service_account=SERVICE_ACCOUNT,
            purpose=args.cluster_name,
            tags=self._tags,
            opts=pulumi.ResourceOptions(parent=self),
        )
        permissions = aws.iam.RolePolicy(
            f"{name}-policy",
            role=role.id,
            policy=pulumi.Output.all(args.vpc_id, args.cluster_security_group_id).apply(
                lambda ids: controller_policy(
                    partition=args.partition,
                    region=args.region,
                    cluster_name=args.cluster_name,
                    vpc_id=str(ids[0]),
                    cluster_security_group_id=str(ids[1]),
                )
            ),
            opts=pulumi.ResourceOptions(parent=role),
        )
        pin = load_pins(section="awsCharts")["aws-load-balancer-controller"]
        pinned_release(
            f"{name}-chart",
            pin,
            cleanup_on_fail=True,
            values=self._values(role, pin),
            opts=pulumi.ResourceOptions(
                parent=self, provider=args.provider, depends_on=[permissions, *args.after]
            ),
        )
        self.role_arn = role.arn
        self.chart_version = pin.version
        self.register_outputs({"role_arn": self.role_arn})

    def _values(self, role: aws.iam.Role, pin: ChartPin) -> dict[str, Any]:
        args = self._args
        return {
            "clusterName": args.cluster_name,
            # Given, not discovered: the nodes' instance metadata is out of the pods' reach.
            "region": args.region,
            "vpcId": args.vpc_id,
            "serviceAccount": {
                "name": SERVICE_ACCOUNT,
                "annotations": {"eks.amazonaws.com/role-arn": role.arn},
            },
            # Only Services that ask for this controller get it (the edge's does).
            "enableServiceMutatorWebhook": False,
            # v3 starts its own Gateway API controllers when it finds the Gateway API
            # CRDs at start-up, and Envoy Gateway installs them: a controller restarted
            # after Envoy Gateway would watch every Gateway and route. Off, so what it
            # runs does not depend on start order; it probes unless all three are set.
            "controllerConfig": {"featureGates": dict.fromkeys(GATEWAY_API_FEATURE_GATES, False)},
            # No Ingress objects here: the edge is a Gateway served by Envoy.
            "createIngressClassResource": False,
            # Two controllers (leader election); a drain never takes both. With the
            # readiness gate, its pod webhook (failing closed) admits every pod of
            # the edge's namespace: the two replicas go to different zones where
            # there are two, so one zone's outage does not freeze the edge's rollouts.
            "replicaCount": 2,
            "podDisruptionBudget": {"maxUnavailable": 1},
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    # The chart's selector labels (its name, the release's name).
                    "labelSelector": {
                        "matchLabels": {
                            "app.kubernetes.io/name": pin.chart,
                            "app.kubernetes.io/instance": pin.name,
                        }
                    },
                }
            ],
            "resources": {
                "requests": {"cpu": "50m", "memory": "128Mi"},
                "limits": {"memory": "256Mi"},
            },
        }
