"""rollback-handler in the cluster: Alertmanager's rollback triggers turn feature flags off.

The same image as every workload (``enterprisehub serve rollback``,
services/rollback), reached only by Alertmanager at the URL its routing names
(``catalog.ROLLBACK_HANDLER.webhook_url``) and scraped by Prometheus; the
network policy (:class:`~infra.components.network_policy.PlatformNetworkPolicies`)
admits nothing else, and it calls nothing but Postgres, Redis and (when the
stack has a webhook URL) Slack.

It turns flags off and records why; it cannot roll a deployment back. Its
ServiceAccount mounts no token, it has no RBAC binding, no cloud role and no
route to the Kubernetes API: rolling the stack back stays an operator's
decision (``enterprisehub rollback feature ... --stack-rollback``, or
``python -m infra.deploy rollback``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_kubernetes as k8s

from infra import catalog
from infra.components import hardening
from infra.components.service import LIVENESS_PATH, METRICS_PATH, SECRET_KEY_NAMES
from infra.components.workload import (
    WorkloadObjects,
    app_container,
    env_from,
    http_probe,
    rolling_update,
)


@dataclass(frozen=True, kw_only=True)
class RollbackHandlerArgs:
    """Inputs of :class:`RollbackHandler`."""

    namespace: pulumi.Input[str]
    image: pulumi.Input[str]
    #: Stack settings (ENVIRONMENT, LOG_LEVEL...); the catalog's pool sizes go on top.
    settings: Mapping[str, str]
    #: Exactly the keys of ``spec.secrets``; the webhook token is the one
    #: Alertmanager's Secret holds too.
    secrets: Mapping[str, pulumi.Input[str]]
    spec: catalog.RollbackHandlerSpec = catalog.ROLLBACK_HANDLER
    #: None keeps the catalog's count (two: a drain never leaves triggers unheard).
    replicas: int | None = None
    #: The migration (its tables) and flags init (the flags it turns off).
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)


class RollbackHandler(pulumi.ComponentResource):
    """Deployment, Service, HPA, PDB, ServiceAccount, ConfigMap and Secret of the handler."""

    service_name: pulumi.Output[str]
    #: Where Alertmanager posts (equal to the URL in alerts/alertmanager/alertmanager.yml).
    webhook_url: pulumi.Output[str]

    def __init__(
        self, name: str, args: RollbackHandlerArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        spec = args.spec
        owner = f"RollbackHandler {spec.name}"
        hardening.check_image(args.image, owner)
        hardening.require_keys(owner, "secrets", args.secrets, spec.secrets)
        extra = sorted(set(args.secrets) - set(spec.secrets))
        if extra:
            raise ValueError(f"{owner}: secrets {', '.join(extra)} are not read by the handler")
        leaked = sorted(SECRET_KEY_NAMES.intersection(args.settings))
        if leaked:
            raise ValueError(
                f"{owner}: secret keys {', '.join(leaked)} must not be in the ConfigMap"
            )
        replicas = args.replicas if args.replicas is not None else spec.replicas
        if replicas < 1:
            raise ValueError(f"{owner}: replicas must be at least 1, got {replicas}")
        super().__init__("enterprisehub:k8s:RollbackHandler", name, None, opts)
        objects = WorkloadObjects(
            self,
            name,
            name=spec.name,
            namespace=args.namespace,
            labels=hardening.labels(spec.name, hardening.COMPONENT_API),
        )
        # No role: the handler never calls a cloud API (see the module's docstring).
        account = objects.service_account(None)
        config = objects.config_map({**args.settings, **spec.settings})
        secret = objects.secret(args.secrets)
        container = app_container(
            spec.name,
            image=args.image,
            command=list(spec.command),
            env=env_from(config.metadata.name, secret.metadata.name),
            resources=(spec.resources.cpu, spec.resources.memory),
            port=spec.port,
            probes={
                "startup": http_probe(LIVENESS_PATH, period=5, failures=24),
                "liveness": http_probe(LIVENESS_PATH, period=10, failures=3),
                # Readiness reads the incident table: without Postgres it cannot act.
                "readiness": http_probe(spec.health_path, period=10, failures=3),
            },
        )
        metrics_labels = {**objects.labels, hardening.METRICS_LABEL: "true"}
        # No ``replicas``: the autoscaler owns the count (see service.py).
        deployment = k8s.apps.v1.Deployment(
            f"{name}-deployment",
            metadata=objects.meta(annotations=hardening.SECRET_ENV_SKIP),
            spec=k8s.apps.v1.DeploymentSpecArgs(
                selector=k8s.meta.v1.LabelSelectorArgs(match_labels=objects.selector),
                revision_history_limit=5,
                strategy=rolling_update(),
                template=k8s.core.v1.PodTemplateSpecArgs(
                    metadata=k8s.meta.v1.ObjectMetaArgs(
                        labels=metrics_labels,
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
                        containers=[container],
                        volumes=[hardening.tmp_volume()],
                    ),
                ),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on)),
        )
        service = objects.service(spec.port, labels=metrics_labels)
        # A fixed count: the load is a few webhooks an hour, the HPA only keeps it there.
        objects.autoscaler(
            deployment,
            catalog.Scaling(min_replicas=replicas, max_replicas=replicas, cpu_target_percent=80),
        )
        objects.disruption_budget()
        self.service_name = service.metadata.name
        self.webhook_url = pulumi.Output.concat(
            "http://",
            service.metadata.name,
            ".",
            args.namespace,
            ".svc.cluster.local:",
            str(spec.port),
            spec.webhook_path,
        )
        self.register_outputs({"service_name": self.service_name, "webhook_url": self.webhook_url})
