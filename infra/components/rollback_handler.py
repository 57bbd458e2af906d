"""rollback-handler in the cluster: Alertmanager's rollback triggers turn feature flags off.

The same image as every workload (``enterprisehub serve rollback``,
services/rollback), reached only by Alertmanager at the URL its routing names
(``catalog.ROLLBACK_HANDLER.webhook_url``) and scraped by Prometheus; the
network policy (:class:`~infra.components.network_policy.PlatformNetworkPolicies`)
admits nothing else, and it calls nothing but Postgres, Redis and (when the
stack has a webhook URL) Slack.

By default it turns flags off and records why; it cannot roll a deployment
back. Its ServiceAccount mounts no token, it has no RBAC binding, no cloud role
and no route to the Kubernetes API: rolling the stack back stays an operator's
decision (``enterprisehub rollback feature ... --stack-rollback``, or
``python -m infra.deploy rollback``).

With ``undo_deployments`` (the stack's ``rollback.undoDeployments``) it may
also undo the latest rollout of the Deployments serving the feature a trigger
names (``catalog.feature_deployments``): a namespaced Role grants ``get`` and
``patch`` on exactly those Deployments by name and ``list`` on ReplicaSets
(``resourceNames`` cannot narrow a list; ReplicaSets hold nothing secret), the
pod mounts its token, and its settings say which Deployments serve which feature.
"""

from __future__ import annotations

import json
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
    #: The stack's ``rollback.undoDeployments``: may it undo the rollout of a
    #: triggering feature's Deployments (a Role, a mounted token)?
    undo_deployments: bool = False
    #: Feature flag -> the Deployments serving it: what it may undo (the catalog's).
    feature_deployments: Mapping[str, tuple[str, ...]] = field(
        default_factory=catalog.feature_deployments
    )


#: The handler's settings that say whether and what it may undo (services/rollback/config.py).
UNDO_DEPLOYMENTS_SETTING: Final = "ROLLBACK_UNDO_DEPLOYMENTS"
FEATURE_DEPLOYMENTS_SETTING: Final = "ROLLBACK_FEATURE_DEPLOYMENTS"

#: checkov's CKV_K8S_38 wants no token mounted; the undo needs one, and only then.
API_ACCESS_CHECKOV_SKIP: Final = (
    "CKV_K8S_38=the stack enabled rollback.undoDeployments: the handler calls the "
    "Kubernetes API under a Role limited to its features' Deployments"
)


def undo_settings(
    undo_deployments: bool, feature_deployments: Mapping[str, tuple[str, ...]]
) -> dict[str, str]:
    """The ConfigMap entries that enable (or not) undoing deployments."""
    if not undo_deployments:
        return {UNDO_DEPLOYMENTS_SETTING: "false"}
    mapping = {feature: list(names) for feature, names in sorted(feature_deployments.items())}
    return {
        UNDO_DEPLOYMENTS_SETTING: "true",
        FEATURE_DEPLOYMENTS_SETTING: json.dumps(mapping, separators=(",", ":")),
    }


def undo_rules(
    feature_deployments: Mapping[str, tuple[str, ...]],
) -> list[k8s.rbac.v1.PolicyRuleArgs]:
    """Least privilege for ``kubectl rollout undo`` of exactly these Deployments.

    ``get`` and ``patch`` on the Deployments by name; ``list`` on ReplicaSets (to
    find the Deployment's revisions), which ``resourceNames`` cannot narrow.
    """
    names = sorted({name for names in feature_deployments.values() for name in names})
    return [
        k8s.rbac.v1.PolicyRuleArgs(
            api_groups=["apps"],
            resources=["deployments"],
            resource_names=names,
            verbs=["get", "patch"],
        ),
        k8s.rbac.v1.PolicyRuleArgs(api_groups=["apps"], resources=["replicasets"], verbs=["list"]),
    ]


class RollbackHandler(Component[RollbackHandlerArgs]):
    """Deployment, Service, HPA, PDB, ServiceAccount, ConfigMap and Secret of the handler."""

    component_type = "enterprisehub:k8s:RollbackHandler"

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
        refuse_unread_secrets(owner, args.secrets, spec.secrets, reader="the handler")
        refuse_secret_settings(owner, args.settings)
        replicas = args.replicas if args.replicas is not None else spec.replicas
        if replicas < 1:
            raise ValueError(f"{owner}: replicas must be at least 1, got {replicas}")
        if args.undo_deployments and not any(args.feature_deployments.values()):
            raise ValueError(f"{owner}: undo_deployments needs the Deployments it may undo")
        super().__init__(name, args, opts)
        objects = WorkloadObjects(
            self, name, spec, namespace=args.namespace, component=hardening.COMPONENT_API
        )
        # No cloud role: the handler never calls a cloud API (see the module's docstring).
        account = objects.service_account(None)
        if args.undo_deployments:
            self._undo_access(objects, account, args.feature_deployments)
        config = objects.config_map(
            {
                **args.settings,
                **spec.settings,
                **undo_settings(args.undo_deployments, args.feature_deployments),
            }
        )
        secret = objects.secret(args.secrets)
        # Readiness reads the incident table: without Postgres it cannot act.
        probes = health_probes(
            liveness_path=LIVENESS_PATH, readiness_path=spec.health_path, readiness_period=10
        )
        container = objects.container(args.image, config, secret, spec.resources, probes)
        annotations = dict(hardening.SECRET_ENV_SKIP)
        if args.undo_deployments:
            annotations["checkov.io/skip2"] = API_ACCESS_CHECKOV_SKIP
        deployment = objects.deployment(
            account,
            container,
            depends_on=args.depends_on,
            annotations=annotations,
            pod_labels=objects.metrics_labels,
            pod_annotations=objects.scrape_annotations,
            revision_history_limit=5,
            # A token only when the stack lets it undo deployments.
            automount_service_account_token=args.undo_deployments,
        )
        service = objects.service(labels=objects.metrics_labels)
        # A fixed count: the load is a few webhooks an hour, the HPA only keeps it there.
        objects.autoscaler(
            deployment,
            catalog.Scaling(min_replicas=replicas, max_replicas=replicas, cpu_target_percent=80),
        )
        objects.disruption_budget()
        self.service_name = service.metadata.name
        self.webhook_url = objects.internal_url(service, spec.webhook_path)
        self.register_outputs({"service_name": self.service_name, "webhook_url": self.webhook_url})

    def _undo_access(
        self,
        objects: WorkloadObjects,
        account: k8s.core.v1.ServiceAccount,
        feature_deployments: Mapping[str, tuple[str, ...]],
    ) -> None:
        """The Role of :func:`undo_rules`, bound to the handler's ServiceAccount only."""
        child = pulumi.ResourceOptions(parent=self)
        role = k8s.rbac.v1.Role(
            f"{self._name}-undo-role",
            metadata=objects.meta(),
            rules=undo_rules(feature_deployments),
            opts=child,
        )
        k8s.rbac.v1.RoleBinding(
            f"{self._name}-undo-binding",
            metadata=objects.meta(),
            role_ref=k8s.rbac.v1.RoleRefArgs(
                api_group="rbac.authorization.k8s.io", kind="Role", name=role.metadata.name
            ),
            subjects=[
                k8s.rbac.v1.SubjectArgs(
                    kind="ServiceAccount",
                    name=account.metadata.name,
                    namespace=objects.namespace,
                )
            ],
            opts=child,
        )
