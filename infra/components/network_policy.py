"""Network isolation: default-deny per namespace, then allow exactly what the platform needs.

Three components:

* :class:`IsolatedNamespace` creates a namespace *together with* its
  default-deny (ingress and egress) policy and the DNS allowance every pod
  needs, so no namespace of this stack can exist without isolation.
* :class:`PlatformNetworkPolicies` opens the application namespace's traffic:
  ingress controller -> services and dashboards, Prometheus -> metrics ports,
  workloads -> Postgres/Redis (in-cluster pods on ``local``, the VPC's private
  subnets on AWS), object storage, and HTTPS to the external APIs each service
  calls (from the catalog's ``egress``).
* :class:`AddonNetworkPolicies` does the same for the third-party namespaces
  (ingress-nginx, cert-manager, monitoring).

**FQDNs.** A Kubernetes NetworkPolicy matches IP blocks, never hostnames. Egress
to ``api.anthropic.com`` or the CRM is therefore allowed to the CIDRs given in
stack config (``egress.<target>.cidrs``): Anthropic publishes its ranges; the
CRM does not, so its default is the public internet on 443 with every private,
link-local and shared range carved out by ``except`` (that keeps the VPC, the
node metadata endpoint 169.254.169.254 and other tenants' pods out of reach).
Pinning egress to a hostname needs a CNI with FQDN policies (Cilium's
``toFQDNs``, Calico Enterprise's domain sets) or an egress proxy; it is not
expressible here and is recorded as a known limit rather than left silent.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

import pulumi
import pulumi_kubernetes as k8s

from infra import catalog
from infra.components import hardening

#: Ranges never reachable through a "public internet" egress rule.
NON_PUBLIC_RANGES: Final = (
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",  # carrier-grade NAT; EKS custom networking and some CNIs use it
    "169.254.0.0/16",  # link-local, including the instance metadata endpoint
    "127.0.0.0/8",
)
#: Any public IPv4 address.
PUBLIC_INTERNET: Final = ("0.0.0.0/0",)

#: Labels of the pods other namespaces' policies refer to (chart defaults).
INGRESS_CONTROLLER_POD: Final = {"app.kubernetes.io/name": "ingress-nginx"}
PROMETHEUS_POD: Final = {"app.kubernetes.io/name": "prometheus"}
KUBE_DNS_POD: Final = {"k8s-app": "kube-dns"}
GRAFANA_POD: Final = {"app.kubernetes.io/name": "grafana"}
GRAFANA_PORT: Final = 3000
#: cert-manager labels the HTTP-01 solver pods it starts in the Ingress's namespace.
ACME_SOLVER_POD: Final = {"acme.cert-manager.io/http01-solver": "true"}
ACME_SOLVER_PORT: Final = 8089

#: Labels of the in-cluster data stores (see datastores.py).
POSTGRES_POD: Final = {hardening.NAME_LABEL: "postgres"}
REDIS_POD: Final = {hardening.NAME_LABEL: "redis"}
OBJECT_STORAGE_POD: Final = {hardening.NAME_LABEL: "minio"}
OBJECT_STORAGE_PORT: Final = 9000

PodSecurityLevel = Literal["restricted", "baseline", "privileged"]


class ExternalEgress(Protocol):
    """An external API's address ranges (``config.EgressConfig`` satisfies it)."""

    @property
    def cidrs(self) -> Sequence[str]:
        """IPv4 ranges of the API."""
        ...

    @property
    def port(self) -> int:
        """TCP port (443)."""
        ...


# --------------------------------------------------------------------------- helpers


def _selector(labels: Mapping[str, str]) -> k8s.meta.v1.LabelSelectorArgs:
    return k8s.meta.v1.LabelSelectorArgs(match_labels=dict(labels))


def _in_namespace(
    namespace: pulumi.Input[str], pods: Mapping[str, str] | None = None
) -> k8s.networking.v1.NetworkPolicyPeerArgs:
    """Pods (all, or those with ``pods`` labels) of one namespace, by its automatic label."""
    return k8s.networking.v1.NetworkPolicyPeerArgs(
        namespace_selector=k8s.meta.v1.LabelSelectorArgs(
            match_labels={hardening.NAMESPACE_NAME_LABEL: namespace}
        ),
        pod_selector=_selector(pods) if pods is not None else None,
    )


def _pods(labels: Mapping[str, str]) -> k8s.networking.v1.NetworkPolicyPeerArgs:
    """Pods with ``labels`` in the policy's own namespace."""
    return k8s.networking.v1.NetworkPolicyPeerArgs(pod_selector=_selector(labels))


def _components(*components: str) -> k8s.networking.v1.NetworkPolicyPeerArgs:
    """Platform pods of the given components in the policy's own namespace."""
    return k8s.networking.v1.NetworkPolicyPeerArgs(
        pod_selector=k8s.meta.v1.LabelSelectorArgs(
            match_labels={hardening.PART_OF_LABEL: catalog.PLATFORM},
            match_expressions=[
                k8s.meta.v1.LabelSelectorRequirementArgs(
                    key=hardening.COMPONENT_LABEL, operator="In", values=list(components)
                )
            ],
        )
    )


def ip_blocks(cidrs: Iterable[str]) -> list[k8s.networking.v1.NetworkPolicyPeerArgs]:
    """IP-block peers; a block that contains non-public ranges gets them as ``except``."""
    peers = []
    for cidr in cidrs:
        network = ipaddress.ip_network(cidr, strict=False)
        carve = [
            private
            for private in NON_PUBLIC_RANGES
            if ipaddress.ip_network(private).subnet_of(network)  # type: ignore[arg-type]
            and ipaddress.ip_network(private) != network
        ]
        peers.append(
            k8s.networking.v1.NetworkPolicyPeerArgs(
                ip_block=k8s.networking.v1.IPBlockArgs(cidr=str(network), except_=carve or None)
            )
        )
    return peers


def _tcp(*ports: int | str) -> list[k8s.networking.v1.NetworkPolicyPortArgs]:
    return [k8s.networking.v1.NetworkPolicyPortArgs(protocol="TCP", port=port) for port in ports]


def _ingress(
    peers: Sequence[k8s.networking.v1.NetworkPolicyPeerArgs], ports: Sequence[int | str]
) -> k8s.networking.v1.NetworkPolicyIngressRuleArgs:
    return k8s.networking.v1.NetworkPolicyIngressRuleArgs(from_=list(peers), ports=_tcp(*ports))


def _egress(
    peers: pulumi.Input[Sequence[pulumi.Input[k8s.networking.v1.NetworkPolicyPeerArgs]]],
    ports: Sequence[int | str],
) -> k8s.networking.v1.NetworkPolicyEgressRuleArgs:
    return k8s.networking.v1.NetworkPolicyEgressRuleArgs(to=peers, ports=_tcp(*ports))


def _policy(
    parent: pulumi.Resource,
    logical: str,
    *,
    name: str,
    namespace: pulumi.Input[str],
    pods: k8s.meta.v1.LabelSelectorArgs,
    ingress: Sequence[k8s.networking.v1.NetworkPolicyIngressRuleArgs] = (),
    egress: Sequence[k8s.networking.v1.NetworkPolicyEgressRuleArgs] = (),
) -> k8s.networking.v1.NetworkPolicy:
    """An allow policy; ``policyTypes`` lists only the directions it opens."""
    types = [kind for kind, rules in (("Ingress", ingress), ("Egress", egress)) if rules]
    return k8s.networking.v1.NetworkPolicy(
        logical,
        metadata=k8s.meta.v1.ObjectMetaArgs(
            name=name,
            namespace=namespace,
            labels={hardening.PART_OF_LABEL: catalog.PLATFORM},
        ),
        spec=k8s.networking.v1.NetworkPolicySpecArgs(
            pod_selector=pods,
            policy_types=types,
            ingress=list(ingress) or None,
            egress=list(egress) or None,
        ),
        opts=pulumi.ResourceOptions(parent=parent),
    )


# --------------------------------------------------------------------------- namespaces


@dataclass(frozen=True, kw_only=True)
class IsolatedNamespaceArgs:
    """Inputs of :class:`IsolatedNamespace`."""

    #: The namespace's name (fixed, not auto-named: other policies select it by name).
    name: str
    #: Pod Security admission level enforced on the namespace.
    pod_security: PodSecurityLevel = "restricted"
    labels: Mapping[str, str] = field(default_factory=dict)


class IsolatedNamespace(pulumi.ComponentResource):
    """A namespace that denies all traffic except DNS until allow policies open it."""

    namespace_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: IsolatedNamespaceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("enterprisehub:k8s:IsolatedNamespace", name, None, opts)
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
                        to=[_in_namespace("kube-system", KUBE_DNS_POD)],
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


# --------------------------------------------------------------------------- platform


@dataclass(frozen=True, kw_only=True)
class PlatformNetworkPoliciesArgs:
    """Inputs of :class:`PlatformNetworkPolicies`.

    Exactly one way to reach the data stores applies: ``in_cluster_datastores``
    (``local``: Postgres, Redis and MinIO pods of ``datastore_namespace``) or
    ``datastore_cidrs`` (AWS: the private subnets that hold RDS and
    ElastiCache). On AWS, object storage and the IRSA token exchange are AWS
    APIs reached over HTTPS (``aws_api_cidrs``).
    """

    namespace: pulumi.Input[str]
    services: Sequence[catalog.ServiceSpec]
    #: External APIs by target (``config.StackConfig.egress``).
    egress: Mapping[catalog.EgressTarget, ExternalEgress]
    ingress_namespace: str = "ingress-nginx"
    monitoring_namespace: str = "monitoring"
    #: Whether the stack runs the dashboards (``catalog.DASHBOARDS_SHIPPED``); a policy
    #: for pods that do not exist is a silent no-op, so none is declared without them.
    dashboards: bool = True
    dashboards_name: str = "dashboards"
    dashboards_port: int = 8501
    #: Whether cert-manager solves ACME HTTP-01 challenges (a letsencrypt issuer);
    #: with a self-signed issuer no solver pod ever exists to admit traffic to.
    acme_http01_solver: bool = True
    #: Name labels of the Jobs that write to object storage (jobs.py, datastores.py).
    object_storage_jobs: Sequence[str] = ("model-publish", "bucket-init")
    in_cluster_datastores: bool = False
    #: Where the in-cluster stores run; None means ``namespace``.
    datastore_namespace: str | None = None
    datastore_cidrs: pulumi.Input[Sequence[str]] = field(default_factory=tuple)
    aws_api_cidrs: Sequence[str] = PUBLIC_INTERNET


class PlatformNetworkPolicies(pulumi.ComponentResource):
    """The allow rules of the application namespace (and of the local data stores)."""

    policy_names: pulumi.Output[list[str]]

    def __init__(
        self,
        name: str,
        args: PlatformNetworkPoliciesArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        _validate_platform(args)
        super().__init__("enterprisehub:k8s:PlatformNetworkPolicies", name, None, opts)
        ns = args.namespace
        from_ingress = _in_namespace(args.ingress_namespace, INGRESS_CONTROLLER_POD)
        from_prometheus = _in_namespace(args.monitoring_namespace, PROMETHEUS_POD)
        data = self._datastore_egress(args)
        policies: list[k8s.networking.v1.NetworkPolicy] = []

        for spec in args.services:
            egress = [data["postgres"], data["redis"]]
            if spec.buckets:
                egress.append(data["objects"])
            for target in sorted(spec.egress):
                endpoint = args.egress[target]
                egress.append(_egress(ip_blocks(endpoint.cidrs), [endpoint.port]))
            policies.append(
                _policy(
                    self,
                    f"{name}-{spec.name}",
                    name=spec.name,
                    namespace=ns,
                    pods=_selector(hardening.selector_labels(spec.name)),
                    # The API and /metrics share the service port.
                    ingress=[_ingress([from_ingress, from_prometheus], [spec.port])],
                    egress=egress,
                )
            )

        if args.dashboards:
            policies.append(
                _policy(
                    self,
                    f"{name}-dashboards",
                    name=args.dashboards_name,
                    namespace=ns,
                    pods=_selector(hardening.selector_labels(args.dashboards_name)),
                    ingress=[_ingress([from_ingress], [args.dashboards_port])],
                    # The ROI dashboard reads stored rows only (Postgres); Redis for its cache.
                    egress=[data["postgres"], data["redis"]],
                )
            )
        policies.append(
            _policy(
                self,
                f"{name}-jobs",
                name="jobs",
                namespace=ns,
                pods=k8s.meta.v1.LabelSelectorArgs(
                    match_labels={
                        hardening.PART_OF_LABEL: catalog.PLATFORM,
                        hardening.COMPONENT_LABEL: hardening.COMPONENT_JOB,
                    }
                ),
                egress=[data["postgres"], data["redis"]],
            )
        )
        policies.append(
            _policy(
                self,
                f"{name}-object-writers",
                name="object-storage-writers",
                namespace=ns,
                pods=k8s.meta.v1.LabelSelectorArgs(
                    match_labels={hardening.PART_OF_LABEL: catalog.PLATFORM},
                    match_expressions=[
                        k8s.meta.v1.LabelSelectorRequirementArgs(
                            key=hardening.NAME_LABEL,
                            operator="In",
                            values=list(args.object_storage_jobs),
                        )
                    ],
                ),
                egress=[data["objects"]],
            )
        )
        if args.acme_http01_solver:
            policies.append(
                _policy(
                    self,
                    f"{name}-acme-solver",
                    name="acme-http01-solver",
                    namespace=ns,
                    pods=_selector(ACME_SOLVER_POD),
                    ingress=[_ingress([from_ingress], [ACME_SOLVER_PORT])],
                )
            )
        if args.in_cluster_datastores:
            policies.extend(self._datastore_ingress(name, args))

        self.policy_names = pulumi.Output.all(*(p.metadata.name for p in policies)).apply(list)
        self.register_outputs({"policy_names": self.policy_names})

    @staticmethod
    def _datastore_egress(
        args: PlatformNetworkPoliciesArgs,
    ) -> dict[str, k8s.networking.v1.NetworkPolicyEgressRuleArgs]:
        """Egress rules to Postgres, Redis and object storage for this stack's kind."""
        if args.in_cluster_datastores:
            store_ns = args.datastore_namespace

            def peer(pods: Mapping[str, str]) -> k8s.networking.v1.NetworkPolicyPeerArgs:
                return _in_namespace(store_ns, pods) if store_ns else _pods(pods)

            return {
                "postgres": _egress([peer(POSTGRES_POD)], [catalog.POSTGRES_PORT]),
                "redis": _egress([peer(REDIS_POD)], [catalog.REDIS_PORT]),
                "objects": _egress([peer(OBJECT_STORAGE_POD)], [OBJECT_STORAGE_PORT]),
            }
        private = pulumi.Output.from_input(args.datastore_cidrs).apply(
            lambda cidrs: ip_blocks(cidrs)
        )
        return {
            "postgres": _egress(private, [catalog.POSTGRES_PORT]),
            "redis": _egress(private, [catalog.REDIS_PORT]),
            # S3 and STS (the IRSA token exchange) are public AWS endpoints on 443.
            "objects": _egress(ip_blocks(args.aws_api_cidrs), [443]),
        }

    def _datastore_ingress(
        self, name: str, args: PlatformNetworkPoliciesArgs
    ) -> list[k8s.networking.v1.NetworkPolicy]:
        """Local stack: who may connect to the in-cluster Postgres, Redis and MinIO."""
        store_ns = args.datastore_namespace or args.namespace

        def clients(*components: str) -> k8s.networking.v1.NetworkPolicyPeerArgs:
            peer = _components(*components)
            if args.datastore_namespace:
                peer.namespace_selector = k8s.meta.v1.LabelSelectorArgs(
                    match_labels={hardening.NAMESPACE_NAME_LABEL: args.namespace}
                )
            return peer

        db_clients = clients(
            hardening.COMPONENT_API, hardening.COMPONENT_JOB, hardening.COMPONENT_DASHBOARD
        )
        return [
            _policy(
                self,
                f"{name}-postgres",
                name="postgres",
                namespace=store_ns,
                pods=_selector(POSTGRES_POD),
                ingress=[_ingress([db_clients], [catalog.POSTGRES_PORT])],
            ),
            _policy(
                self,
                f"{name}-redis",
                name="redis",
                namespace=store_ns,
                pods=_selector(REDIS_POD),
                ingress=[_ingress([db_clients], [catalog.REDIS_PORT])],
            ),
            _policy(
                self,
                f"{name}-minio",
                name="minio",
                namespace=store_ns,
                pods=_selector(OBJECT_STORAGE_POD),
                ingress=[
                    _ingress(
                        [clients(hardening.COMPONENT_API, hardening.COMPONENT_JOB)],
                        [OBJECT_STORAGE_PORT],
                    )
                ],
            ),
        ]


def _validate_platform(args: PlatformNetworkPoliciesArgs) -> None:
    owner = "PlatformNetworkPolicies"
    has_cidrs = not isinstance(args.datastore_cidrs, Sequence) or bool(args.datastore_cidrs)
    if args.in_cluster_datastores == has_cidrs:
        raise ValueError(
            f"{owner}: give either in_cluster_datastores=True (local) or datastore_cidrs "
            "(AWS private subnets), not both and not neither"
        )
    needed = {target for spec in args.services for target in spec.egress}
    missing = sorted(str(target) for target in needed if target not in args.egress)
    if missing:
        raise ValueError(f"{owner}: no egress CIDRs configured for {', '.join(missing)}")


# --------------------------------------------------------------------------- add-ons


@dataclass(frozen=True, kw_only=True)
class AddonNetworkPoliciesArgs:
    """Inputs of :class:`AddonNetworkPolicies`: the add-on namespaces and who they serve.

    Some traffic of cluster add-ons has no pod or namespace to select: the API
    server calling admission webhooks, controllers calling the API server,
    Prometheus scraping kubelets and node exporters on node IPs. Those rules
    use ``cluster_cidrs`` (default: any address), restricted to the exact ports.
    """

    ingress_namespace: str
    cert_manager_namespace: str
    monitoring_namespace: str
    #: Namespaces whose workloads the controller proxies to and Prometheus scrapes.
    app_namespaces: Sequence[pulumi.Input[str]]
    #: Where the API server and nodes live (the VPC CIDR on AWS).
    cluster_cidrs: Sequence[str] = ("0.0.0.0/0",)


class AddonNetworkPolicies(pulumi.ComponentResource):
    """Allow rules for ingress-nginx, cert-manager and the monitoring stack."""

    def __init__(
        self,
        name: str,
        args: AddonNetworkPoliciesArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("enterprisehub:k8s:AddonNetworkPolicies", name, None, opts)
        everything = k8s.meta.v1.LabelSelectorArgs()
        cluster = [
            k8s.networking.v1.NetworkPolicyPeerArgs(
                ip_block=k8s.networking.v1.IPBlockArgs(cidr=cidr)
            )
            for cidr in args.cluster_cidrs
        ]

        # A rule without peers matches every source/destination, pods included
        # (an ipBlock of 0.0.0.0/0 may not match pod IPs, depending on the CNI).
        def any_peer_ingress(*ports: int) -> k8s.networking.v1.NetworkPolicyIngressRuleArgs:
            return k8s.networking.v1.NetworkPolicyIngressRuleArgs(ports=_tcp(*ports))

        def any_peer_egress(*ports: int) -> k8s.networking.v1.NetworkPolicyEgressRuleArgs:
            return k8s.networking.v1.NetworkPolicyEgressRuleArgs(ports=_tcp(*ports) or None)

        apps = [_in_namespace(ns) for ns in args.app_namespaces]
        prometheus = _in_namespace(args.monitoring_namespace, PROMETHEUS_POD)

        # ingress-nginx: the public entry point. 80/443 from anywhere, the admission
        # webhook (8443) from the API server, metrics (10254) for Prometheus; out to
        # the application namespaces (any port the Ingresses name) and the API server.
        _policy(
            self,
            f"{name}-ingress-nginx",
            name="ingress-nginx",
            namespace=args.ingress_namespace,
            pods=everything,
            ingress=[
                any_peer_ingress(80, 443),
                _ingress(cluster, [8443]),
                _ingress([prometheus], [10254]),
            ],
            egress=[
                k8s.networking.v1.NetworkPolicyEgressRuleArgs(to=apps),
                _egress([_in_namespace(args.monitoring_namespace, GRAFANA_POD)], [GRAFANA_PORT]),
                _egress(cluster, [443, 6443]),
            ],
        )
        # cert-manager: its webhook (10250) from the API server, metrics (9402);
        # out to the ACME server and the API server (443) and to the public
        # ingress (80) for the HTTP-01 self-check.
        _policy(
            self,
            f"{name}-cert-manager",
            name="cert-manager",
            namespace=args.cert_manager_namespace,
            pods=everything,
            ingress=[_ingress(cluster, [10250]), _ingress([prometheus], [9402])],
            egress=[any_peer_egress(80, 443), _egress(cluster, [6443])],
        )
        # monitoring: Prometheus scrapes every namespace and the nodes (kubelet,
        # node-exporter on host ports), Alertmanager posts to Slack, Grafana reads
        # Prometheus; node IPs are not known in advance, so egress is open here
        # and only here. Ingress: within the namespace, the operator's webhook
        # (10250) from the API server, and Grafana (3000) via the ingress controller.
        _policy(
            self,
            f"{name}-monitoring",
            name="monitoring",
            namespace=args.monitoring_namespace,
            pods=everything,
            ingress=[
                k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                    from_=[k8s.networking.v1.NetworkPolicyPeerArgs(pod_selector=everything)]
                ),
                _ingress(cluster, [10250]),
                _ingress(
                    [_in_namespace(args.ingress_namespace, INGRESS_CONTROLLER_POD)], [GRAFANA_PORT]
                ),
            ],
            egress=[any_peer_egress()],
        )
        self.register_outputs({})
