"""Every policy, the types no policy needs to see, and each stack's policy config."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pulumi_policy import Policy

from policies import aws, kubernetes
from policies.common import ENFORCEMENT, ENVIRONMENTS, TARGETS

PACK_NAME = "enterprisehub"
CONFIG_DIR = Path(__file__).resolve().parent / "config"

POLICIES: list[Policy] = [*aws.POLICIES, *kubernetes.POLICIES]

#: Resource types no policy targets, each with the reason it needs none. The
#: coverage test fails for a type a stack declares that is in neither place.
EXEMPT: Mapping[str, str] = {
    "pulumi:providers:aws": "provider configuration; aws-required-tags reads its default tags",
    "pulumi:providers:kubernetes": "provider configuration, no cloud object",
    "random:index/randomPassword:RandomPassword": "only in the encrypted state; no cloud object",
    "random:index/randomId:RandomId": "only in the state (the final snapshot's suffix)",
    "aws:cloudwatch/eventTarget:EventTarget": "points an interruption rule at the queue; no data "
    "or exposure of its own (the queue is checked by sqs-queue-encrypted)",
    "aws:sqs/queuePolicy:QueuePolicy": "grants EventBridge sqs:SendMessage on the interruption "
    "queue only (infra/components/autoscaling.py); no data or exposure beyond that",
    "aws:eks/accessEntry:AccessEntry": "who may reach the API; the entries come from config only, "
    "asserted in tests/infra/test_aws_real_run.py",
    "kubernetes:karpenter.sh/v1:NodePool": "scheduling limits; capacity asserted in "
    "tests/infra/test_capacity.py",
    "aws:ec2/route:Route": "a route entry: not taggable, nothing to encrypt or expose on its own",
    "aws:ec2/routeTableAssociation:RouteTableAssociation": "links a subnet to a table; no settings",
    "aws:ecr/lifecyclePolicy:LifecyclePolicy": "expiry rules of a repository; no security setting",
    "aws:iam/rolePolicy:RolePolicy": "least privilege is asserted per role in "
    "tests/infra/test_aws_iam.py",
    "aws:iam/rolePolicyAttachment:RolePolicyAttachment": "AWS-managed policies for EKS, "
    "asserted in tests/infra/test_aws_cluster.py",
    "aws:kms/alias:Alias": "a name for a key; the key itself is checked by kms-key-rotation",
    "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration": "cost rules of a bucket "
    "already checked through its encryption, versioning, access block and policy",
    "aws:s3/bucketOwnershipControls:BucketOwnershipControls": "turns ACLs off; public access is "
    "checked by s3-bucket-public-access-blocked",
    "kubernetes:helm.sh/v3:Release": "a chart and values, not objects; values pinned and tested in "
    "tests/infra/test_addons.py",
    "kubernetes:cert-manager.io/v1:ClusterIssuer": "certificate issuer configuration; no workload",
    "kubernetes:monitoring.coreos.com/v1:ServiceMonitor": "scrape configuration; no workload",
    "kubernetes:monitoring.coreos.com/v1:PrometheusRule": "alerting and recording rules from "
    "alerts/rules/ (promtool-checked and unit-tested in tests/alerts); no workload",
    "kubernetes:core/v1:Secret": "holds secrets by design; values come from Pulumi secrets",
    "kubernetes:core/v1:Service": "ClusterIP services; exposure is through the ingress only",
    "kubernetes:core/v1:ServiceAccount": "identity only; token automount asserted in tests/infra",
    "kubernetes:rbac.authorization.k8s.io/v1:Role": "only the rollback handler's, with "
    "rollback.undoDeployments; its exact rules (named Deployments, no wildcard) asserted in "
    "tests/infra/test_rollback_handler.py",
    "kubernetes:rbac.authorization.k8s.io/v1:RoleBinding": "only the rollback handler's Role to "
    "its own ServiceAccount, asserted in tests/infra/test_rollback_handler.py",
    "kubernetes:gateway.networking.k8s.io/v1:Gateway": "the public edge's listeners; TLS on "
    "every HTTPS listener asserted in tests/infra/test_public_ingress.py",
    "kubernetes:gateway.networking.k8s.io/v1:HTTPRoute": "routes to ClusterIP services; backends "
    "asserted in tests/infra/test_manifest_references.py",
    "kubernetes:gateway.networking.k8s.io/v1:GatewayClass": "names the edge's controller and "
    "proxy parameters; no workload",
    "kubernetes:gateway.envoyproxy.io/v1alpha1:EnvoyProxy": "how the edge's proxies are exposed; "
    "values tested in tests/infra/test_addons.py",
    "kubernetes:gateway.envoyproxy.io/v1alpha1:BackendTrafficPolicy": "cookie affinity of the "
    "dashboards' route; no workload",
}


def is_exempt(resource_type: str, custom: bool) -> str | None:
    """Why no policy needs to look at a type, or None."""
    if not custom:
        return "a component: it has no inputs of its own, its children are checked"
    return EXEMPT.get(resource_type)


def targeted(resource_type: str) -> list[str]:
    """The policies that look at a type."""
    return sorted(name for name, types in TARGETS.items() if resource_type in types)


def environment_of(stack: str) -> str:
    """Stacks are named after their environment; anything else is treated as dev."""
    return stack if stack in ENVIRONMENTS else "dev"


def policy_config(stack: str) -> dict[str, Any]:
    """The `--policy-pack-config` document for a stack: enforcement and environment."""
    env = environment_of(stack)
    config: dict[str, Any] = {"all": ENFORCEMENT[env]}
    for policy in POLICIES:
        config[policy.name] = {"enforcementLevel": ENFORCEMENT[env], "environment": env}
    return config


def config_path(stack: str) -> Path:
    """Where the committed policy config of a stack lives."""
    return CONFIG_DIR / f"{stack}.json"


def render_config(stack: str) -> str:
    """The committed file's exact text."""
    return json.dumps(policy_config(stack), indent=2, sort_keys=True) + "\n"


def write_configs(stacks: tuple[str, ...] = ENVIRONMENTS) -> list[Path]:
    """Regenerate policies/config/<stack>.json."""
    CONFIG_DIR.mkdir(exist_ok=True)
    written = []
    for stack in stacks:
        path = config_path(stack)
        path.write_text(render_config(stack))
        written.append(path)
    return written


def uncovered(document: Mapping[str, Any]) -> dict[str, str]:
    """Types a synthesis declares that no policy targets and no exemption explains.

    Maps each such type to the first URN declaring it, so the failure message
    points at the resource to write a policy (or an exemption) for.
    """
    missing: dict[str, str] = {}
    for resource in document.get("resources", []):
        rtype = resource["type"]
        if targeted(rtype) or is_exempt(rtype, bool(resource.get("custom", True))):
            continue
        missing.setdefault(rtype, resource["urn"])
    return dict(sorted(missing.items()))
