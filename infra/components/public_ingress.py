"""The platform's public entry point: one Gateway API ``Gateway`` and its HTTPRoutes.

ingress-nginx was retired (repository archived 2026-03-24), so the edge is the
Kubernetes Gateway API implemented by Envoy Gateway (installed and configured
by :mod:`infra.components.addons`: the ``GatewayClass`` and its ``EnvoyProxy``
parameters, a LoadBalancer Service on AWS and NodePorts 30080/30443 on kind).

Objects, all in the application namespace unless said otherwise:

* ``Gateway`` ``enterprisehub``: a plain-HTTP listener on 80 (the HTTPS
  redirect and cert-manager's ACME HTTP-01 challenge routes) and one HTTPS
  listener per public hostname on 443, each terminating TLS with the same
  secret. The Gateway carries ``cert-manager.io/cluster-issuer``; cert-manager's
  Gateway support turns the listeners that name one secret into one
  Certificate covering every host.
* ``HTTPRoute`` ``https-redirect``: everything on port 80 answers 301 to https,
  except the challenge paths cert-manager routes itself (an Exact path match
  beats this route's prefix match).
* ``HTTPRoute`` ``api``: the API hostname's paths to the services that own them
  (longest prefix wins). The websocket feed gets no request timeout (a Gateway
  API ``timeouts.request`` of ``0s`` disables it); its heartbeat every 30 s
  keeps the stream from the proxy's idle timeout.
* ``HTTPRoute`` ``dashboards`` with an Envoy Gateway ``BackendTrafficPolicy``
  that hashes on a cookie, so a browser stays on the pod that holds its
  Streamlit session; no request timeout either (Streamlit speaks websocket).
* ``HTTPRoute`` ``grafana`` in the monitoring namespace (its listener admits
  routes from that namespace only), when the stack publishes Grafana.

The edge's address (:attr:`PublicIngress.edge_address`, the stack output
``edgeAddress``): behind a LoadBalancer Service (AWS), Envoy Gateway copies the
load balancer's address into the Gateway's ``status.addresses`` (an AWS NLB
publishes a DNS name, type ``Hostname``). The Gateway carries pulumi-kubernetes'
``pulumi.com/waitFor`` annotation (4.18+), so ``pulumi up`` waits on create and
update until that address is there, and the object it returns carries it. On
kind the proxies are NodePorts: Envoy Gateway publishes the node IPs there
(inside Docker's network, not what a browser uses), so nothing waits and the
address is the host's loopback, where kind maps ports 80 and 443.
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import pulumi
import pulumi_kubernetes as k8s

from infra import catalog
from infra.components import hardening
from infra.components.base import Component

GATEWAY_API: Final = "gateway.networking.k8s.io"
GATEWAY_API_VERSION: Final = f"{GATEWAY_API}/v1"
ENVOY_GATEWAY_API_VERSION: Final = "gateway.envoyproxy.io/v1alpha1"
#: The GatewayClass (ClusterAddons declares it) and the Gateway's name.
GATEWAY_CLASS: Final = catalog.PLATFORM
GATEWAY_NAME: Final = catalog.PLATFORM
#: The plain-HTTP listener: redirects, and cert-manager's HTTP-01 solver routes.
HTTP_LISTENER: Final = "http"
#: Gateway API: a zero request timeout disables it (long-lived websockets).
NO_TIMEOUT: Final = "0s"
GATEWAY_TYPE: Final = f"kubernetes:{GATEWAY_API_VERSION}:Gateway"
#: pulumi-kubernetes (4.18+): on create and update, wait until this holds of the
#: live object (``jsonpath={expr}[=value]`` or ``condition=Type[=value]``, as
#: ``kubectl get -o jsonpath`` / ``kubectl wait`` read them).
WAIT_FOR_ANNOTATION: Final = "pulumi.com/waitFor"
#: The first address Envoy Gateway publishes for the Gateway (the load balancer's).
EDGE_ADDRESS_WAIT: Final = "jsonpath={.status.addresses[0].value}"
#: How the proxies' Service is exposed (EnvoyProxy ``envoyService.type``).
LOAD_BALANCER: Final = "LoadBalancer"
NODE_PORT: Final = "NodePort"
#: Where kind's extraPortMappings put NodePorts 30080/30443 (host ports 80/443),
#: and where ``*.localhost`` resolves.
LOCAL_EDGE_ADDRESS: Final = "127.0.0.1"
#: What the SDK's own resources pass as ``version`` (the provider plugin to use).
_K8S_SDK_VERSION: Final = importlib.metadata.version("pulumi_kubernetes")


@dataclass(frozen=True, slots=True)
class ApiRoute:
    """One path prefix of the API hostname and the Service that answers it."""

    path: str
    service: pulumi.Input[str]
    port: int
    #: Long-lived connection (websocket): no request timeout.
    streaming: bool = False


def default_api_routes() -> tuple[ApiRoute, ...]:
    """The API hostname's routes: each shipped service's ``api_paths``.

    Gateway API matches the longest prefix, so ``/v1/leads/events`` (the CRM
    webhook, websocket-manager) and ``/v1/leads/score`` (ml-services) can share
    the ``/v1/leads`` stem.
    """
    return tuple(
        ApiRoute(path, spec.name, spec.port, streaming=path in spec.streaming_paths)
        for spec in catalog.SHIPPED_SERVICES.values()
        for path in spec.api_paths
    )


@dataclass(frozen=True, slots=True)
class GrafanaRoute:
    """Where Grafana runs, for its public hostname (kube-prometheus-stack's Service)."""

    host: str
    namespace: str
    service: str
    port: int = 80


@dataclass(frozen=True, kw_only=True)
class PublicIngressArgs:
    """Inputs of :class:`PublicIngress`."""

    namespace: pulumi.Input[str]
    api_host: str
    #: Dashboard name -> hostname (``config.StackConfig.dashboard_hosts``).
    dashboard_hosts: Mapping[str, str]
    #: Name of the ClusterIssuer cert-manager signs with (addons.ClusterAddons output).
    cluster_issuer: pulumi.Input[str]
    gateway_class: str = GATEWAY_CLASS
    dashboards_service: pulumi.Input[str] = catalog.DASHBOARDS.name
    dashboards_port: int = catalog.DASHBOARDS.port
    api_routes: Sequence[ApiRoute] = field(default_factory=default_api_routes)
    grafana: GrafanaRoute | None = None
    tls_secret_name: str = f"{catalog.PLATFORM}-tls"
    #: The EnvoyProxy's ``envoyService.type`` (``charts/envoy-gateway/proxy*.yaml``):
    #: ``LoadBalancer`` publishes an address that ``up`` waits for; ``NodePort`` does not.
    proxy_service_type: str = LOAD_BALANCER
    #: The edge's address when the proxies are NodePorts (kind's port mapping).
    node_port_address: str = LOCAL_EDGE_ADDRESS
    #: The cookie that keeps a browser on its Streamlit pod, and how long it lives.
    session_cookie: str = "eh-dashboards"
    session_ttl: str = "8h"
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)


class Gateway(pulumi.CustomResource):
    """A Gateway API ``Gateway`` whose ``status`` is an output.

    The Python SDK's ``k8s.apiextensions.CustomResource`` registers only
    ``apiVersion``, ``kind``, ``metadata`` and ``spec``, so the status the
    provider returns with the live object is dropped (the SDK resolves only the
    properties it registered; pulumi/pulumi-kubernetes#1836). This is the same
    registration (type token, provider, SDK version) with ``status`` as an
    output, as crd2pulumi generates for a CRD.
    """

    status: pulumi.Output[Any]

    def __init__(
        self,
        resource_name: str,
        *,
        metadata: pulumi.Input[k8s.meta.v1.ObjectMetaArgs],
        spec: pulumi.Input[Mapping[str, Any]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(
            GATEWAY_TYPE,
            resource_name,
            {
                "apiVersion": GATEWAY_API_VERSION,
                "kind": "Gateway",
                "metadata": metadata,
                "spec": spec,
                "status": None,
            },
            pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(version=_K8S_SDK_VERSION)),
        )


def edge_address_from_status(status: Mapping[str, Any] | None) -> str:
    """The first address in a Gateway's ``status`` (what ``EDGE_ADDRESS_WAIT`` waited for)."""
    addresses = (status or {}).get("addresses") or []
    if not addresses or not addresses[0].get("value"):
        raise ValueError(
            "the Gateway's status has no address: pulumi-kubernetes returns it only after "
            f"the {WAIT_FOR_ANNOTATION} wait ({EDGE_ADDRESS_WAIT}); got status {status!r}"
        )
    return str(addresses[0]["value"])


class PublicIngress(Component[PublicIngressArgs]):
    """The Gateway and routes of the public hostnames (see the module docstring)."""

    component_type = "enterprisehub:k8s:PublicIngress"

    urls: pulumi.Output[dict[str, str]]
    gateway_name: str
    #: The load balancer's DNS name or IP (AWS), or kind's loopback: what DNS points at.
    edge_address: pulumi.Output[str]

    def __init__(
        self, name: str, args: PublicIngressArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        _validate(args)
        super().__init__(name, args, opts)
        gateway = self._gateway()
        after = pulumi.ResourceOptions(parent=self, depends_on=[gateway, *args.depends_on])
        self._redirect(after)
        self._route(
            "api",
            listeners=["https-api"],
            hosts=[args.api_host],
            rules=[_rule(r.path, r.service, r.port, r.streaming) for r in args.api_routes],
            opts=after,
        )
        if args.dashboard_hosts:
            self._dashboards(after)
        if args.grafana is not None:
            grafana = args.grafana
            self._route(
                "grafana",
                listeners=["https-grafana"],
                hosts=[grafana.host],
                rules=[_rule("/", grafana.service, grafana.port, streaming=True)],
                namespace=grafana.namespace,
                opts=after,
            )
        self.gateway_name = GATEWAY_NAME
        self.urls = pulumi.Output.from_input(
            {key: f"https://{host}" for key, host in self._hosts().items()}
        )
        if args.proxy_service_type == LOAD_BALANCER:
            self.edge_address = gateway.status.apply(edge_address_from_status)
        else:
            self.edge_address = pulumi.Output.from_input(args.node_port_address)
        self.register_outputs({"urls": self.urls, "edge_address": self.edge_address})

    def _hosts(self) -> dict[str, str]:
        """Listener key -> hostname, for every public hostname of the stack."""
        args = self._args
        hosts = {"api": args.api_host, **args.dashboard_hosts}
        if args.grafana is not None:
            hosts["grafana"] = args.grafana.host
        return hosts

    def _gateway(self) -> Gateway:
        args = self._args
        listeners: list[dict[str, Any]] = [
            {
                "name": HTTP_LISTENER,
                "port": 80,
                "protocol": "HTTP",
                "allowedRoutes": {"namespaces": {"from": "Same"}},
            }
        ]
        for key, host in self._hosts().items():
            allowed: dict[str, Any] = {"from": "Same"}
            if key == "grafana" and args.grafana is not None:
                allowed = {
                    "from": "Selector",
                    "selector": {
                        "matchLabels": {hardening.NAMESPACE_NAME_LABEL: args.grafana.namespace}
                    },
                }
            listeners.append(
                {
                    "name": f"https-{key}",
                    "hostname": host,
                    "port": 443,
                    "protocol": "HTTPS",
                    "tls": {
                        "mode": "Terminate",
                        "certificateRefs": [{"kind": "Secret", "name": args.tls_secret_name}],
                    },
                    "allowedRoutes": {"namespaces": allowed},
                }
            )
        annotations: dict[str, pulumi.Input[str]] = {
            "cert-manager.io/cluster-issuer": args.cluster_issuer
        }
        if args.proxy_service_type == LOAD_BALANCER:
            annotations[WAIT_FOR_ANNOTATION] = EDGE_ADDRESS_WAIT
        return Gateway(
            f"{self._name}-gateway",
            metadata=self._metadata(GATEWAY_NAME, annotations=annotations),
            spec={"gatewayClassName": args.gateway_class, "listeners": listeners},
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)),
        )

    def _redirect(self, opts: pulumi.ResourceOptions) -> None:
        """Port 80 answers 301 to https for every public hostname."""
        self._route(
            "https-redirect",
            listeners=[HTTP_LISTENER],
            hosts=list(self._hosts().values()),
            rules=[
                {
                    "filters": [
                        {
                            "type": "RequestRedirect",
                            "requestRedirect": {"scheme": "https", "statusCode": 301},
                        }
                    ]
                }
            ],
            opts=opts,
        )

    def _dashboards(self, opts: pulumi.ResourceOptions) -> None:
        """Every dashboard host to the one app, a browser pinned to its session's pod."""
        args = self._args
        route = self._route(
            "dashboards",
            listeners=[f"https-{key}" for key in args.dashboard_hosts],
            hosts=list(args.dashboard_hosts.values()),
            rules=[_rule("/", args.dashboards_service, args.dashboards_port, streaming=True)],
            opts=opts,
        )
        self._object(
            "BackendTrafficPolicy",
            "dashboards-session-affinity",
            api_version=ENVOY_GATEWAY_API_VERSION,
            logical=f"{self._name}-dashboards-affinity",
            spec={
                "targetRefs": [{"group": GATEWAY_API, "kind": "HTTPRoute", "name": "dashboards"}],
                "loadBalancer": {
                    "type": "ConsistentHash",
                    "consistentHash": {
                        "type": "Cookie",
                        "cookie": {"name": args.session_cookie, "ttl": args.session_ttl},
                    },
                },
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[route]),
        )

    def _route(
        self,
        route: str,
        *,
        listeners: Sequence[str],
        hosts: Sequence[str],
        rules: Sequence[Mapping[str, Any]],
        opts: pulumi.ResourceOptions,
        namespace: pulumi.Input[str] | None = None,
    ) -> k8s.apiextensions.CustomResource:
        """An HTTPRoute attached to the named listeners of the platform's Gateway."""
        args = self._args
        parent_ref: dict[str, Any] = {"name": GATEWAY_NAME}
        if namespace is not None:
            parent_ref["namespace"] = args.namespace
        return self._object(
            "HTTPRoute",
            route,
            namespace=namespace,
            spec={
                "parentRefs": [{**parent_ref, "sectionName": name} for name in listeners],
                "hostnames": list(hosts),
                "rules": [dict(rule) for rule in rules],
            },
            opts=opts,
        )

    def _object(
        self,
        kind: str,
        name: str,
        *,
        spec: Mapping[str, Any],
        opts: pulumi.ResourceOptions,
        api_version: str = GATEWAY_API_VERSION,
        namespace: pulumi.Input[str] | None = None,
        logical: str | None = None,
    ) -> k8s.apiextensions.CustomResource:
        """A platform-labelled custom object (application namespace by default)."""
        return k8s.apiextensions.CustomResource(
            logical or f"{self._name}-{name}",
            api_version=api_version,
            kind=kind,
            metadata=self._metadata(name, namespace=namespace),
            spec=dict(spec),
            opts=opts,
        )

    def _metadata(
        self,
        name: str,
        *,
        namespace: pulumi.Input[str] | None = None,
        annotations: Mapping[str, pulumi.Input[str]] | None = None,
    ) -> k8s.meta.v1.ObjectMetaArgs:
        return hardening.platform_metadata(
            name,
            namespace if namespace is not None else self._args.namespace,
            annotations=annotations,
        )


def _rule(
    path: str, service: pulumi.Input[str], port: int, streaming: bool = False
) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "matches": [{"path": {"type": "PathPrefix", "value": path}}],
        "backendRefs": [{"name": service, "port": port}],
    }
    if streaming:
        rule["timeouts"] = {"request": NO_TIMEOUT}
    return rule


def _validate(args: PublicIngressArgs) -> None:
    owner = "PublicIngress"
    hosts = [args.api_host, *args.dashboard_hosts.values()]
    if args.grafana is not None:
        hosts.append(args.grafana.host)
    duplicates = sorted({host for host in hosts if hosts.count(host) > 1})
    if duplicates:
        raise ValueError(f"{owner}: hostnames used twice: {', '.join(duplicates)}")
    paths = [route.path for route in args.api_routes]
    repeated = sorted({path for path in paths if paths.count(path) > 1})
    if repeated:
        raise ValueError(f"{owner}: API paths routed twice: {', '.join(repeated)}")
    bad = [route.path for route in args.api_routes if not route.path.startswith("/")]
    if bad:
        raise ValueError(f"{owner}: API paths must start with '/': {', '.join(bad)}")
    if args.proxy_service_type not in (LOAD_BALANCER, NODE_PORT):
        raise ValueError(
            f"{owner}: proxies exposed as {args.proxy_service_type!r}; "
            f"expected {LOAD_BALANCER} or {NODE_PORT}"
        )
    # Gateway API allows at most 16 rules per HTTPRoute.
    if len(args.api_routes) > 16:
        raise ValueError(f"{owner}: {len(args.api_routes)} API paths; an HTTPRoute holds 16")
