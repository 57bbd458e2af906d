"""The objects every long-running workload of the image declares, built one way.

A feature service, the dashboards and the rollback handler each need a
ServiceAccount, a ConfigMap and a Secret with content-hashed names, one
hardened container reading both through ``envFrom``, a hardened Deployment, a
ClusterIP Service, an autoscaler and a PodDisruptionBudget.
:class:`WorkloadObjects` declares them for one component instance, so the
components differ only in what is really theirs (probe paths, scaling, undo
access, topology spread).

Content-hashed names: a changed setting or a rotated key yields a new object
name, which changes the pod template, so the Deployment rolls and every pod
picks the value up. Both objects are ``immutable`` (a name never changes
content).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

import pulumi
import pulumi_kubernetes as k8s

from infra import catalog
from infra.components import hardening

#: Liveness and startup path: the seed's "Overall system health" endpoint.
LIVENESS_PATH: Final = "/health"
#: Where the services expose Prometheus metrics (prometheus_client's ASGI app).
METRICS_PATH: Final = "/metrics"
#: The container and Service port of a workload that serves its API and its
#: ``/metrics`` on one port; the ServiceMonitor scrapes it by this name.
HTTP_PORT: Final = "http"
#: The port of a workload that serves ``/metrics`` apart (``Workload.metrics_port``);
#: the ServiceMonitor scrapes it by this name.
METRICS_PORT: Final = "metrics"
#: The Service's name for the app port of such a workload. Not ``http``: the
#: ServiceMonitor would scrape ``/metrics`` there too, and find no metrics (a
#: target down for as long as the workload runs). The container keeps ``http``,
#: which its probes name.
APP_PORT: Final = "app"
#: Names that must never appear in a ConfigMap (ConfigMaps are readable by far more roles).
SECRET_KEY_NAMES: Final = frozenset(catalog.SERVICE_SECRET_KEYS + catalog.MIGRATION_SECRET_KEYS)


def refuse_secret_settings(owner: str, settings: Mapping[str, str]) -> None:
    """Fail when a secret's key would land in the workload's ConfigMap."""
    leaked = sorted(SECRET_KEY_NAMES.intersection(settings))
    if leaked:
        raise ValueError(f"{owner}: secret keys {', '.join(leaked)} must not be in the ConfigMap")


def refuse_unread_secrets(
    owner: str, given: Mapping[str, object], read: Sequence[str], *, reader: str
) -> None:
    """Fail when the workload's Secret would carry keys ``reader`` does not read."""
    extra = sorted(set(given) - set(read))
    if extra:
        raise ValueError(f"{owner}: secrets {', '.join(extra)} are not read by {reader}")


def env_from(
    config_map: pulumi.Input[str], secret: pulumi.Input[str] | None
) -> list[k8s.core.v1.EnvFromSourceArgs]:
    """The container environment: a ConfigMap and, optionally, a Secret."""
    sources = [
        k8s.core.v1.EnvFromSourceArgs(
            config_map_ref=k8s.core.v1.ConfigMapEnvSourceArgs(name=config_map)
        )
    ]
    if secret is not None:
        sources.append(
            k8s.core.v1.EnvFromSourceArgs(secret_ref=k8s.core.v1.SecretEnvSourceArgs(name=secret))
        )
    return sources


def http_probe(path: str, *, period: int, failures: int) -> k8s.core.v1.ProbeArgs:
    """An HTTP GET probe on the container's port named ``http``."""
    return k8s.core.v1.ProbeArgs(
        http_get=k8s.core.v1.HTTPGetActionArgs(path=path, port="http", scheme="HTTP"),
        period_seconds=period,
        timeout_seconds=2,
        failure_threshold=failures,
        success_threshold=1,
    )


def health_probes(
    *,
    liveness_path: str,
    readiness_path: str,
    startup_budget_seconds: int = 120,
    readiness_period: int = 5,
) -> dict[str, k8s.core.v1.ProbeArgs]:
    """Startup and liveness on ``liveness_path``, readiness on ``readiness_path``.

    Liveness asks only whether the process answers; readiness may check the
    workload's dependencies, so an outage takes pods out of the Service instead
    of restarting them all. The startup probe gives a starting pod
    ``startup_budget_seconds`` (model load, warm-up) before liveness applies.
    """
    return {
        "startup": http_probe(
            liveness_path, period=5, failures=max(1, startup_budget_seconds // 5)
        ),
        "liveness": http_probe(liveness_path, period=10, failures=3),
        "readiness": http_probe(readiness_path, period=readiness_period, failures=3),
    }


def app_container(
    name: str,
    *,
    image: pulumi.Input[str],
    command: pulumi.Input[Sequence[str]],
    env: Sequence[k8s.core.v1.EnvFromSourceArgs],
    resources: tuple[str, str],
    port: int | None = None,
    metrics_port: int | None = None,
    probes: Mapping[str, k8s.core.v1.ProbeArgs] | None = None,
) -> k8s.core.v1.ContainerArgs:
    """A container of the project image: non-root, read-only root, /tmp as its only scratch.

    ``port`` is named ``http``, ``metrics_port`` (a ``/metrics`` apart) ``metrics``.
    ``probes`` maps ``startup``/``liveness``/``readiness`` to a probe. ``HOME``
    points at /tmp for libraries that cache under ``~`` (boto3, Streamlit).
    """
    probes = probes or {}
    ports = [(HTTP_PORT, port), (METRICS_PORT, metrics_port)]
    return k8s.core.v1.ContainerArgs(
        name=name,
        image=image,
        # A digest never changes, so the kubelet's cached copy is always the right one.
        image_pull_policy="IfNotPresent",
        command=command,
        ports=[
            k8s.core.v1.ContainerPortArgs(name=port_name, container_port=number)
            for port_name, number in ports
            if number
        ]
        or None,
        env_from=list(env),
        env=[k8s.core.v1.EnvVarArgs(name="HOME", value="/tmp")],  # noqa: S108
        startup_probe=probes.get("startup"),
        liveness_probe=probes.get("liveness"),
        readiness_probe=probes.get("readiness"),
        resources=hardening.resources(*resources),
        security_context=hardening.container_security_context(),
        volume_mounts=[hardening.tmp_mount()],
    )


class WorkloadObjects:
    """Declares the shared objects of one catalog workload as children of ``parent``.

    The workload's name, command and port come from its catalog entry, so each
    is written once; ``component`` is its label value (what the network
    policies grant access by).
    """

    def __init__(
        self,
        parent: pulumi.Resource,
        logical: str,
        workload: catalog.Workload,
        *,
        namespace: pulumi.Input[str],
        component: str,
    ) -> None:
        self._parent = parent
        self._logical = logical
        self.workload = workload
        self.name = workload.name
        self.namespace = namespace
        self.labels = hardening.labels(workload.name, component)
        self.selector = hardening.selector_labels(workload.name)

    @property
    def _child(self) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self._parent)

    @property
    def metrics_labels(self) -> dict[str, str]:
        """The workload's labels plus the one the ServiceMonitor selects."""
        return {**self.labels, hardening.METRICS_LABEL: "true"}

    @property
    def scrape_annotations(self) -> dict[str, str]:
        """Pod annotations for annotation-based scrapers.

        kube-prometheus-stack uses the ServiceMonitor that selects the Service's
        metrics label instead.
        """
        return {
            "prometheus.io/scrape": "true",
            "prometheus.io/port": str(self.workload.metrics_port or self.workload.port),
            "prometheus.io/path": METRICS_PATH,
        }

    def meta(
        self,
        obj_name: pulumi.Input[str] | None = None,
        *,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, pulumi.Input[str]] | None = None,
    ) -> k8s.meta.v1.ObjectMetaArgs:
        """Metadata in the workload's namespace (name defaults to the workload's)."""
        return k8s.meta.v1.ObjectMetaArgs(
            name=obj_name if obj_name is not None else self.name,
            namespace=self.namespace,
            labels=dict(labels) if labels is not None else self.labels,
            annotations=dict(annotations) if annotations else None,
        )

    def service_account(self, role_arn: pulumi.Input[str] | None) -> k8s.core.v1.ServiceAccount:
        """The pod's identity; with ``role_arn`` it carries the IRSA annotation."""
        return k8s.core.v1.ServiceAccount(
            f"{self._logical}-sa",
            metadata=self.meta(annotations=hardening.irsa_annotations(role_arn)),
            # The workloads never call the Kubernetes API; IRSA uses its own projected token.
            automount_service_account_token=False,
            opts=self._child,
        )

    def config_map(self, data: Mapping[str, str]) -> k8s.core.v1.ConfigMap:
        """The plain settings, under a content-hashed name."""
        values = dict(data)
        return k8s.core.v1.ConfigMap(
            f"{self._logical}-config",
            metadata=self.meta(hardening.hashed_name(f"{self.name}-config", values)),
            data=values,
            immutable=True,
            opts=self._child,
        )

    def secret(self, values: Mapping[str, pulumi.Input[str]]) -> k8s.core.v1.Secret:
        """The workload's own Secret (every value marked secret), content-hashed."""
        secret_values = {key: pulumi.Output.secret(value) for key, value in values.items()}
        return k8s.core.v1.Secret(
            f"{self._logical}-secret",
            metadata=self.meta(hardening.hashed_name(f"{self.name}-secret", secret_values)),
            type="Opaque",
            string_data=secret_values,
            immutable=True,
            opts=self._child,
        )

    def container(
        self,
        image: pulumi.Input[str],
        config_map: k8s.core.v1.ConfigMap,
        secret: k8s.core.v1.Secret,
        resources: catalog.Resources,
        probes: Mapping[str, k8s.core.v1.ProbeArgs],
    ) -> k8s.core.v1.ContainerArgs:
        """The workload's container, reading its own ConfigMap and Secret."""
        return app_container(
            self.name,
            image=image,
            command=list(self.workload.command),
            env=env_from(config_map.metadata.name, secret.metadata.name),
            resources=(resources.cpu, resources.memory),
            port=self.workload.port,
            metrics_port=self.workload.metrics_port,
            probes=probes,
        )

    def deployment(
        self,
        account: k8s.core.v1.ServiceAccount,
        container: k8s.core.v1.ContainerArgs,
        *,
        depends_on: Sequence[pulumi.Resource],
        annotations: Mapping[str, pulumi.Input[str]] = hardening.SECRET_ENV_SKIP,
        pod_labels: Mapping[str, str] | None = None,
        pod_annotations: Mapping[str, str] | None = None,
        revision_history_limit: int | None = None,
        automount_service_account_token: bool = False,
        termination_grace_seconds: int | None = None,
        topology_spread: Sequence[k8s.core.v1.TopologySpreadConstraintArgs] | None = None,
    ) -> k8s.apps.v1.Deployment:
        """The hardened Deployment of ``container``, without ``replicas``.

        The autoscaler owns the count: if the program declared it too, every
        ``pulumi up`` would reset a scaled-out workload in the middle of traffic.
        ``None`` leaves a field to Kubernetes' default.
        """
        return k8s.apps.v1.Deployment(
            f"{self._logical}-deployment",
            metadata=self.meta(annotations=annotations),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=self.selector),
                revision_history_limit=revision_history_limit,
                strategy=rolling_update(),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(
                        labels=dict(pod_labels) if pod_labels is not None else self.labels,
                        annotations=dict(pod_annotations) if pod_annotations else None,
                    ),
                    spec=k8s.core.v1.PodSpecArgs(
                        service_account_name=account.metadata.name,
                        automount_service_account_token=automount_service_account_token,
                        security_context=hardening.pod_security_context(),
                        termination_grace_period_seconds=termination_grace_seconds,
                        containers=[container],
                        volumes=[hardening.tmp_volume()],
                        topology_spread_constraints=(
                            list(topology_spread) if topology_spread is not None else None
                        ),
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self._parent, depends_on=list(depends_on)),
        )

    def internal_url(self, service: k8s.core.v1.Service, path: str = "") -> pulumi.Output[str]:
        """``http://<service>.<namespace>.svc.cluster.local:<port><path>``."""
        port = self.workload.port
        return pulumi.Output.all(service.metadata.name, self.namespace).apply(
            lambda names: f"http://{catalog.service_host(*names)}:{port}{path}"
        )

    def service(self, labels: Mapping[str, str] | None = None) -> k8s.core.v1.Service:
        """A ClusterIP Service on the container's ``http`` port, and its ``metrics`` port if any.

        With a metrics port apart the app's port is named ``app`` (`APP_PORT`), so
        that each port the ServiceMonitor scrapes serves ``/metrics``.
        """
        port, metrics_port = self.workload.port, self.workload.metrics_port
        ports = [(HTTP_PORT if metrics_port is None else APP_PORT, port, HTTP_PORT)]
        if metrics_port is not None:
            ports.append((METRICS_PORT, metrics_port, METRICS_PORT))
        return k8s.core.v1.Service(
            f"{self._logical}-service",
            metadata=self.meta(labels=labels),
            spec=k8s.core.v1.ServiceSpecArgs(
                type="ClusterIP",
                selector=self.selector,
                ports=[
                    k8s.core.v1.ServicePortArgs(
                        name=name, port=number, target_port=target, protocol="TCP"
                    )
                    for name, number, target in ports
                ],
            ),
            opts=self._child,
        )

    def autoscaler(
        self, deployment: k8s.apps.v1.Deployment, scaling: catalog.Scaling
    ) -> k8s.autoscaling.v2.HorizontalPodAutoscaler:
        """CPU (and, where given, memory) targets between the workload's replica bounds."""
        return k8s.autoscaling.v2.HorizontalPodAutoscaler(
            f"{self._logical}-hpa",
            metadata=self.meta(),
            spec=k8s.autoscaling.v2.HorizontalPodAutoscalerSpecArgs(
                scale_target_ref=k8s.autoscaling.v2.CrossVersionObjectReferenceArgs(
                    api_version="apps/v1", kind="Deployment", name=deployment.metadata.name
                ),
                min_replicas=scaling.min_replicas,
                max_replicas=scaling.max_replicas,
                metrics=_hpa_metrics(scaling),
                behavior=_hpa_behavior(),
            ),
            opts=self._child,
        )

    def disruption_budget(self) -> k8s.policy.v1.PodDisruptionBudget:
        """``maxUnavailable: 1``: a drain always progresses, n-1 pods keep serving.

        ``minAvailable: 1`` on a one-replica workload never allows an eviction,
        so a node drain would hang forever.
        """
        return k8s.policy.v1.PodDisruptionBudget(
            f"{self._logical}-pdb",
            metadata=self.meta(),
            spec=k8s.policy.v1.PodDisruptionBudgetSpecArgs(
                max_unavailable=1,
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=self.selector),
            ),
            opts=self._child,
        )


def rolling_update() -> k8s.apps.v1.DeploymentStrategyArgs:
    """``maxUnavailable: 0, maxSurge: 1``: capacity never drops during a deploy."""
    return k8s.apps.v1.DeploymentStrategyArgs(
        type="RollingUpdate",
        rolling_update=k8s.apps.v1.RollingUpdateDeploymentArgs(max_unavailable=0, max_surge=1),
    )


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
