"""Public DNS on EKS: external-dns writing the edge's records into one Route 53 zone.

external-dns watches the Gateway API HTTPRoutes (and LoadBalancer Services) and
upserts a record for each route hostname, pointing at the address of the
Gateway the route is attached to: the first of the Gateway's
``status.addresses``, the load balancer's DNS name that the stack also exports
as ``edgeAddress`` (:mod:`infra.components.public_ingress`; a stack without a
hosted zone points its records at that output by hand). external-dns reads it
live, so a replaced load balancer is followed without a ``pulumi up``. Its
IAM role (IRSA, only ``kube-system/external-dns`` may assume it) may change
records in the stack's hosted zone and nowhere else; the zone-id filter keeps
the controller itself to that zone, and the TXT owner id marks the records this
stack owns, so two stacks sharing a zone never overwrite each other. The
policy is ``upsert-only``: a record is never deleted by the controller (a
removed hostname is cleaned up by hand, which is rare and safer than an
accidental wipe).

external-dns exits when a route type it watches is not served ("failed to
sync ... context deadline exceeded"), so its chart is installed after the one
that brings the Gateway API CRDs (``after``; Envoy Gateway's, in the
platform's add-ons): on a new cluster a release installed first would
crash-loop until Helm's wait timed out and failed the update.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra.components.addons import load_pins, pinned_release
from infra.components.base import AwsComponent
from infra.components.iam import irsa_role, policy_document

NAMESPACE: Final = "kube-system"
SERVICE_ACCOUNT: Final = "external-dns"


def route53_policy(partition: str, zone_id: str) -> str:
    """Record changes in one hosted zone; the listing calls external-dns needs to find it."""
    return policy_document(
        [
            {
                "Sid": "ChangeRecordsInTheStackZone",
                "Effect": "Allow",
                "Action": "route53:ChangeResourceRecordSets",
                "Resource": f"arn:{partition}:route53:::hostedzone/{zone_id}",
            },
            {
                "Sid": "ReadZones",
                "Effect": "Allow",
                "Action": [
                    "route53:ListHostedZones",
                    "route53:ListResourceRecordSets",
                    "route53:ListTagsForResources",
                ],
                "Resource": "*",
            },
        ]
    )


@dataclass(frozen=True, kw_only=True)
class ExternalDnsArgs:
    """Inputs of :class:`ExternalDns`."""

    hosted_zone_id: str
    #: Only names under these domains are managed.
    domains: Sequence[str]
    #: Marks this stack's records (TXT registry); the cluster's name.
    owner_id: str
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer_url: pulumi.Input[str]
    partition: str
    region: str
    #: The Kubernetes provider of the cluster, and the AWS provider of its role.
    provider: k8s.Provider
    aws_provider: aws.Provider | None = None
    #: What the chart waits for: at least the release installing the Gateway API CRDs.
    after: Sequence[pulumi.Resource] = ()
    tags: Mapping[str, str] = field(default_factory=dict)


class ExternalDns(AwsComponent[ExternalDnsArgs]):
    """external-dns with an IRSA role limited to one Route 53 zone."""

    component_type = "enterprisehub:aws:ExternalDns"

    role_arn: pulumi.Output[str]
    chart_version: str

    def __init__(
        self, name: str, args: ExternalDnsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(name, args, opts)
        role = irsa_role(
            f"{name}-role",
            oidc_provider_arn=args.oidc_provider_arn,
            oidc_issuer_url=args.oidc_issuer_url,
            namespace=NAMESPACE,
            service_account=SERVICE_ACCOUNT,
            purpose=f"zone {args.hosted_zone_id}",
            tags=self._tags,
            opts=pulumi.ResourceOptions(parent=self, provider=args.aws_provider),
        )
        permissions = aws.iam.RolePolicy(
            f"{name}-route53",
            role=role.id,
            policy=route53_policy(args.partition, args.hosted_zone_id),
            opts=pulumi.ResourceOptions(parent=role),
        )
        pin = load_pins(section="awsCharts")["external-dns"]
        pinned_release(
            f"{name}-chart",
            pin,
            cleanup_on_fail=True,
            values={
                "provider": {"name": "aws"},
                "env": [{"name": "AWS_DEFAULT_REGION", "value": args.region}],
                "serviceAccount": {
                    "name": SERVICE_ACCOUNT,
                    "annotations": {"eks.amazonaws.com/role-arn": role.arn},
                },
                # The edge is a Gateway (infra/components/public_ingress.py), not Ingresses.
                "sources": ["gateway-httproute", "service"],
                "domainFilters": list(args.domains),
                "policy": "upsert-only",
                "registry": "txt",
                "txtOwnerId": args.owner_id,
                "extraArgs": [f"--zone-id-filter={args.hosted_zone_id}"],
                "resources": {
                    "requests": {"cpu": "50m", "memory": "64Mi"},
                    "limits": {"memory": "128Mi"},
                },
            },
            opts=pulumi.ResourceOptions(
                parent=self, provider=args.provider, depends_on=[permissions, *args.after]
            ),
        )
        self.role_arn = role.arn
        self.chart_version = pin.version
        self.register_outputs({"role_arn": self.role_arn})
