"""The Streamlit dashboards served from the cluster, and the public Ingresses.

The seed hosted its Streamlit dashboards on Vercel, whose Python runtime runs
short-lived functions and cannot keep Streamlit's websocket session alive. Here
they run as an ordinary hardened Deployment behind ingress-nginx with TLS from
cert-manager.

Ingresses. ingress-nginx applies annotations per Ingress object, so the public
surface is split into three objects that share hosts and one TLS secret:

* ``<name>-api``: the API hostname's REST routes with default timeouts. It is
  the only one annotated with the cert-manager ClusterIssuer, and its TLS block
  lists *every* public host, so exactly one Certificate (one secret) covers the
  platform and no two Ingresses compete for the same secret.
* ``<name>-feed``: the websocket feed (``/v1/feed``) with hour-long read/send
  timeouts; nginx's default 60 s would cut idle sockets between heartbeats
  during quiet periods and force reconnect storms.
* ``<name>-dashboards``: the dashboard hostnames, with the same long timeouts
  (Streamlit's UI is a websocket) and cookie affinity, because a Streamlit
  session lives in one pod's memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import pulumi
import pulumi_kubernetes as k8s

from infra import catalog
from infra.components import hardening

DASHBOARDS_NAME: Final = "dashboards"
DASHBOARDS_PORT: Final = 8501
#: The realtime feed's websocket path: its route gets the long proxy timeouts.
FEED_PATH: Final = "/v1/feed"
#: Streamlit's own health endpoint (answers once the server is up).
DASHBOARDS_HEALTH_PATH: Final = "/_stcore/health"
DASHBOARDS_COMMAND: Final = (
    "streamlit",
    "run",
    "services/dashboards/app.py",
    "--server.port",
    str(DASHBOARDS_PORT),
    "--server.headless",
    "true",
    "--browser.gatherUsageStats",
    "false",
)
#: Keys the dashboards read: stored metrics rows (Postgres) and their cache (Redis).
DASHBOARDS_SECRET_KEYS: Final = ("DATABASE_URL", "REDIS_URL")

_NGINX: Final = "nginx.ingress.kubernetes.io"


@dataclass(frozen=True, kw_only=True)
class DashboardsArgs:
    """Inputs of :class:`Dashboards` (the Streamlit app's Deployment and Service)."""

    namespace: pulumi.Input[str]
    image: pulumi.Input[str]
    settings: Mapping[str, str]
    #: DATABASE_URL and REDIS_URL (application role, so row-level security applies).
    secrets: Mapping[str, pulumi.Input[str]]
    command: Sequence[str] = DASHBOARDS_COMMAND
    port: int = DASHBOARDS_PORT
    #: Two keep the dashboards up through a node drain; sessions are cheap to rebuild.
    replicas: int = 2
    resources: catalog.Resources = field(
        default_factory=lambda: catalog.Resources(cpu="500m", memory="1Gi")
    )
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)


class Dashboards(pulumi.ComponentResource):
    """Deployment, Service, PDB, ServiceAccount, ConfigMap and Secret of the dashboards."""

    service_name: pulumi.Output[str]
    port: int

    def __init__(
        self, name: str, args: DashboardsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        owner = "Dashboards"
        hardening.check_image(args.image, owner)
        hardening.require_keys(owner, "secrets", args.secrets, DASHBOARDS_SECRET_KEYS)
        if args.replicas < 1:
            raise ValueError(f"{owner}: replicas must be at least 1, got {args.replicas}")
        super().__init__("enterprisehub:k8s:Dashboards", name, None, opts)
        labels = hardening.labels(DASHBOARDS_NAME, hardening.COMPONENT_DASHBOARD)
        selector = hardening.selector_labels(DASHBOARDS_NAME)
        child = pulumi.ResourceOptions(parent=self)

        def meta(obj_name: pulumi.Input[str]) -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(
                name=obj_name, namespace=args.namespace, labels=labels
            )

        account = k8s.core.v1.ServiceAccount(
            f"{name}-sa",
            metadata=meta(DASHBOARDS_NAME),
            automount_service_account_token=False,
            opts=child,
        )
        settings = dict(args.settings)
        config = k8s.core.v1.ConfigMap(
            f"{name}-config",
            metadata=meta(hardening.hashed_name(f"{DASHBOARDS_NAME}-config", settings)),
            data=settings,
            immutable=True,
            opts=child,
        )
        secret_values = {key: pulumi.Output.secret(value) for key, value in args.secrets.items()}
        secret = k8s.core.v1.Secret(
            f"{name}-secret",
            metadata=meta(hardening.hashed_name(f"{DASHBOARDS_NAME}-secret", secret_values)),
            type="Opaque",
            string_data=secret_values,
            immutable=True,
            opts=child,
        )

        def probe(period: int, failures: int) -> k8s.core.v1.ProbeArgs:
            return k8s.core.v1.ProbeArgs(
                http_get=k8s.core.v1.HTTPGetActionArgs(path=DASHBOARDS_HEALTH_PATH, port="http"),
                period_seconds=period,
                timeout_seconds=2,
                failure_threshold=failures,
            )

        k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=DASHBOARDS_NAME,
                namespace=args.namespace,
                labels=labels,
                annotations=hardening.SECRET_ENV_SKIP,
            ),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                replicas=args.replicas,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
                strategy=k8s.apps.v1.DeploymentStrategyArgs(
                    type="RollingUpdate",
                    rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(
                        max_unavailable=0, max_surge=1
                    ),
                ),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(labels=labels),
                    spec=k8s.core.v1.PodSpecArgs(
                        service_account_name=account.metadata.name,
                        automount_service_account_token=False,
                        security_context=hardening.pod_security_context(),
                        containers=[
                            k8s.core.v1.ContainerArgs(
                                name=DASHBOARDS_NAME,
                                image=args.image,
                                image_pull_policy="IfNotPresent",
                                command=list(args.command),
                                ports=[
                                    k8s.core.v1.ContainerPortArgs(
                                        name="http", container_port=args.port
                                    )
                                ],
                                env_from=[
                                    k8s.core.v1.EnvFromSourceArgs(
                                        config_map_ref=k8s.core.v1.ConfigMapEnvSourceArgs(
                                            name=config.metadata.name
                                        )
                                    ),
                                    k8s.core.v1.EnvFromSourceArgs(
                                        secret_ref=k8s.core.v1.SecretEnvSourceArgs(
                                            name=secret.metadata.name
                                        )
                                    ),
                                ],
                                # Streamlit keeps its config and caches under ~/.streamlit.
                                env=[k8s.core.v1.EnvVarArgs(name="HOME", value="/tmp")],  # noqa: S108
                                startup_probe=probe(period=5, failures=24),
                                liveness_probe=probe(period=10, failures=3),
                                readiness_probe=probe(period=5, failures=3),
                                resources=hardening.resources(
                                    args.resources.cpu, args.resources.memory
                                ),
                                security_context=hardening.container_security_context(),
                                volume_mounts=[hardening.tmp_mount()],
                            )
                        ],
                        volumes=[hardening.tmp_volume()],
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)),
        )
        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=meta(DASHBOARDS_NAME),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="ClusterIP",
                selector=selector,
                ports=[
                    k8s.core.v1.ServicePortArgs(
                        name="http", port=args.port, target_port="http", protocol="TCP"
                    )
                ],
            ),
            opts=child,
        )
        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=meta(DASHBOARDS_NAME),
            spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                max_unavailable=1,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
            ),
            opts=child,
        )
        self.service_name = service.metadata.name
        self.port = args.port
        self.register_outputs({"service_name": self.service_name})


@dataclass(frozen=True, slots=True)
class ApiRoute:
    """One path prefix of the API hostname and the Service that answers it."""

    path: str
    service: pulumi.Input[str]
    port: int
    #: Long-lived connection (websocket): gets the long timeouts.
    streaming: bool = False


def default_api_routes() -> tuple[ApiRoute, ...]:
    """The API hostname's routes: each shipped service's ``api_paths``.

    Kubernetes Ingress matches the longest prefix, so ``/v1/leads/events``
    (the CRM webhook, websocket-manager) and ``/v1/leads/score`` (ml-services)
    can share the ``/v1/leads`` stem. The feed is a websocket and gets the
    long proxy timeouts (see :class:`PublicIngress`).
    """
    return tuple(
        ApiRoute(path, spec.name, spec.port, streaming=path == FEED_PATH)
        for spec in catalog.SHIPPED_SERVICES.values()
        for path in spec.api_paths
    )


@dataclass(frozen=True, kw_only=True)
class PublicIngressArgs:
    """Inputs of :class:`PublicIngress`."""

    namespace: pulumi.Input[str]
    api_host: str
    #: Dashboard name -> hostname (``config.StackConfig.dashboard_hosts``).
    dashboard_hosts: Mapping[str, str]
    #: Name of the ClusterIssuer cert-manager signs with (addons.ClusterAddons output).
    cluster_issuer: pulumi.Input[str]
    dashboards_service: pulumi.Input[str] = DASHBOARDS_NAME
    dashboards_port: int = DASHBOARDS_PORT
    api_routes: Sequence[ApiRoute] = field(default_factory=default_api_routes)
    tls_secret_name: str = f"{catalog.PLATFORM}-tls"
    ingress_class: str = "nginx"
    #: Read/send timeout for websockets (seconds); the feed sends a heartbeat every 30 s.
    stream_timeout_seconds: int = 3600
    #: True where no controller publishes a load-balancer address (Pulumi would wait).
    skip_await: bool = False
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)


class PublicIngress(pulumi.ComponentResource):
    """The three Ingresses of the public hostnames (see the module docstring)."""

    urls: pulumi.Output[dict[str, str]]

    def __init__(
        self, name: str, args: PublicIngressArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        _validate_ingress(args)
        super().__init__("enterprisehub:k8s:PublicIngress", name, None, opts)
        all_hosts = [args.api_host, *args.dashboard_hosts.values()]
        streaming = [route for route in args.api_routes if route.streaming]
        plain = [route for route in args.api_routes if not route.streaming]
        long_timeouts = {
            f"{_NGINX}/proxy-read-timeout": str(args.stream_timeout_seconds),
            f"{_NGINX}/proxy-send-timeout": str(args.stream_timeout_seconds),
        }
        common = {f"{_NGINX}/ssl-redirect": "true"}
        if args.skip_await:
            common["pulumi.com/skipAwait"] = "true"

        self._ingress(
            f"{name}-api",
            args,
            annotations={**common, "cert-manager.io/cluster-issuer": args.cluster_issuer},
            tls_hosts=all_hosts,
            rules=[_rule(args.api_host, plain)],
        )
        if streaming:
            self._ingress(
                f"{name}-feed",
                args,
                annotations={**common, **long_timeouts},
                tls_hosts=[args.api_host],
                rules=[_rule(args.api_host, streaming)],
            )
        dashboard_route = [ApiRoute("/", args.dashboards_service, args.dashboards_port)]
        if args.dashboard_hosts:
            self._dashboards_ingress(name, args, common, long_timeouts, dashboard_route)
        self.urls = pulumi.Output.from_input(
            {
                "api": f"https://{args.api_host}",
                **{key: f"https://{host}" for key, host in args.dashboard_hosts.items()},
            }
        )
        self.register_outputs({"urls": self.urls})

    def _dashboards_ingress(
        self,
        name: str,
        args: PublicIngressArgs,
        common: Mapping[str, str],
        long_timeouts: Mapping[str, str],
        dashboard_route: Sequence[ApiRoute],
    ) -> None:
        self._ingress(
            f"{name}-dashboards",
            args,
            annotations={
                **common,
                **long_timeouts,
                f"{_NGINX}/affinity": "cookie",
                f"{_NGINX}/session-cookie-name": "eh-dashboards",
                f"{_NGINX}/session-cookie-secure": "true",
                f"{_NGINX}/session-cookie-samesite": "Strict",
            },
            tls_hosts=list(args.dashboard_hosts.values()),
            rules=[_rule(host, dashboard_route) for host in args.dashboard_hosts.values()],
        )

    def _ingress(
        self,
        logical: str,
        args: PublicIngressArgs,
        *,
        annotations: Mapping[str, pulumi.Input[str]],
        tls_hosts: Sequence[str],
        rules: Sequence[k8s.networking.v1.IngressRuleArgs],
    ) -> k8s.networking.v1.Ingress:
        return k8s.networking.v1.Ingress(
            logical,
            metadata=k8s.meta.v1.ObjectMetaArgs(
                # The logical name is unique per component instance and readable.
                name=logical,
                namespace=args.namespace,
                labels={hardening.PART_OF_LABEL: catalog.PLATFORM},
                annotations=dict(annotations),
            ),
            spec=k8s.networking.v1.IngressSpecArgs(
                ingress_class_name=args.ingress_class,
                tls=[
                    k8s.networking.v1.IngressTLSArgs(
                        hosts=list(tls_hosts), secret_name=args.tls_secret_name
                    )
                ],
                rules=list(rules),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)),
        )


def _rule(host: str, routes: Sequence[ApiRoute]) -> k8s.networking.v1.IngressRuleArgs:
    return k8s.networking.v1.IngressRuleArgs(
        host=host,
        http=k8s.networking.v1.HTTPIngressRuleValueArgs(
            paths=[
                k8s.networking.v1.HTTPIngressPathArgs(
                    path=route.path,
                    path_type="Prefix",
                    backend=k8s.networking.v1.IngressBackendArgs(
                        service=k8s.networking.v1.IngressServiceBackendArgs(
                            name=route.service,
                            port=k8s.networking.v1.ServiceBackendPortArgs(number=route.port),
                        )
                    ),
                )
                for route in routes
            ]
        ),
    )


def _validate_ingress(args: PublicIngressArgs) -> None:
    owner = "PublicIngress"
    hosts = [args.api_host, *args.dashboard_hosts.values()]
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
