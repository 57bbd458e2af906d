"""The Streamlit dashboards served from the cluster.

The seed hosted its Streamlit dashboards on Vercel, whose Python runtime runs
short-lived functions and cannot keep Streamlit's websocket session alive. Here
they run as an ordinary hardened Deployment of the project image
(``enterprisehub serve dashboards``), behind the public Gateway
(:mod:`infra.components.public_ingress`), which keeps a browser on one pod
because a Streamlit session lives in that pod's memory.

Port, metrics port, command, health path and secret keys come from
``catalog.DASHBOARDS``. Prometheus scrapes the metrics port, which the public
Gateway does not route (its HTTPRoute names the app's port by number).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi

from infra import catalog
from infra.components import hardening
from infra.components.base import Component
from infra.components.workload import WorkloadObjects, health_probes, refuse_unread_secrets


@dataclass(frozen=True, kw_only=True)
class DashboardsArgs:
    """Inputs of :class:`Dashboards` (the Streamlit app's Deployment and Service)."""

    namespace: pulumi.Input[str]
    image: pulumi.Input[str]
    settings: Mapping[str, str]
    #: Exactly the keys of ``spec.secrets`` (application role: row-level security applies).
    secrets: Mapping[str, pulumi.Input[str]]
    spec: catalog.DashboardsSpec = catalog.DASHBOARDS
    #: Two keep the dashboards up through a node drain; sessions are cheap to rebuild.
    replicas: int = 2
    #: The autoscaler's ceiling (the stack's connection budget counts it).
    max_replicas: int = catalog.DASHBOARDS.max_replicas
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)


class Dashboards(Component[DashboardsArgs]):
    """Deployment, Service, PDB, ServiceAccount, ConfigMap and Secret of the dashboards."""

    component_type = "enterprisehub:k8s:Dashboards"

    service_name: pulumi.Output[str]
    port: int

    def __init__(
        self, name: str, args: DashboardsArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        owner = "Dashboards"
        hardening.check_image(args.image, owner)
        hardening.require_keys(owner, "secrets", args.secrets, args.spec.secrets)
        refuse_unread_secrets(owner, args.secrets, args.spec.secrets, reader="the dashboards")
        if not 1 <= args.replicas <= args.max_replicas:
            raise ValueError(
                f"{owner}: replicas must satisfy 1 <= {args.replicas} <= {args.max_replicas}"
            )
        super().__init__(name, args, opts)
        spec = args.spec
        objects = WorkloadObjects(
            self, name, spec, namespace=args.namespace, component=hardening.COMPONENT_DASHBOARD
        )
        account = objects.service_account(None)
        settings = {**spec.settings, **args.settings}
        if spec.metrics_port is not None:
            # Last: the port the process binds is the one its Service and policy open.
            settings[spec.metrics_port_setting] = str(spec.metrics_port)
        config = objects.config_map(settings)
        secret = objects.secret(args.secrets)
        probes = health_probes(liveness_path=spec.health_path, readiness_path=spec.health_path)
        container = objects.container(args.image, config, secret, spec.resources, probes)
        deployment = objects.deployment(
            account,
            container,
            depends_on=args.depends_on,
            pod_labels=objects.metrics_labels,
            pod_annotations=objects.scrape_annotations,
        )
        # The ServiceMonitor selects it by the metrics label and scrapes its
        # `metrics` port (the process's own listener, never the routed app port).
        service = objects.service(labels=objects.metrics_labels)
        objects.autoscaler(
            deployment,
            catalog.Scaling(
                min_replicas=args.replicas, max_replicas=args.max_replicas, cpu_target_percent=70
            ),
        )
        objects.disruption_budget()
        self.service_name = service.metadata.name
        self.port = spec.port
        self.register_outputs({"service_name": self.service_name})
