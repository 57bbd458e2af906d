"""One backend feature service of the seed's table, as Kubernetes objects.

Each instance declares the ServiceAccount, ConfigMap, Secret, Deployment,
Service, HorizontalPodAutoscaler and PodDisruptionBudget of one service
(websocket-manager, ml-services, coaching-engine or churn-orchestrator). The
numbers come from :mod:`infra.catalog`; everything that differs per stack
(image, namespace, settings, secrets, IAM role, replica bounds and sizes) comes in
through :class:`FeatureServiceArgs`.

Design decisions, with the reason for each:

* **Probes.** Liveness and startup hit ``/health`` (process alive, answers
  HTTP); readiness hits the seed's feature path (``/health/websocket`` ...),
  which checks the service's own dependencies. A Redis or Postgres outage
  should take pods out of the Service, not restart every pod of every service
  at once, which is what a dependency-checking liveness probe would do.
* **No ``replicas`` on the Deployment.** The HPA owns the replica count. If the
  program declared it too, every ``pulumi up`` would reset a scaled-out
  service to the declared number in the middle of traffic.
* **PodDisruptionBudget ``maxUnavailable: 1``.** ``minAvailable: 1`` on a
  one-replica service (churn-orchestrator's minimum) never allows an eviction,
  so a node drain would hang forever. ``maxUnavailable: 1`` always lets one
  pod move at a time and still keeps n-1 serving for the larger services.
* **Rolling update ``maxUnavailable: 0``.** Capacity never drops during a
  deploy; the surge pod must pass readiness first.
* **Content-hashed ConfigMap and Secret names.** A changed setting or a
  rotated key yields a new object name, which changes the pod template, so the
  Deployment rolls and every pod picks the value up. Both objects are
  ``immutable`` (a name never changes content).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

import pulumi
import pulumi_kubernetes as k8s

from infra import catalog
from infra.components import hardening

#: Liveness and startup path: the seed's "Overall system health" endpoint.
LIVENESS_PATH: Final = "/health"
#: Where the services expose Prometheus metrics (prometheus_client's ASGI app).
METRICS_PATH: Final = "/metrics"
#: Settings every service's ConfigMap must carry; the rest have defaults in the app.
REQUIRED_SETTINGS: Final = ("ENVIRONMENT", "DEPLOYMENT_ENV", "LOG_LEVEL")
#: Keys that would defeat row-level security if a service held them.
FORBIDDEN_SECRET_KEYS: Final = catalog.MIGRATION_SECRET_KEYS
#: Names that must never appear in a ConfigMap (ConfigMaps are readable by far more roles).
SECRET_KEY_NAMES: Final = frozenset(catalog.SERVICE_SECRET_KEYS + catalog.MIGRATION_SECRET_KEYS)


@dataclass(frozen=True, kw_only=True)
class FeatureServiceArgs:
    """Inputs of :class:`FeatureService`.

    ``settings`` holds the stack-dependent ConfigMap values (see
    ``catalog.STACK_SETTINGS``); the catalog's common and per-service settings
    are added underneath, so the stack can override a seed default. ``secrets``
    must hold every key of ``catalog.SERVICE_SECRET_KEYS`` (empty strings for
    optional ones); values should be secret Outputs and are wrapped as secret
    anyway.
    """

    spec: catalog.ServiceSpec
    namespace: pulumi.Input[str]
    #: ``registry/repo@sha256:...``; a tag is refused (see hardening.check_image).
    image: pulumi.Input[str]
    settings: Mapping[str, str]
    secrets: Mapping[str, pulumi.Input[str]]
    #: IAM role for the ServiceAccount (IRSA); None on the local stack.
    role_arn: pulumi.Input[str] | None = None
    # Per-stack overrides of the seed's numbers (``config.ServicePlan`` carries them);
    # None keeps the catalog's value. Autoscaler targets always come from the catalog.
    min_replicas: int | None = None
    max_replicas: int | None = None
    cpu: str | None = None
    memory: str | None = None

    @property
    def scaling(self) -> catalog.Scaling:
        """The catalog's scaling with this stack's replica bounds."""
        seed = self.spec.scaling
        return catalog.Scaling(
            min_replicas=self.min_replicas or seed.min_replicas,
            max_replicas=self.max_replicas or seed.max_replicas,
            cpu_target_percent=seed.cpu_target_percent,
            memory_target_percent=seed.memory_target_percent,
        )

    @property
    def resources(self) -> catalog.Resources:
        """The catalog's size with this stack's CPU and memory."""
        seed = self.spec.resources
        return catalog.Resources(cpu=self.cpu or seed.cpu, memory=self.memory or seed.memory)

    #: Resources the rollout must wait for: the migration Job (and flags init).
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)
    #: Seconds a starting pod may take before liveness applies (model load, warm-up).
    startup_budget_seconds: int = 180
    #: Time for in-flight requests and open sockets to finish on shutdown.
    termination_grace_seconds: int = 30


class FeatureService(pulumi.ComponentResource):
    """Deployment, Service, HPA, PDB, ServiceAccount, ConfigMap and Secret of one service."""

    deployment_name: pulumi.Output[str]
    service_name: pulumi.Output[str]
    #: In-cluster URL, e.g. ``http://ml-services.enterprisehub.svc.cluster.local:8002``.
    internal_url: pulumi.Output[str]
    config_map_name: pulumi.Output[str]
    secret_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: FeatureServiceArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        spec = args.spec
        # Validate first: a bad input must fail before anything is registered.
        _validate(f"FeatureService {spec.name}", args)
        super().__init__("enterprisehub:k8s:FeatureService", name, None, opts)
        scaling = args.scaling
        sizes = args.resources
        labels = hardening.labels(spec.name, hardening.COMPONENT_API)
        selector = hardening.selector_labels(spec.name)
        child = pulumi.ResourceOptions(parent=self)

        def meta(obj_name: pulumi.Input[str]) -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(
                name=obj_name, namespace=args.namespace, labels=labels
            )

        sa_annotations = (
            {"eks.amazonaws.com/role-arn": args.role_arn} if args.role_arn is not None else None
        )
        account = k8s.core.v1.ServiceAccount(
            f"{name}-sa",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=spec.service_account,
                namespace=args.namespace,
                labels=labels,
                annotations=sa_annotations,
            ),
            # The services never call the Kubernetes API; IRSA uses its own projected token.
            automount_service_account_token=False,
            opts=child,
        )

        settings = {**catalog.COMMON_SETTINGS, **spec.settings, **args.settings}
        config_map = k8s.core.v1.ConfigMap(
            f"{name}-config",
            metadata=meta(hardening.hashed_name(f"{spec.name}-config", settings)),
            data=settings,
            immutable=True,
            opts=child,
        )

        secret_values = {key: pulumi.Output.secret(value) for key, value in args.secrets.items()}
        secret = k8s.core.v1.Secret(
            f"{name}-secret",
            metadata=meta(hardening.hashed_name(f"{spec.name}-secret", secret_values)),
            type="Opaque",
            string_data=secret_values,
            immutable=True,
            opts=child,
        )

        container = k8s.core.v1.ContainerArgs(
            name=spec.name,
            image=args.image,
            # A digest never changes, so the kubelet's cached copy is always the right one.
            image_pull_policy="IfNotPresent",
            command=list(spec.command),
            ports=[k8s.core.v1.ContainerPortArgs(name="http", container_port=spec.port)],
            env_from=[
                k8s.core.v1.EnvFromSourceArgs(
                    config_map_ref=k8s.core.v1.ConfigMapEnvSourceArgs(name=config_map.metadata.name)
                ),
                k8s.core.v1.EnvFromSourceArgs(
                    secret_ref=k8s.core.v1.SecretEnvSourceArgs(name=secret.metadata.name)
                ),
            ],
            # Python writes nothing else outside /tmp; HOME points there for libraries
            # that cache under ~ (boto3, huggingface-style loaders).
            env=[k8s.core.v1.EnvVarArgs(name="HOME", value="/tmp")],  # noqa: S108
            startup_probe=_http_probe(
                LIVENESS_PATH, period=5, failures=max(1, args.startup_budget_seconds // 5)
            ),
            liveness_probe=_http_probe(LIVENESS_PATH, period=10, failures=3),
            readiness_probe=_http_probe(spec.health_path, period=5, failures=3),
            resources=hardening.resources(sizes.cpu, sizes.memory),
            security_context=hardening.container_security_context(),
            volume_mounts=[hardening.tmp_mount()],
        )

        pod_labels = {**labels, hardening.METRICS_LABEL: "true"}
        deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=spec.name,
                namespace=args.namespace,
                labels=labels,
                annotations=hardening.SECRET_ENV_SKIP,
            ),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
                revision_history_limit=5,
                strategy=k8s.apps.v1.DeploymentStrategyArgs(
                    type="RollingUpdate",
                    rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(
                        max_unavailable=0, max_surge=1
                    ),
                ),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(
                        labels=pod_labels,
                        # For annotation-based scrapers; kube-prometheus-stack uses the
                        # ServiceMonitor that selects the Service's metrics label instead.
                        annotations={
                            "prometheus.io/scrape": "true",
                            "prometheus.io/port": str(spec.port),
                            "prometheus.io/path": METRICS_PATH,
                        },
                    ),
                    spec=k8s.core.v1.PodSpecArgs(
                        service_account_name=account.metadata.name,
                        automount_service_account_token=False,
                        security_context=hardening.pod_security_context(),
                        termination_grace_period_seconds=args.termination_grace_seconds,
                        containers=[container],
                        volumes=[hardening.tmp_volume()],
                        topology_spread_constraints=_spread(selector),
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)),
        )

        service = k8s.core.v1.Service(
            f"{name}-service",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=spec.name,
                namespace=args.namespace,
                labels={**labels, hardening.METRICS_LABEL: "true"},
            ),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="ClusterIP",
                selector=selector,
                ports=[
                    k8s.core.v1.ServicePortArgs(
                        name="http", port=spec.port, target_port="http", protocol="TCP"
                    )
                ],
            ),
            opts=child,
        )

        k8s.autoscaling.v2.HorizontalPodAutoscaler(
            f"{name}-hpa",
            metadata=meta(spec.name),
            spec=k8s.autoscaling.v2.HorizontalPodAutoscalerSpecArgs(
                scale_target_ref=k8s.autoscaling.v2.CrossVersionObjectReferenceArgs(
                    api_version="apps/v1", kind="Deployment", name=deployment.metadata.name
                ),
                min_replicas=scaling.min_replicas,
                max_replicas=scaling.max_replicas,
                metrics=_hpa_metrics(scaling),
                behavior=_hpa_behavior(),
            ),
            opts=child,
        )

        k8s.policy.v1.PodDisruptionBudget(
            f"{name}-pdb",
            metadata=meta(spec.name),
            spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                max_unavailable=1,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=selector),
            ),
            opts=child,
        )

        self.deployment_name = deployment.metadata.name
        self.service_name = service.metadata.name
        self.internal_url = pulumi.Output.concat(
            "http://",
            service.metadata.name,
            ".",
            args.namespace,
            ".svc.cluster.local:",
            str(spec.port),
        )
        self.config_map_name = config_map.metadata.name
        self.secret_name = secret.metadata.name
        self.register_outputs(
            {
                "deployment_name": self.deployment_name,
                "service_name": self.service_name,
                "internal_url": self.internal_url,
                "config_map_name": self.config_map_name,
                "secret_name": self.secret_name,
            }
        )


def _validate(owner: str, args: FeatureServiceArgs) -> None:
    """Fail before any resource when the inputs cannot make a working, safe service."""
    hardening.check_image(args.image, owner)
    hardening.require_keys(owner, "settings", args.settings, REQUIRED_SETTINGS)
    hardening.require_keys(owner, "secrets", args.secrets, catalog.SERVICE_SECRET_KEYS)
    leaked = sorted(SECRET_KEY_NAMES.intersection(args.settings))
    if leaked:
        raise ValueError(f"{owner}: secret keys {', '.join(leaked)} must not be in the ConfigMap")
    forbidden = sorted(set(FORBIDDEN_SECRET_KEYS).intersection(args.secrets))
    if forbidden:
        raise ValueError(
            f"{owner}: {', '.join(forbidden)} is for the migration Job only (owner role)"
        )
    scaling = args.scaling
    if not 1 <= scaling.min_replicas <= scaling.max_replicas:
        raise ValueError(
            f"{owner}: replicas must satisfy 1 <= min ({scaling.min_replicas}) "
            f"<= max ({scaling.max_replicas})"
        )


def _http_probe(path: str, *, period: int, failures: int) -> k8s.core.v1.ProbeArgs:
    """An HTTP GET probe on the container's named port."""
    return k8s.core.v1.ProbeArgs(
        http_get=k8s.core.v1.HTTPGetActionArgs(path=path, port="http", scheme="HTTP"),
        period_seconds=period,
        timeout_seconds=2,
        failure_threshold=failures,
        success_threshold=1,
    )


def _spread(selector: Mapping[str, str]) -> list[k8s.core.v1.TopologySpreadConstraintArgs]:
    """Spread replicas across zones, then nodes.

    ``ScheduleAnyway`` rather than ``DoNotSchedule``: nodes without a zone label
    (kind, minikube) would otherwise leave every pod Pending, and a zone outage
    must not block rescheduling into the surviving zones. ``pod-template-hash``
    makes the spread count only the current revision during a rollout.
    """
    return [
        k8s.core.v1.TopologySpreadConstraintArgs(
            max_skew=1,
            topology_key=key,
            when_unsatisfiable="ScheduleAnyway",
            label_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=dict(selector)),
            match_label_keys=["pod-template-hash"],
        )
        for key in ("topology.kubernetes.io/zone", "kubernetes.io/hostname")
    ]


def _hpa_metrics(scaling: catalog.Scaling) -> list[k8s.autoscaling.v2.MetricSpecArgs]:
    """CPU utilisation always; memory only where the seed gives a threshold."""
    targets = [("cpu", scaling.cpu_target_percent)]
    if scaling.memory_target_percent is not None:
        targets.append(("memory", scaling.memory_target_percent))
    return [
        k8s.autoscaling.v2.MetricSpecArgs(
            type="Resource",
            resource=k8s.autoscaling.v2.ResourceMetricSourceArgs(
                name=resource,
                target=k8s.autoscaling.v2.MetricTargetArgs(
                    type="Utilization", average_utilization=percent
                ),
            ),
        )
        for resource, percent in targets
    ]


def _hpa_behavior() -> k8s.autoscaling.v2.HorizontalPodAutoscalerBehaviorArgs:
    """Scale up at the default pace; scale down one pod a minute after 5 calm minutes.

    Removing a websocket-manager pod drops its sockets (clients resume from
    their last event id), and an ML pod loses its warm model cache, so shrinking
    is deliberately slower than growing.
    """
    return k8s.autoscaling.v2.HorizontalPodAutoscalerBehaviorArgs(
        scale_down=k8s.autoscaling.v2.HPAScalingRulesArgs(
            stabilization_window_seconds=300,
            select_policy="Min",
            policies=[
                k8s.autoscaling.v2.HPAScalingPolicyArgs(type="Pods", value=1, period_seconds=60)
            ],
        ),
    )
