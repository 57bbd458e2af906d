"""The Pulumi program: stack config in, components wired, outputs exported.

``main`` is what ``infra/__main__.py`` runs under the Pulumi CLI and what
``infra.synth.mocks.run_program`` runs offline; it reads the configuration once and
hands the frozen ``StackConfig`` to ``build``.

Order of construction (each step's outputs feed the next):

* AWS stacks: network -> cluster (or the existing EKS cluster) -> database,
  cache, storage, registry, service-account roles -> Kubernetes provider ->
  platform (namespace, add-ons, jobs, services, dashboards, ingress, policies).
* local: the kubeconfig context -> in-cluster Postgres, Redis and MinIO ->
  the same platform.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from infra import catalog
from infra.components.addons import load_eks_addon_versions
from infra.components.autoscaling import KarpenterSpec
from infra.components.cache import Cache, CacheArgs, replication_group_id
from infra.components.cluster import (
    DEPLOY_ROLE,
    MANAGED_ADDONS,
    EksCluster,
    EksClusterArgs,
    ExistingEksCluster,
    ExistingEksClusterArgs,
    KubeconfigCluster,
    KubeconfigClusterArgs,
    NodeGroupSpec,
)
from infra.components.database import Database, DatabaseArgs
from infra.components.datastore_placement import DatastoreNetwork
from infra.components.datastores import Datastores, DatastoresArgs, minio_endpoint
from infra.components.dns import ExternalDnsArgs
from infra.components.iam import PrefixWriterGrant, ServiceRoles, ServiceRolesArgs
from infra.components.jobs import MODEL_PUBLISHER_SERVICE_ACCOUNT
from infra.components.network import Network, NetworkArgs
from infra.components.network_policy import ApiServer, eks_service_ip
from infra.components.registry import Registry, RegistryArgs
from infra.components.storage import Storage, StorageArgs
from infra.config import PROJECT, StackConfig, load_stack_config
from infra.config_checks import database_max_connections
from infra.platform import DataPlane, build_platform, create_namespace


def main() -> None:
    """Entry point: load the stack config once, build, export."""
    config = load_stack_config(pulumi.Config(PROJECT), pulumi.get_stack())
    for key, value in build(config).items():
        pulumi.export(key, value)


def build(config: StackConfig) -> dict[str, Any]:
    """Declare every resource of the stack and return the outputs to export."""
    if config.is_local:
        return _build_local(config)
    return _build_aws(config)


def resource_prefix(config: StackConfig) -> str:
    """Stem of every logical name and of AWS names, e.g. ``enterprisehub-production``."""
    return f"{PROJECT}-{config.stack}"


def bucket_names(config: StackConfig, account_id: str | None) -> dict[catalog.Bucket, str]:
    """Global S3 names: prefix, environment, purpose and (on AWS) the account id."""
    suffix = f"-{account_id}" if account_id else ""
    return {
        bucket: f"{config.storage.bucket_prefix}-{config.environment.value}-{bucket.value}{suffix}"
        for bucket in catalog.Bucket
    }


def _build_local(config: StackConfig) -> dict[str, Any]:
    prefix = resource_prefix(config)
    cluster = KubeconfigCluster(
        f"{prefix}-cluster",
        KubeconfigClusterArgs(
            context=config.cluster.context, kubeconfig_path=config.cluster.kubeconfig_path
        ),
    )
    k8s_opts = pulumi.ResourceOptions(providers=[cluster.provider])
    buckets = bucket_names(config, None)
    namespace = create_namespace(config, prefix, k8s_opts)
    stores = Datastores(
        f"{prefix}-datastores",
        DatastoresArgs(
            namespace=config.namespace,
            tools_image=config.image,
            buckets=list(buckets.values()),
            database_name=config.database.name,
            storage_class=config.cluster.storage_class,
            postgres_storage=f"{config.database.allocated_storage_gb}Gi",
            postgres_max_connections=_max_connections(config),
            redis_maxmemory_mb=config.cache.maxmemory_mb,
            redis_maxmemory_policy=config.cache.maxmemory_policy,
            redis_notify_keyspace_events=config.cache.notify_keyspace_events,
            redis_slowlog_log_slower_than=config.cache.slowlog_log_slower_than,
            redis_slowlog_max_len=config.cache.slowlog_max_len,
            object_storage=f"{config.storage.local_size_gb}Gi",
        ),
        opts=pulumi.ResourceOptions(providers=[cluster.provider], depends_on=[namespace]),
    )
    s3_endpoint = minio_endpoint(config.namespace)
    data = DataPlane(
        database_url=stores.database_url,
        migration_database_url=stores.migration_database_url,
        redis_url=stores.redis_url,
        settings=_bucket_settings(buckets) | {"S3_ENDPOINT_URL": s3_endpoint},
        object_storage_credentials={
            "AWS_ACCESS_KEY_ID": stores.s3_access_key_id,
            "AWS_SECRET_ACCESS_KEY": stores.s3_secret_access_key,
        },
        ready=list(stores.ready),
        in_cluster=True,
    )
    platform = build_platform(config, prefix, data, k8s_opts, namespace)
    return {
        **platform,
        "buckets": {bucket.value: name for bucket, name in buckets.items()},
        "s3Endpoint": s3_endpoint,
        "kubeContext": config.cluster.context or "(current context)",
    }


def _bucket_settings(buckets: dict[catalog.Bucket, str]) -> dict[str, str]:
    models = buckets[catalog.Bucket.MODELS]
    return {
        "MODELS_BUCKET": models,
        "MEDIA_BUCKET": buckets[catalog.Bucket.MEDIA],
        # The alias prefixes (ML_MODEL_URI, CHURN_MODEL_URI), never a version's key:
        # a new model is a re-pointed current.json, not a ConfigMap change (see
        # services/ml/publish.py).
        **{model.setting: model.uri(models) for model in catalog.PUBLISHED_MODELS},
    }


@dataclass
class _AwsCluster:
    """What the data stores and the platform need from either kind of EKS cluster."""

    provider: k8s.Provider
    vpc_id: pulumi.Input[str]
    subnet_ids: pulumi.Input[list[str]]
    security_group_id: pulumi.Input[str]
    oidc_provider_arn: pulumi.Input[str]
    oidc_issuer_url: pulumi.Input[str]
    name: pulumi.Input[str]
    endpoint: pulumi.Input[str]
    private_cidrs: list[str] = field(default_factory=list)
    #: Where pods reach STS: the STS interface endpoint's subnets.
    sts_cidrs: list[str] = field(default_factory=list)
    #: VPC endpoints the cluster side's network policies use.
    vpc_endpoints: dict[str, Any] = field(default_factory=dict)
    #: What must exist before a pod exchanges its IRSA token with STS (the STS
    #: interface endpoint this stack creates; nothing for existing-eks).
    sts_ready: list[pulumi.Resource] = field(default_factory=list)
    #: external-dns for the stack's hosted zone (eks mode with dns.hostedZoneId).
    external_dns: ExternalDnsArgs | None = None
    #: The ``kubernetes`` Service's address as the cluster reports it; None: EKS's
    #: default for the VPC (a cluster this stack creates sets no service range).
    api_service_ip: str | None = None


def _build_aws(config: StackConfig) -> dict[str, Any]:
    prefix = resource_prefix(config)
    aws_provider = _aws_provider(config, prefix)
    aws_opts = pulumi.ResourceOptions(providers=[aws_provider])
    identity = aws.get_caller_identity(opts=pulumi.InvokeOptions(provider=aws_provider))
    cluster = _aws_cluster(config, prefix, aws_provider, identity.account_id)

    # Both managed stores sit in the cluster's subnets and admit only its security group.
    datastore_network = DatastoreNetwork(
        vpc_id=cluster.vpc_id,
        subnet_ids=cluster.subnet_ids,
        client_security_group_id=cluster.security_group_id,
    )
    database = _database(config, prefix, datastore_network, aws_opts)
    cache = _cache(config, prefix, datastore_network, aws_opts)
    buckets = bucket_names(config, identity.account_id)
    storage = _storage(config, prefix, buckets, aws_opts)
    registry = Registry(
        f"{prefix}-registry",
        RegistryArgs(repository_name=prefix, force_delete=config.storage.force_destroy),
        opts=aws_opts,
    )
    roles = _service_roles(config, prefix, cluster, storage, aws_opts)

    k8s_opts = pulumi.ResourceOptions(providers=[cluster.provider])
    data = _aws_data_plane(config, cluster, database, cache, buckets, storage, roles, aws_provider)
    namespace = create_namespace(config, prefix, k8s_opts)
    platform = build_platform(config, prefix, data, k8s_opts, namespace)
    return {
        **platform,
        "clusterName": cluster.name,
        "clusterEndpoint": cluster.endpoint,
        "databaseEndpoint": database.address,
        "redisEndpoint": cache.primary_endpoint,
        "buckets": {bucket.value: name for bucket, name in buckets.items()},
        "imageRepository": registry.repository_url,
        "vpcEndpoints": cluster.vpc_endpoints,
        "serviceRoleArns": roles.role_arns,
        "kubeconfigCommand": pulumi.Output.concat(
            "aws eks update-kubeconfig --region ", config.aws_region, " --name ", cluster.name
        ),
    }


def _aws_provider(config: StackConfig, prefix: str) -> aws.Provider:
    """The stack's AWS provider; every resource it creates carries the stack's tags."""
    return aws.Provider(
        f"{prefix}-aws",
        region=config.aws_region,
        default_tags=aws.ProviderDefaultTagsArgs(tags=stack_tags(config)),
    )


def stack_tags(config: StackConfig) -> dict[str, str]:
    """The tags of everything the stack creates in AWS (the provider's default tags)."""
    return {
        "Project": PROJECT,
        "Stack": config.stack,
        "Environment": config.environment.value,
        "ManagedBy": "pulumi",
    }


def _storage(
    config: StackConfig,
    prefix: str,
    buckets: dict[catalog.Bucket, str],
    opts: pulumi.ResourceOptions,
) -> Storage:
    return Storage(
        f"{prefix}-storage",
        StorageArgs(
            bucket_names=buckets,
            noncurrent_version_expiration_days=config.storage.noncurrent_version_expiration_days,
            abort_incomplete_multipart_days=config.storage.abort_incomplete_multipart_days,
            media_transition_ia_days=config.storage.media_transition_ia_days,
            media_transition_glacier_days=config.storage.media_transition_glacier_days,
            force_destroy=config.storage.force_destroy,
        ),
        opts=opts,
    )


def _service_roles(
    config: StackConfig,
    prefix: str,
    cluster: _AwsCluster,
    storage: Storage,
    opts: pulumi.ResourceOptions,
) -> ServiceRoles:
    return ServiceRoles(
        f"{prefix}-roles",
        ServiceRolesArgs(
            oidc_provider_arn=cluster.oidc_provider_arn,
            oidc_issuer_url=cluster.oidc_issuer_url,
            namespace=config.namespace,
            # Roles only for what runs: a role nobody assumes is privilege for nothing.
            services=[plan.spec for plan in config.service_plans],
            bucket_arns=dict(storage.bucket_arns),
            storage_key_arn=storage.key_arn,
            region=config.aws_region,
            model_publisher=PrefixWriterGrant(
                service_account=MODEL_PUBLISHER_SERVICE_ACCOUNT,
                prefixes=tuple(model.prefix for model in catalog.PUBLISHED_MODELS),
            ),
        ),
        opts=opts,
    )


def _aws_data_plane(
    config: StackConfig,
    cluster: _AwsCluster,
    database: Database,
    cache: Cache,
    buckets: dict[catalog.Bucket, str],
    storage: Storage,
    roles: ServiceRoles,
    aws_provider: aws.Provider,
) -> DataPlane:
    """What the platform's workloads use on AWS: the managed stores and the network paths."""
    return DataPlane(
        database_url=database.app_dsn,
        migration_database_url=database.owner_dsn,
        redis_url=cache.url,
        settings=_bucket_settings(buckets),
        role_arns=roles.role_arns,
        ready=[database, cache],
        # The publisher writes to the bucket with its role's policy attached, and
        # gets that role from STS: through the interface endpoint, the only STS
        # address its NetworkPolicy admits (sts_cidrs).
        model_store_ready=[storage, roles, *cluster.sts_ready],
        in_cluster=False,
        datastore_cidrs=cluster.private_cidrs,
        cluster_cidrs=[config.network.vpc_cidr],
        # EKS's API endpoints are network interfaces in the VPC, on 443.
        api_server=ApiServer(
            service_ip=cluster.api_service_ip or eks_service_ip(config.network.vpc_cidr),
            endpoint_cidrs=[config.network.vpc_cidr],
            endpoint_port=443,
        ),
        # The S3 gateway endpoint routes the region's S3 prefix list; the STS
        # interface endpoint's network interfaces sit in the private subnets.
        s3_cidrs=aws.ec2.get_prefix_list_output(
            name=f"com.amazonaws.{config.aws_region}.s3",
            opts=pulumi.InvokeOutputOptions(provider=aws_provider),
        ).cidr_blocks,
        sts_cidrs=cluster.sts_cidrs,
        external_dns=cluster.external_dns,
    )


def _aws_cluster(
    config: StackConfig, prefix: str, aws_provider: aws.Provider, account_id: str
) -> _AwsCluster:
    aws_opts = pulumi.ResourceOptions(providers=[aws_provider])
    if config.cluster.mode == "existing-eks":
        return _existing_cluster(config, prefix, account_id, aws_opts)
    # Read before any resource is declared: a version without pinned add-ons
    # stops the preview here, not half-way through an `up` that has begun.
    addon_versions = load_eks_addon_versions(config.kubernetes_version, MANAGED_ADDONS)
    network = _network(config, prefix, aws_opts)
    eks = EksCluster(
        f"{prefix}-cluster",
        _eks_cluster_args(config, prefix, network, addon_versions, account_id),
        opts=aws_opts,
    )
    return _AwsCluster(
        provider=eks.provider,
        vpc_id=network.vpc_id,
        subnet_ids=network.private_subnet_ids,
        security_group_id=eks.security_group_id,
        oidc_provider_arn=eks.oidc_provider_arn,
        oidc_issuer_url=eks.oidc_issuer_url,
        name=eks.cluster_name,
        endpoint=eks.endpoint,
        private_cidrs=network.private_cidrs,
        # The endpoint this stack creates has an interface in every private subnet.
        sts_cidrs=network.private_cidrs,
        vpc_endpoints={
            "s3": {"id": network.s3_endpoint_id, "prefixListId": network.s3_prefix_list_id},
            # Interface endpoint: its addresses lie in the private subnets.
            "sts": {"id": network.sts_endpoint_id, "cidrs": network.private_cidrs},
        },
        sts_ready=network.sts_ready,
        external_dns=_external_dns(config, prefix, eks, aws_provider),
    )


def _existing_cluster(
    config: StackConfig, prefix: str, account_id: str, opts: pulumi.ResourceOptions
) -> _AwsCluster:
    existing = ExistingEksCluster(
        f"{prefix}-cluster",
        ExistingEksClusterArgs(
            cluster_name=str(config.cluster.name),
            region=config.aws_region,
            account_id=account_id,
        ),
        opts=opts,
    )
    return _AwsCluster(
        provider=existing.provider,
        vpc_id=existing.vpc_id,
        subnet_ids=existing.private_subnet_ids,
        security_group_id=existing.security_group_id,
        oidc_provider_arn=existing.oidc_provider_arn,
        oidc_issuer_url=existing.oidc_issuer_url,
        name=existing.cluster_name,
        endpoint=existing.endpoint,
        # The existing VPC's layout is unknown here; network.vpcCidr names it.
        private_cidrs=[config.network.vpc_cidr],
        # The VPC's own STS endpoint (the component refuses a VPC without one).
        sts_cidrs=existing.sts_cidrs,
        vpc_endpoints={"sts": {"id": existing.sts_endpoint_id, "cidrs": existing.sts_cidrs}},
        api_service_ip=existing.api_service_ip,
    )


def _network(config: StackConfig, prefix: str, opts: pulumi.ResourceOptions) -> Network:
    return Network(
        f"{prefix}-network",
        NetworkArgs(
            vpc_cidr=config.network.vpc_cidr,
            az_count=config.network.az_count,
            nat_gateway_per_az=config.network.nat_gateway_per_az,
            cluster_name=prefix,
            region=config.aws_region,
        ),
        opts=opts,
    )


def _eks_cluster_args(
    config: StackConfig,
    prefix: str,
    network: Network,
    addon_versions: dict[str, str],
    account_id: str,
) -> EksClusterArgs:
    cluster = config.cluster
    return EksClusterArgs(
        cluster_name=prefix,
        account_id=account_id,
        # Instances and volumes are created by EKS and Karpenter, not by the provider.
        node_tags=stack_tags(config),
        kubernetes_version=config.kubernetes_version,
        addon_versions=addon_versions,
        subnet_ids=network.private_subnet_ids,
        subnet_egress=network.private_egress,
        vpc_id=network.vpc_id,
        region=config.aws_region,
        endpoint_public_access=cluster.endpoint_public_access,
        public_access_cidrs=cluster.public_access_cidrs,
        deployer_cidrs=(
            (cluster.deployer_cidrs or (config.network.vpc_cidr,))
            if cluster.deployer_in_vpc
            else ()
        ),
        log_types=cluster.log_types,
        support_type=cluster.support_type,
        admin_role_arns=_admin_roles(config),
        autoscaling=KarpenterSpec(
            instance_types=cluster.autoscaling.instance_types,
            capacity_types=cluster.autoscaling.capacity_types,
            cpu_limit=cluster.autoscaling.cpu_limit,
            memory_limit_gb=cluster.autoscaling.memory_limit_gb,
            ami_alias=cluster.autoscaling.ami_alias,
        ),
        node_groups=[
            NodeGroupSpec(
                name=group.name,
                instance_types=group.instance_types,
                min_size=group.min_size,
                desired_size=group.desired_size,
                max_size=group.max_size,
                disk_size_gb=group.disk_size_gb,
                ami_type=group.ami_type,
                capacity_type=group.capacity_type,
            )
            for group in cluster.node_groups
        ],
    )


def _external_dns(
    config: StackConfig, prefix: str, eks: EksCluster, aws_provider: aws.Provider
) -> ExternalDnsArgs | None:
    """external-dns for the stack's hosted zone, or None without one."""
    if not config.dns.hosted_zone_id:
        return None
    # external-dns manages only names ending in a --domain-filter value: a
    # `hostnames` override outside `domain` (api-dev.enterprisehub.ai beside
    # dev.enterprisehub.ai, in the same zone) would get no record at all.
    hosts = [config.hostname("api"), config.hostname("grafana"), *config.dashboard_hosts.values()]
    outside = sorted(
        {host for host in hosts if host != config.domain and not host.endswith(f".{config.domain}")}
    )
    return ExternalDnsArgs(
        hosted_zone_id=config.dns.hosted_zone_id,
        domains=[config.domain, *outside],
        owner_id=prefix,
        oidc_provider_arn=eks.oidc_provider_arn,
        oidc_issuer_url=eks.oidc_issuer_url,
        partition=eks.partition,
        region=config.aws_region,
        provider=eks.provider,
        aws_provider=aws_provider,
    )


def _admin_roles(config: StackConfig) -> dict[str, str]:
    """Cluster-admin access entries by purpose, from config."""
    roles = {
        DEPLOY_ROLE: config.cluster.deploy_role_arn,
        "break-glass": config.cluster.break_glass_role_arn,
    }
    return {purpose: arn for purpose, arn in roles.items() if arn}


def _database(
    config: StackConfig, prefix: str, network: DatastoreNetwork, opts: pulumi.ResourceOptions
) -> Database:
    db = config.database
    return Database(
        f"{prefix}-database",
        DatabaseArgs(
            identifier=f"{prefix}-postgres",
            network=network,
            instance_class=db.instance_class,
            engine_version=db.engine_version,
            allocated_storage_gb=db.allocated_storage_gb,
            max_allocated_storage_gb=db.max_allocated_storage_gb,
            backup_retention_days=db.backup_retention_days,
            backup_window=db.backup_window,
            maintenance_window=db.maintenance_window,
            multi_az=db.multi_az,
            deletion_protection=db.deletion_protection,
            storage_encrypted=db.storage_encrypted,
            skip_final_snapshot=db.skip_final_snapshot,
            performance_insights=db.performance_insights,
            performance_insights_retention_days=db.performance_insights_retention_days,
            database_name=db.name,
            owner_username=db.owner_username,
            max_connections=_max_connections(config),
        ),
        opts=opts,
    )


def _max_connections(config: StackConfig) -> int:
    """The server's max_connections; load_stack_config refused a stack without one."""
    limit = database_max_connections(config)
    if limit is None:
        raise ValueError(f"{config.stack}: no max_connections for {config.database.instance_class}")
    return limit


def _cache(
    config: StackConfig, prefix: str, network: DatastoreNetwork, opts: pulumi.ResourceOptions
) -> Cache:
    cache = config.cache
    return Cache(
        f"{prefix}-cache",
        CacheArgs(
            replication_group_id=replication_group_id(prefix),
            network=network,
            node_type=cache.node_type,
            num_nodes=cache.num_nodes,
            engine_version=cache.engine_version,
            automatic_failover=cache.automatic_failover,
            multi_az=cache.multi_az,
            transit_encryption=cache.transit_encryption,
            at_rest_encryption=cache.at_rest_encryption,
            maxmemory_policy=cache.maxmemory_policy,
            notify_keyspace_events=cache.notify_keyspace_events,
            slowlog_log_slower_than=cache.slowlog_log_slower_than,
            slowlog_max_len=cache.slowlog_max_len,
            snapshot_retention_days=cache.snapshot_retention_days,
            snapshot_window=cache.snapshot_window,
            maintenance_window=cache.maintenance_window,
            deletion_protection=cache.deletion_protection,
            auth_token_update_strategy=cache.auth_token_update_strategy,
        ),
        opts=opts,
    )
