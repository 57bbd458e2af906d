"""The Kubernetes side of every stack: add-ons, monitoring, jobs, services, ingress, policies.

The same function builds it for ``local`` and for AWS; what differs (where
Postgres, Redis and object storage live, IAM roles, network ranges) arrives in
a ``DataPlane``. The components come from infra/components (infra-k8s); this
module only maps the stack configuration onto their Args.

Every stack runs the model-publish Jobs: they publish the image's models
(``catalog.PUBLISHED_MODELS``: lead scoring and churn risk) to exactly the URIs
the services load (their ``ML_MODEL_URI`` and ``CHURN_MODEL_URI``, prefixes
resolved through ``current.json``), and the services wait for them as they
wait for the migration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pulumi
import pulumi_random as random

from infra import catalog
from infra.components import load_balancer_controller
from infra.components.addons import (
    ACME_SERVERS,
    MONITORING_CHART,
    ClusterAddons,
    ClusterAddonsArgs,
    chart_values,
)
from infra.components.dashboards import Dashboards, DashboardsArgs
from infra.components.dns import ExternalDns, ExternalDnsArgs
from infra.components.jobs import (
    MODEL_PUBLISHER_SERVICE_ACCOUNT,
    ModelPublishArgs,
    PlatformJobs,
    PlatformJobsArgs,
)
from infra.components.monitoring import (
    AlertmanagerCredentials,
    Monitoring,
    MonitoringArgs,
    rule_selector_labels,
    sidecar_dashboard_label,
)
from infra.components.namespace import IsolatedNamespace, IsolatedNamespaceArgs
from infra.components.network_policy import (
    LOCAL_API_SERVER,
    ApiServer,
    PlatformNetworkPolicies,
    PlatformNetworkPoliciesArgs,
)
from infra.components.public_ingress import LOAD_BALANCER, PublicIngress, PublicIngressArgs
from infra.components.rollback_handler import RollbackHandler, RollbackHandlerArgs
from infra.components.service import FeatureService, FeatureServiceArgs
from infra.config import StackConfig


@dataclass
class DataPlane:
    """Where the services' data lives, as the platform needs to know it."""

    #: Application-role DSN (row-level security applies).
    database_url: pulumi.Input[str]
    #: Owner-role DSN, for the migration Job only.
    migration_database_url: pulumi.Input[str]
    redis_url: pulumi.Input[str]
    #: Plain ConfigMap values: bucket names, model URI, S3 endpoint.
    settings: Mapping[str, str]
    #: Extra secret environment of the services.
    extra_secrets: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    #: Static credentials of S3-compatible storage (local MinIO), for the services
    #: and the model-publish Job; empty on AWS, where IRSA roles stand in for them.
    object_storage_credentials: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    #: IRSA role ARN per ServiceAccount name (AWS): the services and the model publisher.
    role_arns: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)
    #: What the migration must wait for (the database, the in-cluster stores).
    ready: list[pulumi.Resource] = field(default_factory=list)
    #: What the model-publish Job must also wait for (on AWS the bucket and the
    #: publisher's role; locally ``ready`` already holds MinIO and its buckets).
    model_store_ready: list[pulumi.Resource] = field(default_factory=list)
    in_cluster: bool = False
    #: Private subnets holding RDS and ElastiCache (AWS).
    datastore_cidrs: pulumi.Input[Sequence[str]] = ()
    #: Where the API server and nodes live (the VPC on AWS, anywhere locally).
    cluster_cidrs: Sequence[str] = ("0.0.0.0/0",)
    #: How pods reach the Kubernetes API (its Service IP and endpoints).
    api_server: ApiServer = LOCAL_API_SERVER
    #: AWS: the S3 prefix list the VPC's gateway endpoint routes.
    s3_cidrs: pulumi.Input[Sequence[str]] = ()
    #: AWS: where the STS interface endpoint's network interfaces are (private subnets).
    sts_cidrs: pulumi.Input[Sequence[str]] = ()
    #: AWS: external-dns for the stack's hosted zone; None: records are made by hand.
    external_dns: ExternalDnsArgs | None = None


#: The stack settings the rollback handler reads (it has no buckets, origins or model).
ROLLBACK_HANDLER_SETTINGS = ("ENVIRONMENT", "LOG_LEVEL", "JWT_KEY_ID")


def create_namespace(
    config: StackConfig, prefix: str, opts: pulumi.ResourceOptions
) -> IsolatedNamespace:
    """The application namespace, default-deny from its first moment."""
    return IsolatedNamespace(
        f"{prefix}-namespace",
        IsolatedNamespaceArgs(
            name=config.namespace, labels={"environment": config.environment.value}
        ),
        opts=opts,
    )


def secret_pool(config: StackConfig, data: DataPlane) -> dict[str, pulumi.Input[str]]:
    """Every secret value a workload may need, by key; each takes only its own keys."""
    secrets = config.secrets
    return {
        "DATABASE_URL": data.database_url,
        "MIGRATION_DATABASE_URL": data.migration_database_url,
        "REDIS_URL": data.redis_url,
        "JWT_SECRET_KEY": secrets.jwt_secret_key,
        "JWT_PREVIOUS_KEYS": secrets.jwt_previous_keys,
        "ANTHROPIC_API_KEY": secrets.anthropic_api_key,
        "GHL_API_KEY": secrets.ghl_api_key,
        "SLACK_WEBHOOK_URL": secrets.slack_webhook_url,
        **data.extra_secrets,
    }


def workload_secrets(
    keys: Sequence[str],
    pool: Mapping[str, pulumi.Input[str]],
    object_storage: Mapping[str, pulumi.Input[str]] | None = None,
) -> dict[str, pulumi.Input[str]]:
    """The Secret of one workload: its catalog keys, plus storage credentials if it uses any."""
    return {key: pool[key] for key in keys} | dict(object_storage or {})


def edge_service_type(environment: str) -> str:
    """How the environment's EnvoyProxy exposes the edge (``envoyService.type``).

    Envoy Gateway makes a LoadBalancer Service when the EnvoyProxy names no type.
    """
    proxy = chart_values("envoy-gateway", environment, stem="proxy")
    service = proxy.get("provider", {}).get("kubernetes", {}).get("envoyService", {})
    return str(service.get("type") or LOAD_BALANCER)


def build_platform(
    config: StackConfig,
    prefix: str,
    data: DataPlane,
    opts: pulumi.ResourceOptions,
    namespace: IsolatedNamespace,
) -> dict[str, Any]:
    """Declare the workloads and return the stack outputs they provide."""
    platform = _Platform(config, prefix, data, opts)
    addons = platform.addons()
    if data.external_dns is not None:
        # external-dns watches HTTPRoutes and exits when the Gateway API types are not
        # served ("failed to sync ... context deadline exceeded"): its Helm wait would
        # time out on a new cluster unless the chart that installs them came first.
        ExternalDns(
            f"{prefix}-external-dns",
            replace(data.external_dns, after=[*data.external_dns.after, *addons.ready]),
        )
    monitoring = platform.monitoring(addons)
    jobs = platform.jobs(after=[namespace, *data.ready])
    services = platform.services(jobs.rollout_gate)
    dashboards = platform.dashboards(jobs.rollout_gate)
    rollback_handler = platform.rollback_handler(jobs.rollout_gate)
    dashboard_hosts = config.dashboard_hosts if dashboards else {}
    ingress = PublicIngress(
        f"{prefix}-ingress",
        PublicIngressArgs(
            namespace=config.namespace,
            api_host=config.hostname("api"),
            dashboard_hosts=dashboard_hosts,
            cluster_issuer=addons.issuer_name,
            grafana=addons.grafana_route,
            proxy_service_type=edge_service_type(config.environment.value),
            depends_on=[*addons.ready, *dashboards, *services.values()],
        ),
        opts=opts,
    )
    platform.network_policies(addons, namespace)
    return {
        "environment": config.environment.value,
        "namespace": config.namespace,
        "image": config.image,
        "apiUrl": f"https://{config.hostname('api')}",
        "dashboardUrls": {name: f"https://{host}" for name, host in dashboard_hosts.items()},
        "grafanaUrl": f"https://{config.hostname('grafana')}",
        "ingressUrls": ingress.urls,
        # What every public hostname points at: the load balancer's DNS name (AWS NLB)
        # or IP, as the Gateway's status had it at the last `up`; kind's 127.0.0.1.
        "edgeAddress": ingress.edge_address,
        # The live value, should the load balancer have been replaced since.
        "edgeAddressCommand": (
            f"kubectl -n {config.namespace} get gateway {ingress.gateway_name} "
            "-o jsonpath='{.status.addresses[0].value}'"
        ),
        "serviceSecretNames": {name: svc.secret_name for name, svc in services.items()},
        "serviceConfigMapNames": {name: svc.config_map_name for name, svc in services.items()},
        "serviceUrls": {name: svc.internal_url for name, svc in services.items()},
        "migrationJob": jobs.migration_job_name,
        "flagsInitJob": jobs.flags_job_name,
        "modelPublishJobs": jobs.model_publish_job_names,
        "mlModelUri": platform.settings[catalog.LEAD_SCORING_MODEL.setting],
        "churnModelUri": platform.settings[catalog.CHURN_RISK_MODEL.setting],
        "chartVersions": addons.chart_versions,
        "rollbackWebhookUrl": rollback_handler.webhook_url,
        "prometheusRules": monitoring.rule_names,
        "grafanaDashboards": monitoring.dashboard_names,
        # Without a Slack URL the Slack receivers send nowhere (docs/observability.md).
        "alertNotifications": "slack" if config.secrets.slack_configured else "none",
    }


class _Platform:
    """Maps one stack's configuration onto the platform components, one method each."""

    def __init__(
        self, config: StackConfig, prefix: str, data: DataPlane, opts: pulumi.ResourceOptions
    ) -> None:
        self.config = config
        self.prefix = prefix
        self.data = data
        self.opts = opts
        self.settings = config.stack_settings() | dict(data.settings)
        self.pool = secret_pool(config, data)
        # Alertmanager's bearer credential for the rollback handler: generated once,
        # kept in the state as a secret, given to both sides' Secrets.
        self.pool["ALERTMANAGER_WEBHOOK_TOKEN"] = random.RandomPassword(
            f"{prefix}-rollback-webhook-token",
            length=64,
            special=False,
            opts=opts,
        ).result

    def addons(self) -> ClusterAddons:
        config, data = self.config, self.data
        if not config.secrets.slack_configured and not config.is_local:
            pulumi.log.warn(
                f"{config.stack}: slackWebhookUrl is not set; critical and warning alerts "
                "reach no one (their Slack receivers send nowhere). Rollback triggers still "
                "turn flags off. Set it with `pulumi config set --secret slackWebhookUrl ...`."
            )
        return ClusterAddons(
            f"{self.prefix}-addons",
            ClusterAddonsArgs(
                environment=config.environment.value,
                app_namespaces=[config.namespace],
                issuer=config.tls_issuer,
                acme_email=config.acme_email or None,
                grafana_host=config.hostname("grafana"),
                cluster_cidrs=list(data.cluster_cidrs),
                api_server=data.api_server,
                gateway_namespace=config.namespace,
                edge_namespace_labels=(
                    {}
                    if config.is_local
                    else {load_balancer_controller.READINESS_GATE_LABEL: "enabled"}
                ),
                alertmanager=AlertmanagerCredentials(
                    rollback_token=self.pool["ALERTMANAGER_WEBHOOK_TOKEN"],
                    slack_webhook_url=(
                        config.secrets.slack_webhook_url
                        if config.secrets.slack_configured
                        else None
                    ),
                ),
            ),
            opts=self.opts,
        )

    def monitoring(self, addons: ClusterAddons) -> Monitoring:
        """Rules, scraping and dashboards, once the chart's CRDs exist."""
        values = addons.values["kube-prometheus-stack"]
        return Monitoring(
            f"{self.prefix}-monitoring",
            MonitoringArgs(
                namespace=addons.monitoring_namespace,
                app_namespaces=[self.config.namespace],
                runbook_base_url=self.config.runbook_base_url,
                rule_labels=rule_selector_labels(values, release=MONITORING_CHART),
                dashboard_label=sidecar_dashboard_label(values),
                depends_on=[addons.monitoring_release],
            ),
            opts=self.opts,
        )

    def rollback_handler(self, gate: Sequence[pulumi.Resource]) -> RollbackHandler:
        """Alertmanager's rollback receiver (``catalog.ROLLBACK_HANDLER``)."""
        spec = catalog.ROLLBACK_HANDLER
        return RollbackHandler(
            f"{self.prefix}-{spec.name}",
            RollbackHandlerArgs(
                namespace=self.config.namespace,
                image=self.config.image,
                settings={key: self.settings[key] for key in ROLLBACK_HANDLER_SETTINGS},
                secrets=workload_secrets(spec.secrets, self.pool),
                replicas=1 if self.config.is_local else None,
                depends_on=list(gate),
                undo_deployments=self.config.rollback.undo_deployments,
            ),
            opts=self.opts,
        )

    def jobs(self, after: Sequence[pulumi.Resource]) -> PlatformJobs:
        data = self.data
        return PlatformJobs(
            f"{self.prefix}-jobs",
            PlatformJobsArgs(
                namespace=self.config.namespace,
                image=self.config.image,
                # The daily aggregate prices the features as the ROI page does.
                settings=self.settings | self.config.pricing_settings(),
                secrets=self.pool,
                flag_seed=self.config.flag_seed,
                # Published to the very settings the services read, so the two cannot drift.
                model_publish=ModelPublishArgs(
                    destinations={
                        model.name: self.settings[model.setting]
                        for model in catalog.PUBLISHED_MODELS
                    },
                    role_arn=data.role_arns.get(MODEL_PUBLISHER_SERVICE_ACCOUNT),
                    secrets=dict(data.object_storage_credentials),
                    depends_on=list(data.model_store_ready),
                ),
                depends_on=list(after),
            ),
            opts=self.opts,
        )

    def services(self, gate: Sequence[pulumi.Resource]) -> dict[str, FeatureService]:
        services: dict[str, FeatureService] = {}
        for plan in self.config.service_plans:
            spec = plan.spec
            storage = self.data.object_storage_credentials if spec.buckets else None
            services[spec.name] = FeatureService(
                f"{self.prefix}-{spec.name}",
                FeatureServiceArgs(
                    spec=spec,
                    namespace=self.config.namespace,
                    image=self.config.image,
                    # The stack's pool sizes, which its connection budget was checked with.
                    settings=self.settings | plan.db_settings,
                    secrets=workload_secrets(spec.secrets, self.pool, storage),
                    role_arn=self.data.role_arns.get(spec.name),
                    min_replicas=plan.min_replicas,
                    max_replicas=plan.max_replicas,
                    cpu=plan.cpu,
                    memory=plan.memory,
                    depends_on=list(gate),
                ),
                opts=self.opts,
            )
        return services

    def dashboards(self, gate: Sequence[pulumi.Resource]) -> list[pulumi.Resource]:
        """The dashboards, once the image serves them (``catalog.DASHBOARDS.shipped``)."""
        spec = catalog.DASHBOARDS
        if not spec.shipped:
            return []
        return [
            Dashboards(
                f"{self.prefix}-dashboards",
                DashboardsArgs(
                    namespace=self.config.namespace,
                    image=self.config.image,
                    # The hub page reads the live feed as a client would, in-cluster.
                    settings=self.settings
                    | self.config.pricing_settings()
                    | {spec.feed_url_setting: spec.feed_url(self.config.namespace)},
                    secrets=workload_secrets(spec.secrets, self.pool),
                    replicas=1 if self.config.is_local else 2,
                    depends_on=list(gate),
                ),
                opts=self.opts,
            )
        ]

    def network_policies(
        self, addons: ClusterAddons, namespace: IsolatedNamespace
    ) -> PlatformNetworkPolicies:
        config, data = self.config, self.data
        return PlatformNetworkPolicies(
            f"{self.prefix}-network-policies",
            PlatformNetworkPoliciesArgs(
                namespace=config.namespace,
                services=[plan.spec for plan in config.service_plans],
                egress=config.egress,
                edge_namespace=addons.edge_namespace,
                monitoring_namespace=addons.monitoring_namespace,
                # Only for pods that can exist: no dashboards until the image serves
                # them, no HTTP-01 solver pods under a self-signed issuer.
                dashboards=catalog.DASHBOARDS if catalog.DASHBOARDS.shipped else None,
                rollback_handler=catalog.ROLLBACK_HANDLER,
                rollback_handler_api_server=(
                    data.api_server if config.rollback.undo_deployments else None
                ),
                slack=config.secrets.slack_configured,
                acme_http01_solver=config.tls_issuer in ACME_SERVERS,
                in_cluster_datastores=data.in_cluster,
                datastore_cidrs=() if data.in_cluster else data.datastore_cidrs,
                s3_cidrs=data.s3_cidrs,
                sts_cidrs=data.sts_cidrs,
            ),
            opts=pulumi.ResourceOptions.merge(
                self.opts, pulumi.ResourceOptions(depends_on=[namespace])
            ),
        )
