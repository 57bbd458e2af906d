"""The Kubernetes side of every stack: add-ons, jobs, services, dashboards, ingress, policies.

The same function builds it for ``local`` and for AWS; what differs (where
Postgres, Redis and object storage live, IAM roles, network ranges) arrives in
a ``DataPlane``. The components come from infra/components (infra-k8s); this
module only maps the stack configuration onto their Args.

Every stack runs the model-publish Job: it publishes the image's lead-scoring
model (``catalog.ML_MODEL_IMAGE_PATH``) to exactly the URI the services load
(their ``ML_MODEL_URI``, a prefix resolved through ``current.json``), and the
services wait for it as they wait for the migration.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi

from infra import catalog
from infra.components.addons import ACME_SERVERS, ClusterAddons, ClusterAddonsArgs
from infra.components.dashboards import (
    Dashboards,
    DashboardsArgs,
    PublicIngress,
    PublicIngressArgs,
)
from infra.components.jobs import (
    MODEL_PUBLISHER_SERVICE_ACCOUNT,
    ModelPublishArgs,
    PlatformJobs,
    PlatformJobsArgs,
)
from infra.components.network_policy import (
    IsolatedNamespace,
    IsolatedNamespaceArgs,
    PlatformNetworkPolicies,
    PlatformNetworkPoliciesArgs,
)
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


def service_secrets(config: StackConfig, data: DataPlane) -> dict[str, pulumi.Input[str]]:
    """The Secret every service mounts (catalog.SERVICE_SECRET_KEYS, plus extras)."""
    secrets = config.secrets
    return {
        "DATABASE_URL": data.database_url,
        "REDIS_URL": data.redis_url,
        "JWT_SECRET_KEY": secrets.jwt_secret_key,
        "JWT_PREVIOUS_KEYS": secrets.jwt_previous_keys,
        "ENCRYPTION_KEY": secrets.encryption_key,
        "ANTHROPIC_API_KEY": secrets.anthropic_api_key,
        "GHL_API_KEY": secrets.ghl_api_key,
        "SLACK_WEBHOOK_URL": secrets.slack_webhook_url,
        **data.object_storage_credentials,
        **data.extra_secrets,
    }


def build_platform(
    config: StackConfig,
    prefix: str,
    data: DataPlane,
    opts: pulumi.ResourceOptions,
    namespace: IsolatedNamespace,
) -> dict[str, Any]:
    """Declare the workloads and return the stack outputs they provide."""
    addons = ClusterAddons(
        f"{prefix}-addons",
        ClusterAddonsArgs(
            environment=config.environment.value,
            app_namespaces=[config.namespace],
            issuer=config.tls_issuer,
            acme_email=config.acme_email or None,
            grafana_host=config.hostname("grafana"),
            cluster_cidrs=list(data.cluster_cidrs),
        ),
        opts=opts,
    )
    settings = config.stack_settings() | dict(data.settings)
    secrets = service_secrets(config, data)
    after_namespace = [namespace, *data.ready]

    jobs = PlatformJobs(
        f"{prefix}-jobs",
        PlatformJobsArgs(
            namespace=config.namespace,
            image=config.image,
            settings=settings,
            # The migration creates the application role from DATABASE_URL's credentials.
            migration_secrets={
                "MIGRATION_DATABASE_URL": data.migration_database_url,
                "DATABASE_URL": data.database_url,
            },
            flags_secrets={"DATABASE_URL": data.database_url, "REDIS_URL": data.redis_url},
            flag_seed=config.flag_seed,
            # Published to the very setting the services read, so the two cannot drift.
            model_publish=ModelPublishArgs(
                destination_uri=settings["ML_MODEL_URI"],
                role_arn=data.role_arns.get(MODEL_PUBLISHER_SERVICE_ACCOUNT),
                secrets=dict(data.object_storage_credentials),
                depends_on=list(data.model_store_ready),
            ),
            depends_on=after_namespace,
        ),
        opts=opts,
    )

    services: dict[str, FeatureService] = {}
    for plan in config.service_plans:
        spec = plan.spec
        services[spec.name] = FeatureService(
            f"{prefix}-{spec.name}",
            FeatureServiceArgs(
                spec=spec,
                namespace=config.namespace,
                image=config.image,
                settings=settings,
                secrets=secrets,
                role_arn=data.role_arns.get(spec.name),
                min_replicas=plan.min_replicas,
                max_replicas=plan.max_replicas,
                cpu=plan.cpu,
                memory=plan.memory,
                depends_on=jobs.rollout_gate,
            ),
            opts=opts,
        )

    # The Streamlit dashboards arrive with the business-impact work; until the
    # image serves them the stack declares neither their Deployment nor their hosts.
    dashboards: list[pulumi.Resource] = []
    if catalog.DASHBOARDS_SHIPPED:
        dashboards.append(
            Dashboards(
                f"{prefix}-dashboards",
                DashboardsArgs(
                    namespace=config.namespace,
                    image=config.image,
                    settings=settings,
                    secrets={"DATABASE_URL": data.database_url, "REDIS_URL": data.redis_url},
                    replicas=1 if config.is_local else 2,
                    depends_on=jobs.rollout_gate,
                ),
                opts=opts,
            )
        )
    dashboard_hosts = config.dashboard_hosts if catalog.DASHBOARDS_SHIPPED else {}
    ingress = PublicIngress(
        f"{prefix}-ingress",
        PublicIngressArgs(
            namespace=config.namespace,
            api_host=config.hostname("api"),
            dashboard_hosts=dashboard_hosts,
            cluster_issuer=addons.issuer_name,
            # A laptop cluster has no load balancer to publish an address.
            skip_await=config.is_local,
            depends_on=[*addons.ready, *dashboards, *services.values()],
        ),
        opts=opts,
    )
    PlatformNetworkPolicies(
        f"{prefix}-network-policies",
        PlatformNetworkPoliciesArgs(
            namespace=config.namespace,
            services=[plan.spec for plan in config.service_plans],
            egress=config.egress,
            ingress_namespace=addons.ingress_namespace,
            monitoring_namespace=addons.monitoring_namespace,
            # Only for pods that can exist: no dashboards until the image serves them,
            # no HTTP-01 solver pods under a self-signed issuer.
            dashboards=catalog.DASHBOARDS_SHIPPED,
            acme_http01_solver=config.tls_issuer in ACME_SERVERS,
            in_cluster_datastores=data.in_cluster,
            datastore_cidrs=() if data.in_cluster else data.datastore_cidrs,
        ),
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[namespace])),
    )

    return {
        "environment": config.environment.value,
        "namespace": config.namespace,
        "image": config.image,
        "apiUrl": f"https://{config.hostname('api')}",
        "dashboardUrls": {name: f"https://{host}" for name, host in dashboard_hosts.items()},
        "grafanaUrl": f"https://{config.hostname('grafana')}",
        "ingressUrls": ingress.urls,
        "serviceSecretNames": {name: svc.secret_name for name, svc in services.items()},
        "serviceConfigMapNames": {name: svc.config_map_name for name, svc in services.items()},
        "serviceUrls": {name: svc.internal_url for name, svc in services.items()},
        "migrationJob": jobs.migration_job_name,
        "flagsInitJob": jobs.flags_job_name,
        "modelPublishJob": jobs.model_publish_job_name,
        "mlModelUri": settings["ML_MODEL_URI"],
        "chartVersions": addons.chart_versions,
    }
