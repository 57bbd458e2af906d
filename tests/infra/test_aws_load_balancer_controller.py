"""The edge's NLB on EKS comes from the AWS Load Balancer Controller, with a role held to it.

The reference for the role is the controller's own policy
(kubernetes-sigs/aws-load-balancer-controller ``docs/install/iam_policy.json``,
v2.14 and later): the actions it grants on the NLB path. An action the
controller calls and the role lacks is not a failed `pulumi up`, it is an edge
that never gets its load balancer (AccessDenied in the controller's log).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from infra.components.addons import chart_values
from infra.components.load_balancer_controller import (
    CLUSTER_TAG,
    READINESS_GATE_LABEL,
    SERVICE_ACCOUNT,
    controller_policy,
)
from infra.components.network_policy import ENVOY_READINESS_PORT
from infra.synth.mocks import ProgramRun

RELEASE = "kubernetes:helm.sh/v3:Release"
PREFIX = "enterprisehub-production-cluster-lb-controller"
#: What the reference policy grants for a Service's NLB (ALB, WAF, Shield,
#: Cognito and ACM left out: the edge is TCP pass-through to Envoy).
REFERENCE_NLB_ACTIONS = {
    "iam:CreateServiceLinkedRole",
    "ec2:DescribeAccountAttributes",
    "ec2:DescribeAddresses",
    "ec2:DescribeAvailabilityZones",
    "ec2:DescribeInternetGateways",
    "ec2:DescribeVpcs",
    "ec2:DescribeVpcPeeringConnections",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeInstances",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeTags",
    "ec2:GetCoipPoolUsage",
    "ec2:DescribeCoipPools",
    "ec2:GetSecurityGroupsForVpc",
    "ec2:DescribeIpamPools",
    "ec2:DescribeRouteTables",
    "elasticloadbalancing:DescribeLoadBalancers",
    "elasticloadbalancing:DescribeLoadBalancerAttributes",
    "elasticloadbalancing:DescribeListeners",
    "elasticloadbalancing:DescribeListenerCertificates",
    "elasticloadbalancing:DescribeSSLPolicies",
    "elasticloadbalancing:DescribeRules",
    "elasticloadbalancing:DescribeTargetGroups",
    "elasticloadbalancing:DescribeTargetGroupAttributes",
    "elasticloadbalancing:DescribeTargetHealth",
    "elasticloadbalancing:DescribeTags",
    "elasticloadbalancing:DescribeTrustStores",
    "elasticloadbalancing:DescribeListenerAttributes",
    "elasticloadbalancing:DescribeCapacityReservation",
    "ec2:AuthorizeSecurityGroupIngress",
    "ec2:RevokeSecurityGroupIngress",
    "ec2:CreateSecurityGroup",
    "ec2:CreateTags",
    "ec2:DeleteTags",
    "ec2:DeleteSecurityGroup",
    "elasticloadbalancing:CreateLoadBalancer",
    "elasticloadbalancing:CreateTargetGroup",
    "elasticloadbalancing:CreateListener",
    "elasticloadbalancing:DeleteListener",
    "elasticloadbalancing:AddTags",
    "elasticloadbalancing:RemoveTags",
    "elasticloadbalancing:ModifyLoadBalancerAttributes",
    "elasticloadbalancing:SetIpAddressType",
    "elasticloadbalancing:SetSecurityGroups",
    "elasticloadbalancing:SetSubnets",
    "elasticloadbalancing:DeleteLoadBalancer",
    "elasticloadbalancing:ModifyTargetGroup",
    "elasticloadbalancing:ModifyTargetGroupAttributes",
    "elasticloadbalancing:DeleteTargetGroup",
    "elasticloadbalancing:ModifyListenerAttributes",
    "elasticloadbalancing:ModifyCapacityReservation",
    "elasticloadbalancing:ModifyIpPools",
    "elasticloadbalancing:RegisterTargets",
    "elasticloadbalancing:DeregisterTargets",
    "elasticloadbalancing:ModifyListener",
}
#: IAM's quota on the inline policies of one role, in characters.
INLINE_POLICY_QUOTA = 10_240
DEPLOYING = Path(__file__).resolve().parents[2] / "docs" / "deploying.md"
#: The descriptions EKS's legacy controller gives the rules it adds to the nodes'
#: security group for an NLB (kubernetes/cloud-provider-aws, pkg/providers/v1/aws.go):
#: client traffic and health checks (each followed by the NLB's name), path MTU discovery.
LEGACY_NLB_RULES = (
    "kubernetes.io/rule/nlb/client=",
    "kubernetes.io/rule/nlb/health=",
    "kubernetes.io/rule/nlb/mtu",
)


@pytest.fixture(scope="module")
def production(stack_run: Callable[[str], ProgramRun]) -> ProgramRun:
    return stack_run("production")


@pytest.fixture(scope="module")
def policy(production: ProgramRun) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(
        production.one("aws:iam/rolePolicy:RolePolicy", f"{PREFIX}-policy").inputs["policy"]
    )
    return document


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def test_the_role_may_call_what_the_reference_grants_for_an_nlb(policy: dict[str, Any]) -> None:
    granted = {a for s in policy["Statement"] for a in _actions(s)}
    assert not REFERENCE_NLB_ACTIONS - granted
    # Nothing beyond the NLB path: no ALB, WAF, Shield or certificate rights.
    assert not {a for a in granted if a.split(":")[0] in {"wafv2", "shield", "acm"}}
    assert all(s["Effect"] == "Allow" for s in policy["Statement"])


def test_every_write_is_held_to_this_cluster(
    production: ProgramRun, policy: dict[str, Any]
) -> None:
    eks = production.one("aws:eks/cluster:Cluster")
    cluster_group = eks.outputs["vpcConfig"]["clusterSecurityGroupId"]
    vpc = production.one("aws:ec2/vpc:Vpc").id
    # Calls that change a resource without a tag condition, and where they may land.
    untagged = {
        "CreateTheLoadBalancingServiceLinkedRole",
        "CreateSecurityGroupsInTheVpc",
        "AdmitTheLoadBalancerToTheNodes",
        "ManageListeners",
        "TagListeners",
    }
    for statement in policy["Statement"]:
        sid = statement["Sid"]
        if sid == "Read":
            assert all(":Describe" in a or ":Get" in a for a in _actions(statement))
            continue
        if sid in untagged:
            continue
        condition = json.dumps(statement["Condition"])
        assert f'"{CLUSTER_TAG}": "enterprisehub-production"' in condition.replace(
            "aws:ResourceTag/", ""
        ).replace("aws:RequestTag/", ""), sid
    by_sid = {s["Sid"]: s for s in policy["Statement"]}
    assert by_sid["AdmitTheLoadBalancerToTheNodes"]["Resource"].endswith(
        f":security-group/{cluster_group}"
    )
    assert by_sid["CreateSecurityGroupsInTheVpc"]["Resource"].endswith(f":vpc/{vpc}")
    assert by_sid["CreateTheLoadBalancingServiceLinkedRole"]["Condition"] == {
        "StringEquals": {"iam:AWSServiceName": "elasticloadbalancing.amazonaws.com"}
    }
    # Retagging may not hand a resource to another cluster.
    for sid in ("RetagOwnSecurityGroups", "RetagOwnLoadBalancers"):
        assert by_sid[sid]["Condition"]["Null"] == {f"aws:RequestTag/{CLUSTER_TAG}": "true"}


def test_the_policy_fits_the_inline_quota() -> None:
    document = controller_policy(
        partition="aws-us-gov",
        region="us-gov-west-1",
        cluster_name="enterprisehub-production",
        vpc_id="vpc-0123456789abcdef0",
        cluster_security_group_id="sg-0123456789abcdef0",
    )
    assert len(document) < INLINE_POLICY_QUOTA
    assert "arn:aws-us-gov:ec2:us-gov-west-1:*:vpc/vpc-0123456789abcdef0" in document


def test_only_the_controllers_service_account_may_assume_the_role(production: ProgramRun) -> None:
    role = production.one("aws:iam/role:Role", f"{PREFIX}-role")
    [statement] = json.loads(role.inputs["assumeRolePolicy"])["Statement"]
    [subject] = [v for k, v in statement["Condition"]["StringEquals"].items() if k.endswith(":sub")]
    assert subject == f"system:serviceaccount:kube-system:{SERVICE_ACCOUNT}"


def test_the_chart_is_told_its_cluster_and_leaves_other_services_alone(
    production: ProgramRun,
) -> None:
    release = production.one(RELEASE, f"{PREFIX}-chart")
    values = release.inputs["values"]
    assert values["clusterName"] == "enterprisehub-production"
    assert values["vpcId"] == production.one("aws:ec2/vpc:Vpc").id
    assert values["region"] == "us-east-1"
    role = production.one("aws:iam/role:Role", f"{PREFIX}-role")
    assert (
        values["serviceAccount"]["annotations"]["eks.amazonaws.com/role-arn"]
        == (role.outputs["arn"])
    )
    assert values["enableServiceMutatorWebhook"] is False
    assert release.inputs["namespace"] == "kube-system"
    assert production.one("aws:iam/rolePolicy:RolePolicy", f"{PREFIX}-policy").urn in (
        release.dependencies
    )


def test_the_two_controllers_spread_over_zones(production: ProgramRun) -> None:
    # Its pod webhook fails closed for the edge's namespace: both replicas in one
    # zone would freeze every proxy rollout while that zone is out.
    values = production.one(RELEASE, f"{PREFIX}-chart").inputs["values"]
    assert values["replicaCount"] == 2
    [spread] = values["topologySpreadConstraints"]
    assert spread["topologyKey"] == "topology.kubernetes.io/zone"
    # The chart's own selector labels, or the constraint counts no pod at all.
    assert spread["labelSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "aws-load-balancer-controller",
        "app.kubernetes.io/instance": "aws-load-balancer-controller",
    }


def test_the_controller_leaves_the_gateway_api_to_envoy_gateway(production: ProgramRun) -> None:
    # v3 starts its ALB and NLB Gateway controllers (and ListenerSet support) when it
    # finds the Gateway API CRDs at start-up, which Envoy Gateway installs; it skips
    # that probe only when all three gates are set (aws-load-balancer-controller#4721).
    values = production.one(RELEASE, f"{PREFIX}-chart").inputs["values"]
    assert values["controllerConfig"]["featureGates"] == {
        "ALBGatewayAPI": False,
        "NLBGatewayAPI": False,
        "GatewayListenerSet": False,
    }


def test_the_controller_comes_before_every_workload_and_goes_after_them(
    production: ProgramRun,
) -> None:
    # Workloads use this provider: on `up` they wait for the controller (its pod
    # webhook answers before the proxies' namespace gets pods); on `destroy` they
    # go first, so the controller is still there to delete the NLB.
    workloads = production.one(
        "pulumi:providers:kubernetes", "enterprisehub-production-cluster-k8s"
    )
    release = production.one(RELEASE, f"{PREFIX}-chart")
    component = production.one("enterprisehub:aws:LoadBalancerController")
    assert {release.urn, component.urn} & set(workloads.dependencies)
    system = production.one(
        "pulumi:providers:kubernetes", "enterprisehub-production-cluster-k8s-system"
    )
    assert release.provider is not None
    assert release.provider.startswith(system.urn)


@pytest.mark.parametrize("stack", ["dev", "staging", "production"])
def test_the_edge_asks_for_the_controllers_nlb_with_ip_targets(
    stack_run: Callable[[str], ProgramRun], stack: str
) -> None:
    service = chart_values("envoy-gateway", stack, stem="proxy")["provider"]["kubernetes"][
        "envoyService"
    ]
    annotations = service["annotations"]
    prefix = "service.beta.kubernetes.io/aws-load-balancer-"
    assert annotations[f"{prefix}type"] == "external"
    assert annotations[f"{prefix}nlb-target-type"] == "ip"
    assert annotations[f"{prefix}scheme"] == "internet-facing"
    assert "load_balancing.cross_zone.enabled=true" in annotations[f"{prefix}attributes"]
    assert "preserve_client_ip.enabled=true" in annotations[f"{prefix}target-group-attributes"]
    # The annotation the legacy controller read, and the new one ignores, is gone.
    assert f"{prefix}cross-zone-load-balancing-enabled" not in annotations
    # The NLB asks Envoy's readiness endpoint, which a draining proxy fails,
    # not merely whether the traffic port accepts (test_network_paths.py admits it).
    assert annotations[f"{prefix}healthcheck-protocol"] == "http"
    assert annotations[f"{prefix}healthcheck-port"] == str(ENVOY_READINESS_PORT)
    assert annotations[f"{prefix}healthcheck-path"] == "/ready"
    # Pod IP targets: no NodePort is opened on any node for the edge.
    assert service["allocateLoadBalancerNodePorts"] is False
    run = stack_run(stack)
    [edge] = [
        n
        for n in run.kubernetes_objects("Namespace")
        if n.inputs["metadata"]["name"] == "envoy-gateway-system"
    ]
    assert edge.inputs["metadata"]["labels"][READINESS_GATE_LABEL] == "enabled"
    assert run.of_type("enterprisehub:aws:LoadBalancerController")


def test_the_local_stack_has_no_controller_and_no_readiness_gate(
    stack_run: Callable[[str], ProgramRun],
) -> None:
    run = stack_run("local")
    assert not run.of_type("enterprisehub:aws:LoadBalancerController")
    labels = {
        n.inputs["metadata"]["name"]: n.inputs["metadata"]["labels"]
        for n in run.kubernetes_objects("Namespace")
    }
    assert READINESS_GATE_LABEL not in labels["envoy-gateway-system"]


def test_the_upgrade_steps_remove_what_the_legacy_nlb_left_behind() -> None:
    # Deleting the legacy NLB by hand skips the legacy controller's own clean-up,
    # which also revokes its rules on the nodes' security group (NodePorts open to
    # 0.0.0.0/0): the documented steps must revoke them too.
    doc = DEPLOYING.read_text(encoding="utf-8")
    section = doc[doc.index("### The edge's load balancer, and stacks deployed before it moved") :]
    section = section[: section.index("\n### ", 1)]
    [steps] = re.findall(r"```bash\n(.*?)```", section, re.S)
    subprocess.run(["bash", "-n"], input=steps, text=True, check=True)
    for command in (
        "aws elbv2 delete-load-balancer",
        "aws elbv2 delete-target-group",
        "aws ec2 revoke-security-group-ingress",
    ):
        assert command in steps
    # The target groups go once the NLB (and its listeners) is gone, not while
    # ELB still answers ResourceInUse for them.
    assert (
        steps.index("aws elbv2 delete-load-balancer")
        < steps.index("aws elbv2 wait load-balancers-deleted")
        < steps.index("aws elbv2 delete-target-group")
    )
    [prefix] = re.findall(r'starts_with\(Description \|\| `""`, `"([^"]+)"`\)', steps)
    # Every rule the legacy controller writes, and no rule of anything else.
    assert all(rule.startswith(prefix) for rule in LEGACY_NLB_RULES)
    assert prefix.startswith("kubernetes.io/rule/nlb/")
    # The load balancer of a Service, not whatever else carries the cluster's tag.
    assert '"Key=kubernetes.io/service-name"' in steps
