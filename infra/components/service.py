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
from infra.components.base import Component
from infra.components.workload import (
    LIVENESS_PATH,
    WorkloadObjects,
    health_probes,
    refuse_secret_settings,
    refuse_unread_secrets,
)

#: Settings every service's ConfigMap must carry; the rest have defaults in the app.
REQUIRED_SETTINGS: Final = ("ENVIRONMENT", "LOG_LEVEL")
#: Keys that would defeat row-level security if a service held them.
FORBIDDEN_SECRET_KEYS: Final = catalog.MIGRATION_SECRET_KEYS


@dataclass(frozen=True, kw_only=True)
class FeatureServiceArgs:
    """Inputs of :class:`FeatureService`.

    ``settings`` holds the stack-dependent ConfigMap values (see
    ``catalog.STACK_SETTINGS``); the catalog's common and per-service settings
    are added underneath, so the stack can override a seed default. ``secrets``
    holds exactly the keys of ``spec.secrets`` (empty strings for optional
    ones), plus the object-storage credentials of the local stack for a
    service that uses a bucket; values are wrapped as secret anyway.
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


class FeatureService(Component[FeatureServiceArgs]):
    """Deployment, Service, HPA, PDB, ServiceAccount, ConfigMap and Secret of one service."""

    component_type = "enterprisehub:k8s:FeatureService"

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
        super().__init__(name, args, opts)
        self._objects = WorkloadObjects(
            self, name, spec, namespace=args.namespace, component=hardening.COMPONENT_API
        )
        account = self._objects.service_account(args.role_arn)
        config_map = self._objects.config_map(
            {
                **catalog.COMMON_SETTINGS,
                **spec.settings,
                **{k: v for k, v in args.settings.items() if k not in spec.unread_stack_settings},
            }
        )
        secret = self._objects.secret(args.secrets)
        deployment = self._deployment(account, self._container(config_map, secret))
        service = self._objects.service(labels=self._objects.metrics_labels)
        self._objects.autoscaler(deployment, args.scaling)
        self._objects.disruption_budget()

        self.deployment_name = deployment.metadata.name
        self.service_name = service.metadata.name
        self.internal_url = self._objects.internal_url(service)
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

    def _container(
        self, config_map: k8s.core.v1.ConfigMap, secret: k8s.core.v1.Secret
    ) -> k8s.core.v1.ContainerArgs:
        """Liveness and startup on ``/health``, readiness on the seed's feature path."""
        args = self._args
        probes = health_probes(
            liveness_path=LIVENESS_PATH,
            readiness_path=args.spec.health_path,
            startup_budget_seconds=args.startup_budget_seconds,
        )
        return self._objects.container(args.image, config_map, secret, args.resources, probes)

    def _deployment(
        self, account: k8s.core.v1.ServiceAccount, container: k8s.core.v1.ContainerArgs
    ) -> k8s.apps.v1.Deployment:
        """The Deployment, scraped by annotation too, spread across zones and nodes."""
        args = self._args
        objects = self._objects
        return objects.deployment(
            account,
            container,
            depends_on=args.depends_on,
            pod_labels=objects.metrics_labels,
            pod_annotations=objects.scrape_annotations,
            revision_history_limit=5,
            termination_grace_seconds=args.termination_grace_seconds,
            topology_spread=_spread(objects.selector),
        )


def _validate(owner: str, args: FeatureServiceArgs) -> None:
    """Fail before any resource when the inputs cannot make a working, safe service."""
    hardening.check_image(args.image, owner)
    hardening.require_keys(owner, "settings", args.settings, REQUIRED_SETTINGS)
    hardening.require_keys(owner, "secrets", args.secrets, args.spec.secrets)
    refuse_secret_settings(owner, args.settings)
    forbidden = sorted(set(FORBIDDEN_SECRET_KEYS).intersection(args.secrets))
    if forbidden:
        raise ValueError(
            f"{owner}: {', '.join(forbidden)} is for the migration Job only (owner role)"
        )
    refuse_unread_secrets(
        owner,
        args.secrets,
        (*args.spec.secrets, *catalog.OBJECT_STORAGE_SECRET_KEYS),
        reader="this service (catalog ServiceSpec.secrets); "
        "a Secret carries only what its service uses",
    )
    scaling = args.scaling
    if not 1 <= scaling.min_replicas <= scaling.max_replicas:
        raise ValueError(
            f"{owner}: replicas must satisfy 1 <= min ({scaling.min_replicas}) "
            f"<= max ({scaling.max_replicas})"
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
