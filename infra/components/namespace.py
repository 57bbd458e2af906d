"""A namespace that is isolated from its first moment: default-deny plus DNS.

:class:`IsolatedNamespace` creates a namespace *together with* its default-deny
(ingress and egress) policy and the DNS allowance every pod needs, so no
namespace of this stack can exist without isolation. The allow rules of each
namespace come from :mod:`infra.components.network_policy`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from infra import catalog
from infra.components import hardening
from infra.components.base import Component
from infra.components.network_policy import (
    KUBE_DNS_POD,
    PodSecurityLevel,
    in_namespace,
)


@dataclass(frozen=True, kw_only=True)
class IsolatedNamespaceArgs:
    """Inputs of :class:`IsolatedNamespace`."""

    #: The namespace's name (fixed, not auto-named: other policies select it by name).
    name: str
    #: Pod Security admission level enforced on the namespace.
    pod_security: PodSecurityLevel = "restricted"
    labels: Mapping[str, str] = field(default_factory=dict)


class IsolatedNamespace(Component[IsolatedNamespaceArgs]):
    """A namespace that denies all traffic except DNS until allow policies open it."""

    component_type = "enterprisehub:k8s:IsolatedNamespace"

    namespace_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: IsolatedNamespaceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(name, args, opts)
        namespace = k8s.core.v1.Namespace(
            f"{name}-namespace",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=args.name,
                labels={
                    **args.labels,
                    hardening.PART_OF_LABEL: catalog.PLATFORM,
                    "pod-security.kubernetes.io/enforce": args.pod_security,
                    "pod-security.kubernetes.io/warn": "restricted",
                    "pod-security.kubernetes.io/audit": "restricted",
                },
            ),
            opts=pulumi.ResourceOptions(parent=self),
        )
        ns_name = namespace.metadata.name
        scoped = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
        k8s.networking.v1.NetworkPolicy(
            f"{name}-default-deny",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="default-deny-all", namespace=ns_name),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(),
                policy_types=["Ingress", "Egress"],
            ),
            opts=scoped,
        )
        k8s.networking.v1.NetworkPolicy(
            f"{name}-allow-dns",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="allow-dns", namespace=ns_name),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(),
                policy_types=["Egress"],
                egress=[
                    k8s.networking.v1.NetworkPolicyEgressRuleArgs(
                        to=[in_namespace("kube-system", KUBE_DNS_POD)],
                        ports=[
                            k8s.networking.v1.NetworkPolicyPortArgs(protocol="UDP", port=53),
                            k8s.networking.v1.NetworkPolicyPortArgs(protocol="TCP", port=53),
                        ],
                    )
                ],
            ),
            opts=scoped,
        )
        self.namespace_name = ns_name
        self.register_outputs({"namespace_name": ns_name})
