"""Network isolation: default-deny per namespace, then allow exactly what the platform needs.

Every namespace is an :class:`~infra.components.namespace.IsolatedNamespace`
(default-deny plus DNS). The allow rules live here:

* :class:`PlatformNetworkPolicies` opens the application namespace's traffic:
  the edge's Envoy proxies -> services and dashboards, Prometheus -> metrics
  ports, Alertmanager -> the rollback handler, workloads -> Postgres/Redis
  (in-cluster pods on ``local``, the VPC's private subnets on AWS), object
  storage, the ACME HTTP-01 solver, and HTTPS to the external APIs each
  service calls (from the catalog's ``egress``).
* :class:`AddonNetworkPolicies` does the same for the third-party namespaces
  (Envoy Gateway, cert-manager, monitoring).

**AWS APIs without the internet.** On AWS, S3 is reached through the VPC's
gateway endpoint, whose routes cover exactly the region's S3 prefix list, and
STS (the IRSA token exchange) through an interface endpoint whose network
interfaces live in the private subnets. So a workload that uses a bucket is
allowed 443 to those two sets of addresses only, and a service that needs the
internet gets exactly its external API's ranges (Anthropic for vision and
coaching, the CRM for churn): the Anthropic egress pin stays meaningful.

**The API server.** Pods reach it at the ``kubernetes`` Service's cluster IP
on 443; the connection is then translated to the control plane's endpoints
(on EKS, network interfaces in the VPC on 443; on kind, the control-plane node
on 6443). Whether a CNI evaluates egress before or after that translation
differs (the VPC CNI's policy agent matches the cluster IP), so the
controllers that need the API are allowed both, on their exact ports
(:class:`ApiServer`).

**FQDNs.** A Kubernetes NetworkPolicy matches IP blocks, never hostnames. Egress
to ``api.anthropic.com`` or the CRM is therefore allowed to the CIDRs given in
stack config (``egress.<target>.cidrs``): Anthropic publishes its ranges; the
CRM does not, so its default is the public internet on 443 with every private,
link-local and shared range carved out by ``except`` (that keeps the VPC, the
node metadata endpoint 169.254.169.254 and other tenants' pods out of reach).
Pinning egress to a hostname needs a CNI with FQDN policies (Cilium's
``toFQDNs``, Calico Enterprise's domain sets) or an egress proxy; it is not
expressible here and is recorded as a known limit rather than left silent.

``tests/infra/netpol.py`` evaluates the synthesized policies with Kubernetes'
semantics; ``tests/infra/test_network_paths.py`` walks every allowed path and
checks that everything else is denied.
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
from infra.components.base import Component

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

#: Envoy Gateway labels the proxies it runs for a Gateway so (in its own namespace).
ENVOY_PROXY_POD: Final = {
    "app.kubernetes.io/name": "envoy",
    "app.kubernetes.io/component": "proxy",
    "app.kubernetes.io/managed-by": "envoy-gateway",
}
#: The proxies listen on the Gateway's ports + 10000 (unprivileged: 80 -> 10080).
ENVOY_PROXY_PORTS: Final = (10080, 10443)
ENVOY_METRICS_PORT: Final = 19001
#: Envoy's readiness endpoint (``/ready``): the kubelet's probe and, on AWS, the
#: NLB's health check (charts/envoy-gateway/proxy-<environment>.yaml) ask it.
ENVOY_READINESS_PORT: Final = 19003
#: The controller's xDS server the proxies fetch their configuration from.
ENVOY_XDS_PORT: Final = 18000
#: Envoy Gateway's admission webhook (topology injector), called by the API server.
ENVOY_WEBHOOK_PORT: Final = 9443
PROMETHEUS_POD: Final = {"app.kubernetes.io/name": "prometheus"}
#: The operator labels Alertmanager's pods so (kube-prometheus-stack's Alertmanager).
ALERTMANAGER_POD: Final = {"app.kubernetes.io/name": "alertmanager"}
KUBE_DNS_POD: Final = {"k8s-app": "kube-dns"}
GRAFANA_POD: Final = {"app.kubernetes.io/name": "grafana"}
GRAFANA_PORT: Final = 3000
#: cert-manager labels the HTTP-01 solver pods it starts in the Certificate's namespace.
ACME_SOLVER_POD: Final = {"acme.cert-manager.io/http01-solver": "true"}
ACME_SOLVER_PORT: Final = 8089

#: Labels of the in-cluster data stores (see datastores.py).
POSTGRES_POD: Final = {hardening.NAME_LABEL: "postgres"}
REDIS_POD: Final = {hardening.NAME_LABEL: "redis"}
OBJECT_STORAGE_POD: Final = {hardening.NAME_LABEL: "minio"}
OBJECT_STORAGE_PORT: Final = 9000
HTTPS_PORT: Final = 443

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


@dataclass(frozen=True, slots=True)
class ApiServer:
    """How pods reach the Kubernetes API: the Service IP, then the real endpoints."""

    #: The ``kubernetes`` Service's cluster IP (first address of the service range).
    service_ip: str
    #: Where the endpoints live (the VPC on EKS; anywhere on a laptop cluster).
    endpoint_cidrs: Sequence[str]
    #: The endpoints' port: 443 on EKS, 6443 on kubeadm-style clusters (kind).
    endpoint_port: int


#: kind's defaults: service range 10.96.0.0/16, API server on the node's 6443.
LOCAL_API_SERVER: Final = ApiServer(
    service_ip="10.96.0.1", endpoint_cidrs=PUBLIC_INTERNET, endpoint_port=6443
)


def eks_service_ip(vpc_cidr: str) -> str:
    """The ``kubernetes`` Service IP EKS assigns when no service range is configured.

    EKS picks 10.100.0.0/16, or 172.20.0.0/16 when the VPC is inside
    10.0.0.0/8 (so that the two never overlap); the Service takes the first
    address.
    """
    inside_ten = ipaddress.ip_network(vpc_cidr).subnet_of(ipaddress.ip_network("10.0.0.0/8"))  # type: ignore[arg-type]
    return "172.20.0.1" if inside_ten else "10.100.0.1"


def api_server_egress(api: ApiServer) -> list[k8s.networking.v1.NetworkPolicyEgressRuleArgs]:
    """Egress to the API server at its Service IP (443) and at its endpoints."""
    return [
        _egress(_cidr_peers([f"{api.service_ip}/32"]), [HTTPS_PORT]),
        _egress(_cidr_peers(api.endpoint_cidrs), [api.endpoint_port]),
    ]


def _cidr_peers(cidrs: Iterable[str]) -> list[k8s.networking.v1.NetworkPolicyPeerArgs]:
    return [
        k8s.networking.v1.NetworkPolicyPeerArgs(ip_block=k8s.networking.v1.IPBlockArgs(cidr=cidr))
        for cidr in cidrs
    ]


# --------------------------------------------------------------------------- helpers


def _selector(labels: Mapping[str, str]) -> k8s.meta.v1.LabelSelectorArgs:
    return k8s.meta.v1.LabelSelectorArgs(match_labels=dict(labels))


def in_namespace(
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
        metadata=hardening.platform_metadata(name, namespace),
        spec=k8s.networking.v1.NetworkPolicySpecArgs(
            pod_selector=pods,
            policy_types=types,
            ingress=list(ingress) or None,
            egress=list(egress) or None,
        ),
        opts=pulumi.ResourceOptions(parent=parent),
    )


# --------------------------------------------------------------------------- platform


@dataclass(frozen=True, kw_only=True)
class PlatformNetworkPoliciesArgs:
    """Inputs of :class:`PlatformNetworkPolicies`.

    Exactly one way to reach the data stores applies: ``in_cluster_datastores``
    (``local``: Postgres, Redis and MinIO pods of ``datastore_namespace``) or
    ``datastore_cidrs`` (AWS: the private subnets that hold RDS and
    ElastiCache). On AWS, object storage and the IRSA token exchange go
    through the VPC endpoints: ``s3_cidrs`` (the S3 prefix list the gateway
    endpoint routes) and ``sts_cidrs`` (where the STS interface endpoint's
    network interfaces are).
    """

    namespace: pulumi.Input[str]
    services: Sequence[catalog.ServiceSpec]
    #: External APIs by target (``config.StackConfig.egress``).
    egress: Mapping[catalog.EgressTarget, ExternalEgress]
    #: Where the edge's Envoy proxies run (Envoy Gateway's namespace).
    edge_namespace: str = "envoy-gateway-system"
    monitoring_namespace: str = "monitoring"
    #: The dashboards, when the stack runs them; a policy for pods that do not
    #: exist is a silent no-op, so none is declared without them.
    dashboards: catalog.DashboardsSpec | None = None
    #: The rollback handler, when the stack runs it: Alertmanager's pods in
    #: ``monitoring_namespace`` (and Prometheus) in; the stores (and Slack) out.
    rollback_handler: catalog.RollbackHandlerSpec | None = None
    #: How the rollback handler reaches the Kubernetes API when the stack lets it
    #: undo deployments (``rollback.undoDeployments``); None: it has no route there.
    rollback_handler_api_server: ApiServer | None = None
    #: Whether the stack has a Slack webhook (else no pod gets Slack egress).
    slack: bool = False
    #: Whether cert-manager solves ACME HTTP-01 challenges (a letsencrypt issuer);
    #: with a self-signed issuer no solver pod ever exists to admit traffic to.
    acme_http01_solver: bool = True
    #: Name labels of the Jobs that write to object storage (jobs.py, datastores.py).
    object_storage_jobs: Sequence[str] = (
        *(model.job.name for model in catalog.PUBLISHED_MODELS),
        "bucket-init",
    )
    in_cluster_datastores: bool = False
    #: Where the in-cluster stores run; None means ``namespace``.
    datastore_namespace: str | None = None
    datastore_cidrs: pulumi.Input[Sequence[str]] = field(default_factory=tuple)
    s3_cidrs: pulumi.Input[Sequence[str]] = field(default_factory=tuple)
    sts_cidrs: pulumi.Input[Sequence[str]] = field(default_factory=tuple)


EgressRule = k8s.networking.v1.NetworkPolicyEgressRuleArgs


class PlatformNetworkPolicies(Component[PlatformNetworkPoliciesArgs]):
    """The allow rules of the application namespace (and of the local data stores)."""

    component_type = "enterprisehub:k8s:PlatformNetworkPolicies"

    policy_names: pulumi.Output[list[str]]

    def __init__(
        self,
        name: str,
        args: PlatformNetworkPoliciesArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        _validate_platform(args)
        super().__init__(name, args, opts)
        self._from_edge = in_namespace(args.edge_namespace, ENVOY_PROXY_POD)
        self._data = self._datastore_egress()
        policies = [self._service(spec) for spec in args.services]
        if args.dashboards is not None:
            policies.append(self._dashboards(args.dashboards))
        if args.rollback_handler is not None:
            policies.append(self._rollback_handler(args.rollback_handler))
        policies.extend(self._jobs())
        if args.acme_http01_solver:
            policies.append(
                self._policy(
                    "acme-http01-solver",
                    _selector(ACME_SOLVER_POD),
                    ingress=[_ingress([self._from_edge], [ACME_SOLVER_PORT])],
                )
            )
        if args.in_cluster_datastores:
            policies.extend(self._datastore_ingress())
        self.policy_names = pulumi.Output.all(*(p.metadata.name for p in policies)).apply(list)
        self.register_outputs({"policy_names": self.policy_names})

    def _policy(
        self,
        policy: str,
        pods: k8s.meta.v1.LabelSelectorArgs,
        *,
        ingress: Sequence[k8s.networking.v1.NetworkPolicyIngressRuleArgs] = (),
        egress: Sequence[EgressRule] = (),
        namespace: pulumi.Input[str] | None = None,
    ) -> k8s.networking.v1.NetworkPolicy:
        return _policy(
            self,
            f"{self._name}-{policy}",
            name=policy,
            namespace=namespace if namespace is not None else self._args.namespace,
            pods=pods,
            ingress=ingress,
            egress=egress,
        )

    def _service(self, spec: catalog.ServiceSpec) -> k8s.networking.v1.NetworkPolicy:
        """The edge and Prometheus in (one port: the API and /metrics share it); stores out."""
        args = self._args
        egress = [*self._data["postgres"], *self._data["redis"]]
        if spec.buckets:
            egress.extend(self._data["objects"])
        for target in sorted(spec.egress):
            endpoint = args.egress[target]
            egress.append(_egress(ip_blocks(endpoint.cidrs), [endpoint.port]))
        sources = [self._from_edge, in_namespace(args.monitoring_namespace, PROMETHEUS_POD)]
        if args.dashboards is not None and args.dashboards.feed_path in spec.api_paths:
            # The hub page reads the live feed inside the cluster, as a client would.
            sources.append(_pods(hardening.selector_labels(args.dashboards.name)))
        return self._policy(
            spec.name,
            _selector(hardening.selector_labels(spec.name)),
            ingress=[_ingress(sources, [spec.port])],
            egress=egress,
        )

    def _dashboards(self, spec: catalog.DashboardsSpec) -> k8s.networking.v1.NetworkPolicy:
        """The edge in on the app's port, Prometheus on the metrics port (each only
        there); stored rows (Postgres), their cache (Redis) and the live feed out."""
        feed = [
            _egress([_pods(hardening.selector_labels(svc.name))], [svc.port])
            for svc in self._args.services
            if spec.feed_path in svc.api_paths
        ]
        ingress = [_ingress([self._from_edge], [spec.port])]
        if spec.metrics_port is not None:
            prometheus = in_namespace(self._args.monitoring_namespace, PROMETHEUS_POD)
            ingress.append(_ingress([prometheus], [spec.metrics_port]))
        return self._policy(
            spec.name,
            _selector(hardening.selector_labels(spec.name)),
            ingress=ingress,
            egress=[*self._data["postgres"], *self._data["redis"], *feed],
        )

    def _rollback_handler(
        self, spec: catalog.RollbackHandlerSpec
    ) -> k8s.networking.v1.NetworkPolicy:
        """Alertmanager (its webhook) and Prometheus (``/metrics``) in; the stores, Slack out.

        Nothing from the edge: the handler is no public API. No Kubernetes API
        either, unless the stack lets it undo deployments
        (``rollback_handler_api_server``).
        """
        args = self._args
        egress = [*self._data["postgres"], *self._data["redis"]]
        if args.rollback_handler_api_server is not None:
            egress.extend(api_server_egress(args.rollback_handler_api_server))
        for target in sorted(spec.egress):
            if target is catalog.EgressTarget.SLACK and not args.slack:
                continue
            endpoint = args.egress[target]
            egress.append(_egress(ip_blocks(endpoint.cidrs), [endpoint.port]))
        sources = [
            in_namespace(args.monitoring_namespace, ALERTMANAGER_POD),
            in_namespace(args.monitoring_namespace, PROMETHEUS_POD),
        ]
        return self._policy(
            spec.name,
            _selector(hardening.selector_labels(spec.name)),
            ingress=[_ingress(sources, [spec.port])],
            egress=egress,
        )

    def _jobs(self) -> list[k8s.networking.v1.NetworkPolicy]:
        """Every Job to the stores; the writers of object storage to it as well."""
        writers = k8s.meta.v1.LabelSelectorArgs(
            match_labels={hardening.PART_OF_LABEL: catalog.PLATFORM},
            match_expressions=[
                k8s.meta.v1.LabelSelectorRequirementArgs(
                    key=hardening.NAME_LABEL,
                    operator="In",
                    values=list(self._args.object_storage_jobs),
                )
            ],
        )
        jobs = k8s.meta.v1.LabelSelectorArgs(
            match_labels={
                hardening.PART_OF_LABEL: catalog.PLATFORM,
                hardening.COMPONENT_LABEL: hardening.COMPONENT_JOB,
            }
        )
        return [
            self._policy("jobs", jobs, egress=[*self._data["postgres"], *self._data["redis"]]),
            self._policy("object-storage-writers", writers, egress=self._data["objects"]),
        ]

    def _datastore_egress(self) -> dict[str, list[EgressRule]]:
        """Egress rules to Postgres, Redis and object storage for this stack's kind."""
        args = self._args
        if args.in_cluster_datastores:
            store_ns = args.datastore_namespace

            def peer(pods: Mapping[str, str]) -> k8s.networking.v1.NetworkPolicyPeerArgs:
                return in_namespace(store_ns, pods) if store_ns else _pods(pods)

            return {
                "postgres": [_egress([peer(POSTGRES_POD)], [catalog.POSTGRES_PORT])],
                "redis": [_egress([peer(REDIS_POD)], [catalog.REDIS_PORT])],
                "objects": [_egress([peer(OBJECT_STORAGE_POD)], [OBJECT_STORAGE_PORT])],
            }

        def blocks(
            cidrs: pulumi.Input[Sequence[str]],
        ) -> pulumi.Output[Sequence[k8s.networking.v1.NetworkPolicyPeerArgs]]:
            return pulumi.Output.from_input(cidrs).apply(ip_blocks)

        private = blocks(args.datastore_cidrs)
        return {
            "postgres": [_egress(private, [catalog.POSTGRES_PORT])],
            "redis": [_egress(private, [catalog.REDIS_PORT])],
            # S3 through the gateway endpoint, STS (IRSA) through the interface endpoint.
            "objects": [
                _egress(blocks(args.s3_cidrs), [HTTPS_PORT]),
                _egress(blocks(args.sts_cidrs), [HTTPS_PORT]),
            ],
        }

    def _datastore_ingress(self) -> list[k8s.networking.v1.NetworkPolicy]:
        """Local stack: who may connect to the in-cluster Postgres, Redis and MinIO."""
        args = self._args
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
        storage_clients = clients(hardening.COMPONENT_API, hardening.COMPONENT_JOB)
        return [
            self._policy(
                store,
                _selector(pods),
                ingress=[_ingress([peer], [port])],
                namespace=store_ns,
            )
            for store, pods, peer, port in (
                ("postgres", POSTGRES_POD, db_clients, catalog.POSTGRES_PORT),
                ("redis", REDIS_POD, db_clients, catalog.REDIS_PORT),
                ("minio", OBJECT_STORAGE_POD, storage_clients, OBJECT_STORAGE_PORT),
            )
        ]


def _validate_platform(args: PlatformNetworkPoliciesArgs) -> None:
    owner = "PlatformNetworkPolicies"

    def given(value: pulumi.Input[Sequence[str]]) -> bool:
        return not isinstance(value, Sequence) or bool(value)

    if args.in_cluster_datastores == given(args.datastore_cidrs):
        raise ValueError(
            f"{owner}: give either in_cluster_datastores=True (local) or datastore_cidrs "
            "(AWS private subnets), not both and not neither"
        )
    if not args.in_cluster_datastores and not (given(args.s3_cidrs) and given(args.sts_cidrs)):
        raise ValueError(
            f"{owner}: AWS stacks reach S3 and STS through VPC endpoints; give s3_cidrs "
            "(the S3 prefix list) and sts_cidrs (the interface endpoint's subnets)"
        )
    needed = {target for spec in args.services for target in spec.egress}
    if args.rollback_handler is not None and args.slack:
        needed |= args.rollback_handler.egress
    missing = sorted(str(target) for target in needed if target not in args.egress)
    if missing:
        raise ValueError(f"{owner}: no egress CIDRs configured for {', '.join(missing)}")


# --------------------------------------------------------------------------- add-ons


@dataclass(frozen=True, kw_only=True)
class AddonNetworkPoliciesArgs:
    """Inputs of :class:`AddonNetworkPolicies`: the add-on namespaces and who they serve.

    Some traffic of cluster add-ons has no pod or namespace to select: the API
    server calling admission webhooks, Prometheus scraping kubelets and node
    exporters on node IPs. Those rules use ``cluster_cidrs`` (default: any
    address), restricted to the exact ports. Controllers reach the API server
    as :class:`ApiServer` describes.
    """

    edge_namespace: str
    cert_manager_namespace: str
    monitoring_namespace: str
    #: Namespaces whose workloads the edge proxies to and Prometheus scrapes.
    app_namespaces: Sequence[pulumi.Input[str]]
    api_server: ApiServer = LOCAL_API_SERVER
    #: Where the API server and nodes live (the VPC CIDR on AWS).
    cluster_cidrs: Sequence[str] = PUBLIC_INTERNET


class AddonNetworkPolicies(Component[AddonNetworkPoliciesArgs]):
    """Allow rules for Envoy Gateway, cert-manager and the monitoring stack."""

    component_type = "enterprisehub:k8s:AddonNetworkPolicies"

    def __init__(
        self,
        name: str,
        args: AddonNetworkPoliciesArgs,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(name, args, opts)
        self._cluster = _cidr_peers(args.cluster_cidrs)
        self._prometheus = in_namespace(args.monitoring_namespace, PROMETHEUS_POD)
        self._edge()
        self._cert_manager()
        self._monitoring()
        self.register_outputs({})

    def _edge(self) -> None:
        """Envoy Gateway: the proxies take public traffic to the app namespaces.

        Proxies: 10080/10443 from anywhere (the load balancer or NodePorts keep
        the client's address), the readiness endpoint from the cluster's network
        (the NLB's health checks come from its addresses in the VPC), out to the
        application namespaces (any port a route names), Grafana and the
        controller's xDS. The controller (every
        other pod of the namespace): xDS from the proxies, the webhook from the
        API server, and the API server out. Both: metrics for Prometheus.
        """
        args = self._args
        proxies = _selector(ENVOY_PROXY_POD)
        controller = k8s.meta.v1.LabelSelectorArgs(
            match_expressions=[
                k8s.meta.v1.LabelSelectorRequirementArgs(key=key, operator="NotIn", values=[value])
                for key, value in ENVOY_PROXY_POD.items()
                if key == "app.kubernetes.io/component"
            ]
        )
        from_prometheus = _ingress([self._prometheus], [ENVOY_METRICS_PORT])
        _policy(
            self,
            f"{self._name}-envoy-proxy",
            name="envoy-proxy",
            namespace=args.edge_namespace,
            pods=proxies,
            ingress=[
                k8s.networking.v1.NetworkPolicyIngressRuleArgs(ports=_tcp(*ENVOY_PROXY_PORTS)),
                _ingress(self._cluster, [ENVOY_READINESS_PORT]),
                from_prometheus,
            ],
            egress=[
                k8s.networking.v1.NetworkPolicyEgressRuleArgs(
                    to=[in_namespace(ns) for ns in args.app_namespaces]
                ),
                _egress([in_namespace(args.monitoring_namespace, GRAFANA_POD)], [GRAFANA_PORT]),
                _egress(
                    [k8s.networking.v1.NetworkPolicyPeerArgs(pod_selector=controller)],
                    [ENVOY_XDS_PORT],
                ),
            ],
        )
        _policy(
            self,
            f"{self._name}-envoy-gateway",
            name="envoy-gateway",
            namespace=args.edge_namespace,
            pods=controller,
            ingress=[
                _ingress(
                    [k8s.networking.v1.NetworkPolicyPeerArgs(pod_selector=proxies)],
                    [ENVOY_XDS_PORT],
                ),
                _ingress(self._cluster, [ENVOY_WEBHOOK_PORT]),
                from_prometheus,
            ],
            egress=api_server_egress(args.api_server),
        )

    def _cert_manager(self) -> None:
        """cert-manager: its webhook (10250) from the API server, metrics (9402).

        Out: the ACME server (443), the public edge (80) for the HTTP-01
        self-check, and the API server.
        """
        args = self._args
        _policy(
            self,
            f"{self._name}-cert-manager",
            name="cert-manager",
            namespace=args.cert_manager_namespace,
            pods=k8s.meta.v1.LabelSelectorArgs(),
            ingress=[_ingress(self._cluster, [10250]), _ingress([self._prometheus], [9402])],
            egress=[
                _egress(ip_blocks(PUBLIC_INTERNET), [80, HTTPS_PORT]),
                *api_server_egress(args.api_server),
            ],
        )

    def _monitoring(self) -> None:
        """Prometheus scrapes every namespace and the nodes; egress is open here only.

        Node IPs (kubelet, node-exporter on host ports) are not known in
        advance and Alertmanager posts to Slack. Ingress: within the namespace,
        the operator's webhook (10250) from the API server, and Grafana (3000)
        from the edge's proxies.
        """
        args = self._args
        everything = k8s.meta.v1.LabelSelectorArgs()
        _policy(
            self,
            f"{self._name}-monitoring",
            name="monitoring",
            namespace=args.monitoring_namespace,
            pods=everything,
            ingress=[
                k8s.networking.v1.NetworkPolicyIngressRuleArgs(
                    from_=[k8s.networking.v1.NetworkPolicyPeerArgs(pod_selector=everything)]
                ),
                _ingress(self._cluster, [10250]),
                _ingress([in_namespace(args.edge_namespace, ENVOY_PROXY_POD)], [GRAFANA_PORT]),
            ],
            # A rule without peers or ports matches every destination, pods included.
            egress=[k8s.networking.v1.NetworkPolicyEgressRuleArgs()],
        )
