"""Third-party cluster add-ons as pinned Helm releases.

* ingress-nginx: the public entry point (Ingress class ``nginx``).
* cert-manager: TLS certificates, plus the ClusterIssuer the Ingresses name.
* metrics-server: the resource metrics API the HorizontalPodAutoscalers read;
  neither EKS nor kind ships it.
* kube-prometheus-stack: Prometheus, Alertmanager and Grafana; a
  ServiceMonitor here selects every Service labelled
  ``enterprisehub.ai/metrics=true`` in the application namespaces.

Versions and repositories come from ``charts/versions.yaml`` (exact versions,
reasons in ``charts/README.md``); values from ``charts/<chart>/values.yaml``
deep-merged with ``charts/<chart>/values-<environment>.yaml`` and then with
what the program computes (hostnames). The files are read here, at
declaration time, not inside ``apply()``: they are part of the repository,
not stack config.

Each add-on namespace is an :class:`~infra.components.network_policy.IsolatedNamespace`
(default-deny) with the allow rules of
:class:`~infra.components.network_policy.AddonNetworkPolicies`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random
import yaml

from infra import catalog
from infra.components import hardening
from infra.components.network_policy import (
    AddonNetworkPolicies,
    AddonNetworkPoliciesArgs,
    IsolatedNamespace,
    IsolatedNamespaceArgs,
    PodSecurityLevel,
)

#: The repository's charts/ folder.
CHARTS_DIR: Final = Path(__file__).resolve().parents[2] / "charts"
#: The charts this component installs, in installation order.
CHART_NAMES: Final = ("kube-prometheus-stack", "metrics-server", "cert-manager", "ingress-nginx")
ENVIRONMENTS: Final = ("local", "dev", "staging", "production")
#: An exact SemVer version, optionally with a leading "v" (cert-manager tags its charts so).
EXACT_VERSION: Final = re.compile(r"^v?\d+\.\d+\.\d+$")

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
        if not EXACT_VERSION.match(version):
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


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``: maps merge key by key, anything else replaces."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def chart_values(name: str, environment: str, charts_dir: Path = CHARTS_DIR) -> dict[str, Any]:
    """``values.yaml`` merged with ``values-<environment>.yaml`` (when present)."""
    if environment not in ENVIRONMENTS:
        raise ValueError(f"unknown environment {environment!r}; expected one of {ENVIRONMENTS}")
    folder = charts_dir / name
    values: dict[str, Any] = yaml.safe_load((folder / "values.yaml").read_text("utf-8")) or {}
    per_env = folder / f"values-{environment}.yaml"
    if per_env.exists():
        values = deep_merge(values, yaml.safe_load(per_env.read_text("utf-8")) or {})
    return values


@dataclass(frozen=True, kw_only=True)
class ClusterAddonsArgs:
    """Inputs of :class:`ClusterAddons`."""

    environment: str
    #: Namespaces of the platform's workloads (scraped, proxied to).
    app_namespaces: Sequence[str]
    #: ClusterIssuer to create; its name is what the Ingresses reference.
    issuer: IssuerName
    #: ACME account contact; required for the letsencrypt issuers.
    acme_email: str | None = None
    #: Public Grafana hostname; None keeps Grafana internal (port-forward).
    grafana_host: str | None = None
    #: TLS secret of the Grafana Ingress.
    grafana_tls_secret: str = "grafana-tls"  # noqa: S105 - a Secret's name
    #: Where the API server and nodes are (the VPC CIDR on AWS); see AddonNetworkPolicies.
    cluster_cidrs: Sequence[str] = ("0.0.0.0/0",)
    #: Extra values per chart, merged last (e.g. a StorageClass name).
    value_overrides: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    charts_dir: Path = CHARTS_DIR
    #: Helm's wait timeout per release (seconds); kube-prometheus-stack's CRDs are large.
    timeout_seconds: int = 900


class ClusterAddons(pulumi.ComponentResource):
    """The four Helm releases, their namespaces, the ClusterIssuer and the ServiceMonitor."""

    issuer_name: pulumi.Output[str]
    ingress_namespace: str
    monitoring_namespace: str
    cert_manager_namespace: str
    #: Everything an Ingress or CRD object must wait for.
    ready: list[pulumi.Resource]
    chart_versions: dict[str, str]

    def __init__(
        self, name: str, args: ClusterAddonsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        if args.issuer != "selfsigned" and not args.acme_email:
            raise ValueError(f"ClusterAddons: issuer {args.issuer} needs acme_email")
        pins = load_pins(args.charts_dir)
        missing = [chart for chart in CHART_NAMES if chart not in pins]
        if missing:
            raise ValueError(f"charts/versions.yaml lacks {', '.join(missing)}")
        super().__init__("enterprisehub:k8s:ClusterAddons", name, None, opts)
        self.ingress_namespace = pins["ingress-nginx"].namespace
        self.cert_manager_namespace = pins["cert-manager"].namespace
        self.monitoring_namespace = pins["kube-prometheus-stack"].namespace

        namespaces: dict[str, IsolatedNamespace] = {}
        for chart in CHART_NAMES:
            pin = pins[chart]
            if pin.create_namespace and pin.namespace not in namespaces:
                namespaces[pin.namespace] = IsolatedNamespace(
                    f"{name}-{pin.namespace}",
                    IsolatedNamespaceArgs(name=pin.namespace, pod_security=pin.pod_security),
                    opts=pulumi.ResourceOptions(parent=self),
                )
        policies = AddonNetworkPolicies(
            f"{name}-policies",
            AddonNetworkPoliciesArgs(
                ingress_namespace=self.ingress_namespace,
                cert_manager_namespace=self.cert_manager_namespace,
                monitoring_namespace=self.monitoring_namespace,
                app_namespaces=list(args.app_namespaces),
                cluster_cidrs=list(args.cluster_cidrs),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(namespaces.values())),
        )

        grafana_secret = self._grafana_admin(
            name, pins["kube-prometheus-stack"].namespace, namespaces
        )
        computed = self._computed_values(args)
        releases: dict[str, k8s.helm.v3.Release] = {}
        for chart in CHART_NAMES:
            pin = pins[chart]
            values = deep_merge(
                deep_merge(
                    chart_values(chart, args.environment, args.charts_dir), computed.get(chart, {})
                ),
                args.value_overrides.get(chart, {}),
            )
            # The monitoring stack goes first: the other charts' ServiceMonitors
            # need its CRDs.
            after: list[pulumi.Resource] = [policies, grafana_secret]
            if pin.namespace in namespaces:
                after.append(namespaces[pin.namespace])
            if chart != "kube-prometheus-stack":
                after.append(releases["kube-prometheus-stack"])
            releases[chart] = k8s.helm.v3.Release(
                f"{name}-{chart}",
                name=chart,
                chart=pin.chart,
                version=pin.version,
                repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=pin.repository),
                namespace=pin.namespace,
                # Namespaces are created above, with their default-deny policy.
                create_namespace=False,
                values=values,
                atomic=True,
                cleanup_on_fail=True,
                wait_for_jobs=True,
                max_history=10,
                timeout=args.timeout_seconds,
                opts=pulumi.ResourceOptions(parent=self, depends_on=after),
            )

        issuer = self._cluster_issuer(name, args, releases["cert-manager"])
        k8s.apiextensions.CustomResource(
            f"{name}-service-monitor",
            api_version="monitoring.coreos.com/v1",
            kind="ServiceMonitor",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=f"{catalog.PLATFORM}-services",
                namespace=self.monitoring_namespace,
                labels={hardening.PART_OF_LABEL: catalog.PLATFORM},
            ),
            spec={
                "selector": {"matchLabels": {hardening.METRICS_LABEL: "true"}},
                "namespaceSelector": {"matchNames": list(args.app_namespaces)},
                "endpoints": [{"port": "http", "path": "/metrics", "interval": "30s"}],
            },
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[releases["kube-prometheus-stack"]]
            ),
        )

        # Through the resource's id, so whoever reads the name also waits for the issuer.
        self.issuer_name = issuer.id.apply(lambda _: args.issuer)
        self.ready = [*releases.values(), issuer]
        self.chart_versions = {chart: pins[chart].version for chart in CHART_NAMES}
        self.register_outputs(
            {"issuer_name": self.issuer_name, "chart_versions": self.chart_versions}
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
        """The ClusterIssuer the Ingresses name in ``cert-manager.io/cluster-issuer``."""
        if args.issuer == "selfsigned":
            spec: dict[str, Any] = {"selfSigned": {}}
        else:
            spec = {
                "acme": {
                    "server": ACME_SERVERS[args.issuer],
                    "email": args.acme_email,
                    "privateKeySecretRef": {"name": f"{args.issuer}-account-key"},
                    "solvers": [{"http01": {"ingress": {"ingressClassName": "nginx"}}}],
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

    @staticmethod
    def _computed_values(args: ClusterAddonsArgs) -> dict[str, dict[str, Any]]:
        """Values that depend on the stack rather than on the environment's file."""
        grafana: dict[str, Any] = {"enabled": False}
        if args.grafana_host:
            grafana = {
                "enabled": True,
                "ingressClassName": "nginx",
                "annotations": {"cert-manager.io/cluster-issuer": args.issuer},
                "hosts": [args.grafana_host],
                "tls": [{"secretName": args.grafana_tls_secret, "hosts": [args.grafana_host]}],
            }
        return {"kube-prometheus-stack": {"grafana": {"ingress": grafana}}}
