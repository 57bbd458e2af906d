"""Third-party cluster add-ons as pinned Helm releases.

* envoy-gateway: the public entry point, a Gateway API implementation (the
  chart installs the Gateway API CRDs too). This component declares its
  ``GatewayClass`` with the ``EnvoyProxy`` parameters of the environment
  (``charts/envoy-gateway/proxy*.yaml``: an AWS Network Load Balancer, or
  NodePorts 30080/30443 on kind); the Gateway and its routes are
  :class:`~infra.components.public_ingress.PublicIngress`.
* cert-manager: TLS certificates for the Gateway's listeners (its Gateway API
  support is on), plus the ClusterIssuer the Gateway names; ACME HTTP-01
  challenges are answered through an HTTPRoute on the Gateway's port 80.
* metrics-server: the resource metrics API the HorizontalPodAutoscalers read;
  neither EKS nor kind ships it.
* kube-prometheus-stack: Prometheus, Alertmanager and Grafana, with the
  platform's Alertmanager routing and the Secret it reads (created before the
  release, so Alertmanager starts with its credentials). Rules, scraping and
  dashboards need the chart's CRDs and are
  :class:`~infra.components.monitoring.Monitoring`'s.

Versions and repositories come from ``charts/versions.yaml`` (exact versions,
reasons in ``charts/README.md``); values from ``charts/<chart>/values.yaml``
deep-merged with ``charts/<chart>/values-<environment>.yaml`` and then with
what the program computes (hostnames). The files are read here, at
declaration time, not inside ``apply()``: they are part of the repository,
not stack config.

Each add-on namespace is an :class:`~infra.components.namespace.IsolatedNamespace`
(default-deny) with the allow rules of
:class:`~infra.components.network_policy.AddonNetworkPolicies`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypedDict, Unpack

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import yaml

from infra.components.base import Component
from infra.components.monitoring import (
    AlertmanagerCredentials,
    alertmanager_secret,
    alertmanager_values,
)
from infra.components.namespace import IsolatedNamespace, IsolatedNamespaceArgs
from infra.components.network_policy import (
    LOCAL_API_SERVER,
    AddonNetworkPolicies,
    AddonNetworkPoliciesArgs,
    ApiServer,
    PodSecurityLevel,
)
from infra.components.public_ingress import (
    ENVOY_GATEWAY_API_VERSION,
    GATEWAY_API_VERSION,
    GATEWAY_CLASS,
    GATEWAY_NAME,
    HTTP_LISTENER,
    GrafanaRoute,
)
from infra.environments import ENVIRONMENTS

#: The repository's charts/ folder.
CHARTS_DIR: Final = Path(__file__).resolve().parents[2] / "charts"
#: The chart (and release name) of Prometheus, Alertmanager and Grafana.
MONITORING_CHART: Final = "kube-prometheus-stack"
#: The charts this component installs, in installation order.
#: cert-manager comes after envoy-gateway: it looks for the Gateway API CRDs at start-up.
CHART_NAMES: Final = (MONITORING_CHART, "metrics-server", "envoy-gateway", "cert-manager")
#: Envoy Gateway's controller name, which the GatewayClass hands its Gateways to.
ENVOY_GATEWAY_CONTROLLER: Final = "gateway.envoyproxy.io/gatewayclass-controller"
#: The Service kube-prometheus-stack gives Grafana (release name + "-grafana").
GRAFANA_SERVICE: Final = "kube-prometheus-stack-grafana"
#: An exact SemVer version, optionally with a leading "v" (cert-manager tags its charts so).
#: Use with ``fullmatch``: "^...$" with ``match`` would accept a trailing newline, and
#: ``\d`` would accept any Unicode digit.
EXACT_VERSION: Final = re.compile(r"v?[0-9]+\.[0-9]+\.[0-9]+")

ACME_SERVERS: Final = {
    "letsencrypt": "https://acme-v02.api.letsencrypt.org/directory",
    "letsencrypt-staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
}
IssuerName = Literal["letsencrypt", "letsencrypt-staging", "selfsigned"]

GRAFANA_ADMIN_SECRET: Final = "grafana-admin"  # noqa: S105 - a Secret's name


@dataclass(frozen=True, slots=True)
class ChartPin:
    """One entry of ``charts/versions.yaml``."""

    name: str
    chart: str
    repository: str
    version: str
    namespace: str
    #: Pod Security admission level of the chart's namespace.
    pod_security: PodSecurityLevel
    #: False for namespaces the cluster already has (kube-system).
    create_namespace: bool


def load_pins(charts_dir: Path = CHARTS_DIR, section: str = "charts") -> dict[str, ChartPin]:
    """Read and check ``versions.yaml``: every chart pinned to an exact version.

    ``section`` picks the group: ``charts`` (every stack's add-ons) or
    ``awsCharts`` (installed by the EKS cluster component: Karpenter).
    """
    document = yaml.safe_load((charts_dir / "versions.yaml").read_text(encoding="utf-8"))
    pins: dict[str, ChartPin] = {}
    for name, entry in document[section].items():
        version = str(entry["version"])
        if not EXACT_VERSION.fullmatch(version):
            raise ValueError(
                f"charts/versions.yaml: {name} version {version!r} is not an exact "
                "version (ranges and 'latest' would change what a deploy installs)"
            )
        pins[name] = ChartPin(
            name=name,
            chart=str(entry["chart"]),
            repository=str(entry["repository"]),
            version=version,
            namespace=str(entry["namespace"]),
            pod_security=entry.get("podSecurity", "restricted"),
            create_namespace=bool(entry.get("createNamespace", True)),
        )
    return pins


#: An EKS add-on build as EKS names it: the component's version and EKS's build.
EKS_ADDON_VERSION: Final = re.compile(r"v[0-9]+\.[0-9]+\.[0-9]+-eksbuild\.[0-9]+")


def load_eks_addon_versions(
    kubernetes_version: str, addons: Sequence[str], charts_dir: Path | None = None
) -> dict[str, str]:
    """The version ``versions.yaml`` pins (``eksAddons``) for each of ``addons``.

    Raises ValueError, naming what is missing and how to find it, when the
    Kubernetes version has no entry or an add-on has no exact build: a version
    resolved at deploy time instead would move with EKS's default.
    ``charts_dir`` is read when called (None: ``CHARTS_DIR``).
    """
    path = (charts_dir or CHARTS_DIR) / "versions.yaml"
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    pinned = (document.get("eksAddons") or {}).get(kubernetes_version) or {}
    how = (
        f"find each with `aws eks describe-addon-versions --kubernetes-version "
        f"{kubernetes_version} --addon-name <add-on>` and add it under "
        f'eksAddons."{kubernetes_version}" in charts/versions.yaml'
    )
    missing = [addon for addon in addons if addon not in pinned]
    if missing:
        raise ValueError(
            f"charts/versions.yaml pins no version of {', '.join(missing)} for Kubernetes "
            f"{kubernetes_version}: {how}"
        )
    versions = {addon: str(pinned[addon]) for addon in addons}
    for addon, version in versions.items():
        if not EKS_ADDON_VERSION.fullmatch(version):
            raise ValueError(
                f"charts/versions.yaml: {addon} {version!r} for Kubernetes {kubernetes_version} "
                f"is not an EKS add-on build such as v1.20.4-eksbuild.1: {how}"
            )
    return versions


class ReleaseOptions(TypedDict, total=False):
    """Helm options a `pinned_release` may set; unset ones keep Helm's defaults."""

    values: pulumi.Input[Mapping[str, Any]]
    skip_crds: bool
    create_namespace: bool
    cleanup_on_fail: bool
    wait_for_jobs: bool
    timeout: int


def pinned_release(
    resource_name: str,
    pin: ChartPin,
    *,
    opts: pulumi.ResourceOptions,
    **options: Unpack[ReleaseOptions],
) -> k8s.helm.v3.Release:
    """A Helm release of ``pin``: its exact version, from its repository, into its namespace.

    Atomic (a failed install or upgrade is rolled back), with a bounded history.
    """
    # An OCI registry is named in the chart reference; a Helm repository by URL.
    oci = pin.repository.startswith("oci://")
    return k8s.helm.v3.Release(
        resource_name,
        name=pin.name,
        chart=f"{pin.repository}/{pin.chart}" if oci else pin.chart,
        version=pin.version,
        repository_opts=None if oci else k8s.helm.v3.RepositoryOptsArgs(repo=pin.repository),
        namespace=pin.namespace,
        atomic=True,
        max_history=10,
        opts=opts,
        **options,
    )


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``: maps merge key by key, anything else replaces."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def chart_values(
    name: str, environment: str, charts_dir: Path = CHARTS_DIR, stem: str = "values"
) -> dict[str, Any]:
    """``<stem>.yaml`` merged with ``<stem>-<environment>.yaml`` (when present)."""
    if environment not in ENVIRONMENTS:
        raise ValueError(f"unknown environment {environment!r}; expected one of {ENVIRONMENTS}")
    folder = charts_dir / name
    values: dict[str, Any] = yaml.safe_load((folder / f"{stem}.yaml").read_text("utf-8")) or {}
    per_env = folder / f"{stem}-{environment}.yaml"
    if per_env.exists():
        values = deep_merge(values, yaml.safe_load(per_env.read_text("utf-8")) or {})
    return values


@dataclass(frozen=True, kw_only=True)
class ClusterAddonsArgs:
    """Inputs of :class:`ClusterAddons`."""

    environment: str
    #: Namespaces of the platform's workloads (scraped, proxied to).
    app_namespaces: Sequence[str]
    #: ClusterIssuer to create; its name is what the Gateway references.
    issuer: IssuerName
    #: Namespace of the platform's Gateway (ACME HTTP-01 routes attach to it).
    gateway_namespace: str
    #: ACME account contact; required for the letsencrypt issuers.
    acme_email: str | None = None
    #: Public Grafana hostname; None keeps Grafana internal (port-forward).
    grafana_host: str | None = None
    #: Where the API server and nodes are (the VPC CIDR on AWS); see AddonNetworkPolicies.
    cluster_cidrs: Sequence[str] = ("0.0.0.0/0",)
    api_server: ApiServer = LOCAL_API_SERVER
    #: Extra labels of the edge's namespace (on AWS, the load balancer
    #: controller's pod readiness gate: a proxy counts as ready once its NLB target is).
    edge_namespace_labels: Mapping[str, str] = field(default_factory=dict)
    #: Alertmanager's credentials (rollback token, Slack URL); None leaves the
    #: chart's own routing (a component test of the add-ons alone).
    alertmanager: AlertmanagerCredentials | None = None
    #: Extra values per chart, merged last (e.g. a StorageClass name).
    value_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    charts_dir: Path = CHARTS_DIR
    #: Helm's wait timeout per release (seconds); kube-prometheus-stack's CRDs are large.
    timeout_seconds: int = 900


class ClusterAddons(Component[ClusterAddonsArgs]):
    """The four Helm releases, their namespaces, the ClusterIssuer and Alertmanager's Secret."""

    component_type = "enterprisehub:k8s:ClusterAddons"

    issuer_name: pulumi.Output[str]
    #: Where Envoy Gateway and its proxies run.
    edge_namespace: str
    monitoring_namespace: str
    cert_manager_namespace: str
    #: Everything a Gateway, route or other CRD object must wait for.
    ready: list[pulumi.Resource]
    chart_versions: dict[str, str]
    #: Grafana's Service for the public route; None when Grafana stays internal.
    grafana_route: GrafanaRoute | None
    #: The values each release was given (what the chart's selectors and sidecar read).
    values: dict[str, dict[str, Any]]
    #: kube-prometheus-stack: rules, monitors and dashboards wait for its CRDs.
    monitoring_release: k8s.helm.v3.Release

    def __init__(
        self, name: str, args: ClusterAddonsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        if args.issuer != "selfsigned" and not args.acme_email:
            raise ValueError(f"ClusterAddons: issuer {args.issuer} needs acme_email")
        pins = load_pins(args.charts_dir)
        missing = [chart for chart in CHART_NAMES if chart not in pins]
        if missing:
            raise ValueError(f"charts/versions.yaml lacks {', '.join(missing)}")
        super().__init__(name, args, opts)
        self.edge_namespace = pins["envoy-gateway"].namespace
        self.cert_manager_namespace = pins["cert-manager"].namespace
        self.monitoring_namespace = pins["kube-prometheus-stack"].namespace

        self._name = name
        self._args = args
        self._pins = pins
        namespaces = self._namespaces()
        policies = AddonNetworkPolicies(
            f"{name}-policies",
            AddonNetworkPoliciesArgs(
                edge_namespace=self.edge_namespace,
                cert_manager_namespace=self.cert_manager_namespace,
                monitoring_namespace=self.monitoring_namespace,
                app_namespaces=list(args.app_namespaces),
                cluster_cidrs=list(args.cluster_cidrs),
                api_server=args.api_server,
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(namespaces.values())),
        )
        monitoring_secrets = [self._grafana_admin(name, self.monitoring_namespace, namespaces)]
        if args.alertmanager is not None:
            monitoring_secrets.append(
                alertmanager_secret(
                    f"{name}-alertmanager",
                    namespace=self.monitoring_namespace,
                    credentials=args.alertmanager,
                    opts=pulumi.ResourceOptions(parent=self, depends_on=list(namespaces.values())),
                )
            )
        self.values = {chart: self._values(chart) for chart in CHART_NAMES}
        releases: dict[str, k8s.helm.v3.Release] = {}
        for chart in CHART_NAMES:
            after: list[pulumi.Resource] = [policies, *monitoring_secrets]
            if pins[chart].namespace in namespaces:
                after.append(namespaces[pins[chart].namespace])
            # Each chart after the previous one: the monitoring CRDs (the others'
            # ServiceMonitors) come first, and cert-manager needs envoy-gateway's
            # Gateway API CRDs when it starts.
            if releases:
                after.append(list(releases.values())[-1])
            releases[chart] = self._release(chart, after)

        issuer = self._cluster_issuer(name, args, releases["cert-manager"])
        gateway_class = self._gateway_class(name, args, releases["envoy-gateway"])
        self.monitoring_release = releases[MONITORING_CHART]

        # Through the resource's id, so whoever reads the name also waits for the issuer.
        self.issuer_name = issuer.id.apply(lambda _: args.issuer)
        self.ready = [*releases.values(), issuer, gateway_class]
        self.chart_versions = {chart: pins[chart].version for chart in CHART_NAMES}
        self.grafana_route = (
            GrafanaRoute(
                host=args.grafana_host, namespace=self.monitoring_namespace, service=GRAFANA_SERVICE
            )
            if args.grafana_host
            else None
        )
        self.register_outputs(
            {"issuer_name": self.issuer_name, "chart_versions": self.chart_versions}
        )

    def _namespaces(self) -> dict[str, IsolatedNamespace]:
        """Each chart's namespace, default-deny from the start (unless the cluster owns it)."""
        namespaces: dict[str, IsolatedNamespace] = {}
        for chart in CHART_NAMES:
            pin = self._pins[chart]
            if pin.create_namespace and pin.namespace not in namespaces:
                edge = pin.namespace == self.edge_namespace
                namespaces[pin.namespace] = IsolatedNamespace(
                    f"{self._name}-{pin.namespace}",
                    IsolatedNamespaceArgs(
                        name=pin.namespace,
                        pod_security=pin.pod_security,
                        labels=self._args.edge_namespace_labels if edge else {},
                    ),
                    opts=pulumi.ResourceOptions(parent=self),
                )
        return namespaces

    def _values(self, chart: str) -> dict[str, Any]:
        """The files' values, the platform's Alertmanager routing, then the overrides."""
        args = self._args
        values = chart_values(chart, args.environment, args.charts_dir)
        if chart == MONITORING_CHART and args.alertmanager is not None:
            slack = args.alertmanager.slack_webhook_url is not None
            values = deep_merge(values, alertmanager_values(slack=slack))
        return deep_merge(values, args.value_overrides.get(chart, {}))

    def _release(self, chart: str, after: Sequence[pulumi.Resource]) -> k8s.helm.v3.Release:
        """One pinned Helm release with the environment's merged values."""
        return pinned_release(
            f"{self._name}-{chart}",
            self._pins[chart],
            # Namespaces are created by this component, with their default-deny policy.
            create_namespace=False,
            values=self.values[chart],
            cleanup_on_fail=True,
            wait_for_jobs=True,
            timeout=self._args.timeout_seconds,
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(after)),
        )

    def _grafana_admin(
        self, name: str, namespace: str, namespaces: Mapping[str, IsolatedNamespace]
    ) -> k8s.core.v1.Secret:
        """Grafana's admin login, generated once and kept in Pulumi state as a secret."""
        password = random.RandomPassword(
            f"{name}-grafana-admin-password",
            length=32,
            special=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        depends: list[pulumi.Resource] = [namespaces[namespace]] if namespace in namespaces else []
        return k8s.core.v1.Secret(
            f"{name}-grafana-admin",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=GRAFANA_ADMIN_SECRET, namespace=namespace),
            type="Opaque",
            string_data={"admin-user": "admin", "admin-password": password.result},
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends),
        )

    def _cluster_issuer(
        self, name: str, args: ClusterAddonsArgs, cert_manager: k8s.helm.v3.Release
    ) -> k8s.apiextensions.CustomResource:
        """The ClusterIssuer the Gateway names in ``cert-manager.io/cluster-issuer``."""
        if args.issuer == "selfsigned":
            spec: dict[str, Any] = {"selfSigned": {}}
        else:
            spec = {
                "acme": {
                    "server": ACME_SERVERS[args.issuer],
                    "email": args.acme_email,
                    "privateKeySecretRef": {"name": f"{args.issuer}-account-key"},
                    # cert-manager adds a temporary HTTPRoute for each challenge to the
                    # Gateway's plain-HTTP listener (an Exact path: it wins over the
                    # redirect to https).
                    "solvers": [
                        {
                            "http01": {
                                "gatewayHTTPRoute": {
                                    "parentRefs": [
                                        {
                                            "name": GATEWAY_NAME,
                                            "namespace": args.gateway_namespace,
                                            "kind": "Gateway",
                                            "sectionName": HTTP_LISTENER,
                                        }
                                    ]
                                }
                            }
                        }
                    ],
                }
            }
        return k8s.apiextensions.CustomResource(
            f"{name}-cluster-issuer",
            api_version="cert-manager.io/v1",
            kind="ClusterIssuer",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=args.issuer),
            spec=spec,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[cert_manager]),
        )

    def _gateway_class(
        self, name: str, args: ClusterAddonsArgs, envoy_gateway: k8s.helm.v3.Release
    ) -> k8s.apiextensions.CustomResource:
        """The GatewayClass of the platform, with this environment's proxy parameters.

        The ``EnvoyProxy`` object (``charts/envoy-gateway/proxy*.yaml``) says how
        the proxies run and are exposed: behind an AWS Network Load Balancer,
        or as NodePorts 30080/30443 that kind maps to the host's 80/443.
        """
        proxy = k8s.apiextensions.CustomResource(
            f"{name}-envoy-proxy",
            api_version=ENVOY_GATEWAY_API_VERSION,
            kind="EnvoyProxy",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=GATEWAY_CLASS, namespace=self.edge_namespace),
            spec=chart_values("envoy-gateway", args.environment, args.charts_dir, stem="proxy"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[envoy_gateway]),
        )
        return k8s.apiextensions.CustomResource(
            f"{name}-gateway-class",
            api_version=GATEWAY_API_VERSION,
            kind="GatewayClass",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=GATEWAY_CLASS),
            spec={
                "controllerName": ENVOY_GATEWAY_CONTROLLER,
                "parametersRef": {
                    "group": ENVOY_GATEWAY_API_VERSION.split("/")[0],
                    "kind": "EnvoyProxy",
                    "name": GATEWAY_CLASS,
                    "namespace": self.edge_namespace,
                },
            },
            opts=pulumi.ResourceOptions(parent=self, depends_on=[envoy_gateway, proxy]),
        )
