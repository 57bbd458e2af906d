"""The stack configuration: read once from ``pulumi.Config``, validated, frozen.

``load_stack_config`` is the only reader of Pulumi config in the program. It
returns a ``StackConfig`` or raises ``StackConfigError`` before any resource is
declared; the error lists every problem at once, each naming the stack, the key,
the rejected value and what is allowed.

Keys live in the project namespace (``enterprisehub:<key>``) and are documented
with their types and defaults under ``config:`` in ``Pulumi.yaml``. Groups of
related settings (``database``, ``cache``...) are structured objects, set with
``pulumi config set --path enterprisehub:database.multiAz true``.

Secrets are read with ``require_secret`` and stay ``Output[str]`` from here to the
Kubernetes Secret; their values are never put in an error message.
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final, Literal, get_args

import pulumi
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from infra import catalog
from infra.config_checks import SUPPORTED_KUBERNETES_VERSIONS, is_hostname, semantic_problems
from infra.environments import ENVIRONMENTS, Environment
from infra.problems import PROJECT, Problem, StackConfigError

__all__ = [
    "OPTIONAL_SECRET_KEYS",
    "OUT_OF_BAND_KEYS",
    "PROJECT",
    "REQUIRED_SECRET_KEYS",
    "SUPPORTED_KUBERNETES_VERSIONS",
    "Environment",
    "Problem",
    "RollbackConfig",
    "ServicePlan",
    "StackConfig",
    "StackConfigError",
    "StackSecrets",
    "config_keys",
    "load_stack_config",
]


#: Secrets every stack must set with ``pulumi config set --secret``.
REQUIRED_SECRET_KEYS: Final = ("jwtSecretKey", "anthropicApiKey", "ghlApiKey")
#: Secrets a stack may set; absent or empty means "not used".
OPTIONAL_SECRET_KEYS: Final = ("slackWebhookUrl", "jwtPreviousKeys")
#: Keys whose real values cannot live in git: the secrets, and what CI sets on each
#: release (the image digest, and the runbooks of the deployed commit). An offline
#: synthesis must supply them itself.
OUT_OF_BAND_KEYS: Final = ("image", "runbookBaseUrl", *REQUIRED_SECRET_KEYS)

# Same minimum as services/common/settings.py: an HS256 key shorter than the hash
# output weakens the MAC (RFC 7518 section 3.2).
MIN_KEY_LENGTH: Final = 32
# A JWT kid, as services/common/settings.py's _KID_PATTERN.
_KID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_DEFAULT_KEY_ID: Final = "v1"

_DIGEST = r"sha256:[0-9a-f]{64}"
_REPO = r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]{1,5})?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
_TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
# The compiled patterns below are only used with ``fullmatch``: with ``match``,
# "^...$" would accept a value followed by a newline.
_IMAGE = re.compile(rf"(?P<repo>{_REPO})(?::(?P<tag>{_TAG}))?(?:@(?P<digest>{_DIGEST}))?")
_DNS1123 = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_CPU = re.compile(r"(?:[1-9][0-9]*m|[0-9]+(?:\.[0-9]+)?)")
_MEMORY = re.compile(r"[1-9][0-9]*(?:Ki|Mi|Gi|Ti|K|M|G|T)?")

PositiveInt = Annotated[int, Field(gt=0)]

# ``Field(pattern=...)`` strings run in pydantic's Rust regex engine, where "$" is
# the end of the text only (no trailing-newline exception, unlike Python's re);
# tests/infra/test_config.py checks that a trailing newline is refused.
_INSTANCE_TYPE = r"^[a-z][a-z0-9-]*\.[a-z0-9]+$"
_ROLE_ARN = r"^arn:aws(-cn|-us-gov|-iso|-iso-b)?:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]+$"
#: Every string leaf is typed: an empty or malformed value is refused where it
#: appears, not discovered by the provider forty minutes into an `up`.
NonEmpty = Annotated[str, Field(min_length=1)]
InstanceType = Annotated[
    str, Field(pattern=_INSTANCE_TYPE, description="an EC2 instance type such as m7i.4xlarge")
]
RoleArn = Annotated[str, Field(pattern=_ROLE_ARN)]
_AMI_ALIAS = r"^(al2023|bottlerocket)@(latest|v[0-9]+(\.[0-9]+)*)$"
_DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"


def _ipv4_network(value: str) -> ipaddress.IPv4Network:
    try:
        network = ipaddress.ip_network(value, strict=True)
    except ValueError as error:
        raise ValueError(f"must be an IPv4 CIDR such as 10.0.0.0/16 ({error})") from None
    if not isinstance(network, ipaddress.IPv4Network):
        raise ValueError("must be an IPv4 CIDR")
    return network


def _cidr_leaf(value: str) -> str:
    # The canonical form: "0.0.0.0/00" parses as the world and slipped past the
    # checks that refuse "0.0.0.0/0" by its text.
    return str(_ipv4_network(value))


def _hostname_leaf(value: str) -> str:
    if not is_hostname(value):
        raise ValueError("must be a DNS name (a-z, 0-9, '-', at least one dot)")
    return value


_RUNBOOK_BASE = re.compile(r"https://[a-z0-9.-]+(?::[0-9]{1,5})?(?:/[^\s?#]*)?/")


def _runbook_base_leaf(value: str) -> str:
    if not _RUNBOOK_BASE.fullmatch(value):
        raise ValueError(
            "must be an https:// URL ending in '/' under which the runbooks' file names "
            "resolve, e.g. https://github.com/OWNER/REPO/blob/COMMIT/docs/runbooks/"
        )
    return value


Cidr = Annotated[str, AfterValidator(_cidr_leaf)]
RunbookBaseUrl = Annotated[str, AfterValidator(_runbook_base_leaf)]
DnsName = Annotated[str, AfterValidator(_hostname_leaf)]


def _dns1123(value: str) -> str:
    if not _DNS1123.fullmatch(value):
        raise ValueError("must be a DNS-1123 label: a-z, 0-9 and '-', at most 63")
    return value


def _admits_bool(annotation: Any) -> bool:
    """True when ``annotation`` (or one of its arms) takes a boolean as such."""
    if annotation is bool or annotation is Any:
        return True
    return any(_admits_bool(arg) for arg in get_args(annotation))


class _Model(BaseModel):
    """Frozen, strict about unknown keys, camelCase in config and snake_case in code."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        arbitrary_types_allowed=True,
    )

    @field_validator("*", mode="before")
    @classmethod
    def _no_boolean_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        # pydantic reads true as 1 where a number is expected, so
        # `pulumi config set --path services.x.minReplicas true` deployed one
        # replica and `database.poolSize true` a pool of one, without a word.
        name = info.field_name
        if isinstance(value, bool) and name and not _admits_bool(cls.model_fields[name].annotation):
            raise ValueError("not a boolean: this key takes a number or text")
        return value


class FlagSeed(_Model):
    """A feature flag's initial state: created by the flags-init Job if missing."""

    enabled: bool = False
    rollout_percentage: float = Field(default=0, ge=0, le=100, multiple_of=0.01)


_OFF: FlagSeed | bool = FlagSeed()


#: A finite number >= 0. ``pulumi config set --path`` stores a decimal such as 0.04
#: as a string (integers only become numbers), so a numeric string is read as one;
#: a boolean is refused by ``_Model`` as everywhere a number belongs.
Assumption = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class ImpactAssumptions(_Model):
    """One feature's overrides of the numbers its business impact is priced with.

    The names are those of ``FeatureAssumptions`` in services/impact/assumptions.py
    (tests/test_contracts.py keeps the two alike); the service holds the defaults.
    A range is overridden whole, so that a preview can check its order without
    them.
    """

    lift: Assumption | None = None
    lift_low: Assumption | None = None
    lift_high: Assumption | None = None
    value_per_unit: Assumption | None = None
    infra_cost_per_day: Assumption | None = None
    api_cost_per_use: Assumption | None = None
    hours_saved_per_use: Assumption | None = None
    annual_value_low: Assumption | None = None
    annual_value_high: Assumption | None = None

    @model_validator(mode="after")
    def _ranges_whole_and_ordered(self) -> ImpactAssumptions:
        for names in catalog.IMPACT_ASSUMPTION_RANGES:
            values = [getattr(self, name) for name in names]
            given = [value is not None for value in values]
            camel = [to_camel(name) for name in names]
            if any(given) and not all(given):
                raise ValueError(f"{', '.join(camel)} are one range: set all of them or none")
            if all(given) and values != sorted(values):
                raise ValueError(f"must hold {' <= '.join(camel)}")
        return self

    def overrides(self) -> dict[str, float]:
        """The numbers set, under the service's names (snake_case)."""
        return self.model_dump(exclude_none=True)


class ServiceOverride(_Model):
    """Per-stack changes to a service's seed numbers (all optional)."""

    min_replicas: PositiveInt | None = None
    max_replicas: PositiveInt | None = None
    cpu: str | None = None
    memory: str | None = None
    #: This service's DB_POOL_SIZE / DB_MAX_OVERFLOW; None: database.poolSize / maxOverflow.
    db_pool_size: PositiveInt | None = None
    db_max_overflow: Annotated[int, Field(ge=0)] | None = None

    @field_validator("cpu")
    @classmethod
    def _cpu(cls, value: str | None) -> str | None:
        if value is not None and (not _CPU.fullmatch(value) or value in {"0", "0m"}):
            raise ValueError("must be a positive Kubernetes CPU quantity such as 500m or 2")
        return value

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None and not _MEMORY.fullmatch(value):
            raise ValueError("must be a positive Kubernetes memory quantity such as 512Mi or 4Gi")
        return value


@dataclass(frozen=True, slots=True)
class ServicePlan:
    """A catalog service with this stack's overrides applied: what gets deployed."""

    spec: catalog.ServiceSpec
    min_replicas: int
    max_replicas: int
    cpu: str
    memory: str
    db_pool_size: int
    db_max_overflow: int

    @property
    def db_settings(self) -> dict[str, str]:
        """The pool's ConfigMap settings (services/common/settings.py reads them)."""
        return {
            "DB_POOL_SIZE": str(self.db_pool_size),
            "DB_MAX_OVERFLOW": str(self.db_max_overflow),
        }

    @property
    def db_connections_per_replica(self) -> int:
        """The most Postgres connections one replica opens: its pool and any of its own."""
        return self.db_pool_size + self.db_max_overflow + self.spec.extra_db_connections


class DatabaseConfig(_Model):
    """PostgreSQL: RDS in AWS stacks, an in-cluster StatefulSet in ``local``."""

    instance_class: Annotated[str, Field(pattern=r"^db\.[a-z0-9-]+\.[a-z0-9]+$")] = "db.r6g.large"
    engine_version: NonEmpty = "15"
    allocated_storage_gb: PositiveInt = 100
    # Storage autoscaling ceiling; RDS grows the volume up to this without downtime.
    max_allocated_storage_gb: PositiveInt = 500
    backup_retention_days: PositiveInt = 30
    # RDS takes the daily snapshot somewhere inside the window; a 30-minute window
    # (the minimum) keeps it closest to the seed's "0 2 * * *" schedule.
    backup_window: str = "02:00-02:30"
    maintenance_window: str = "sun:03:00-sun:04:00"
    multi_az: bool = True
    deletion_protection: bool = True
    storage_encrypted: bool = True
    skip_final_snapshot: bool = False
    performance_insights: bool = True
    # 7 days is the free tier; longer retention must be a multiple of 31 (up to 731).
    performance_insights_retention_days: PositiveInt = 7
    name: str = "enterprisehub"
    owner_username: str = "enterprisehub_owner"
    #: Each service process's pool, DB_POOL_SIZE + DB_MAX_OVERFLOW connections at
    #: most (the seed's 20 and 40); ``services.<name>`` may override them.
    pool_size: PositiveInt = 20
    max_overflow: Annotated[int, Field(ge=0)] = 40
    #: The server's max_connections, set in the RDS parameter group (and on the
    #: local Postgres). None: RDS's default formula on the instance class's
    #: memory, or PostgreSQL's 100 locally (config_checks.database_max_connections).
    #: At most PostgreSQL's MAX_BACKENDS: RDS accepts up to 8,388,607 and the
    #: server would then refuse to start.
    max_connections: Annotated[int, Field(gt=0, le=262_143)] | None = None


class CacheConfig(_Model):
    """Redis: an ElastiCache replication group in AWS stacks, in-cluster in ``local``."""

    # The seed sizes Redis at 2 GiB; cache.m7g.large (6.4 GiB) is the smallest
    # non-burstable Graviton node above that, leaving room for replication buffers.
    node_type: Annotated[str, Field(pattern=r"^cache\.[a-z0-9-]+\.[a-z0-9]+$")] = "cache.m7g.large"
    num_nodes: PositiveInt = 3
    # The seed asks for Redis 7.2; ElastiCache's Redis OSS engine stops at 7.1
    # (7.2 is only offered as Valkey), so 7.1 is the closest supported version.
    engine_version: NonEmpty = "7.1"
    automatic_failover: bool = True
    multi_az: bool = True
    transit_encryption: bool = True
    at_rest_encryption: bool = True
    maxmemory_policy: str = "allkeys-lru"
    notify_keyspace_events: str = "Ex"
    slowlog_log_slower_than: PositiveInt = 10000
    slowlog_max_len: PositiveInt = 128
    # ElastiCache sizes maxmemory from the node type; this value limits the
    # in-cluster Redis of the local stack (the seed's "maxmemory 2gb").
    maxmemory_mb: PositiveInt = 2048
    snapshot_retention_days: PositiveInt = 7
    snapshot_window: str = "03:00-04:00"
    maintenance_window: str = "sun:05:00-sun:06:00"
    # ElastiCache has no deletion protection of its own: this is Pulumi's
    # `protect` on the replication group (refuses a plan that deletes or
    # replaces it), as database.deletionProtection also protects the instance.
    deletion_protection: bool = True
    # What ElastiCache does with the old auth token when the token changes
    # (docs/deploying.md, "Rotating the Redis auth token"): ROTATE keeps both
    # valid while the services roll to the new one; SET, applied afterwards,
    # retires the old one. SET while rotating would cut off the running pods.
    auth_token_update_strategy: Literal["ROTATE", "SET"] = "ROTATE"  # noqa: S105 - a mode


class StorageConfig(_Model):
    """S3 buckets for ML models and media (MinIO-compatible storage in ``local``)."""

    bucket_prefix: str = "enterprisehub"
    noncurrent_version_expiration_days: PositiveInt = 90
    abort_incomplete_multipart_days: PositiveInt = 7
    # S3 refuses STANDARD_IA transitions before day 30.
    media_transition_ia_days: Annotated[int, Field(ge=30)] = 30
    media_transition_glacier_days: PositiveInt = 180
    force_destroy: bool = False
    #: Size of the in-cluster object store's volume (local stack).
    local_size_gb: PositiveInt = 20


class NetworkConfig(_Model):
    """The VPC of the AWS stacks."""

    vpc_cidr: Cidr = "10.40.0.0/16"
    az_count: Annotated[int, Field(ge=2, le=6)] = 3
    # One NAT gateway per AZ keeps egress up when an AZ fails; one shared gateway
    # is cheaper and acceptable where an AZ outage may take egress down.
    nat_gateway_per_az: bool = True

    @field_validator("vpc_cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        network = _ipv4_network(value)
        if not 16 <= network.prefixlen <= 20:
            raise ValueError("the VPC needs a /16 to /20 IPv4 block (AWS allows /16 at most)")
        return value


class NodeGroupConfig(_Model):
    """One EKS managed node group: the fixed nodes the cluster add-ons start on.

    The application's pods scale on Karpenter's nodes (``cluster.autoscaling``);
    Karpenter itself, CoreDNS and the monitoring stack need nodes before any
    autoscaler runs, which is what these are for.
    """

    name: str
    instance_types: Annotated[tuple[InstanceType, ...], Field(min_length=1)] = ("m6i.xlarge",)
    min_size: PositiveInt = 2
    desired_size: PositiveInt = 2
    max_size: PositiveInt = 3
    disk_size_gb: PositiveInt = 50
    capacity_type: Literal["ON_DEMAND", "SPOT"] = "ON_DEMAND"
    #: Amazon Linux 2023 only: its root device is the one the nodes' launch template
    #: encrypts (Bottlerocket keeps its data on a second device; EKS published AL2
    #: AMIs up to Kubernetes 1.32). The arm64 types go with Graviton instances.
    ami_type: Literal[
        "AL2023_x86_64_STANDARD",
        "AL2023_ARM_64_STANDARD",
        "AL2023_x86_64_NVIDIA",
        "AL2023_ARM_64_NVIDIA",
        "AL2023_x86_64_NEURON",
    ] = "AL2023_x86_64_STANDARD"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _dns1123(value)


class AutoscalingConfig(_Model):
    """Karpenter's NodePool: which nodes it may add for pending pods, and how many.

    Instance types are chosen by how the pods pack (tests/infra/test_capacity.py
    computes that every Deployment at its HPA maximum plus a surge pod fits).
    """

    instance_types: Annotated[tuple[InstanceType, ...], Field(min_length=1)] = (
        "m7i.4xlarge",
        "m6i.4xlarge",
    )
    capacity_types: Annotated[tuple[Literal["on-demand", "spot"], ...], Field(min_length=1)] = (
        "on-demand",
    )
    #: Upper bound on the NodePool's total vCPUs (Karpenter stops adding nodes there).
    cpu_limit: PositiveInt = 256
    #: Upper bound on the NodePool's total memory, GiB.
    memory_limit_gb: PositiveInt = 1024
    #: Karpenter's AMI selector alias; pin a version (al2023@v20261115) to control node rollouts.
    ami_alias: Annotated[
        str, Field(pattern=r"^(al2023|bottlerocket)@(latest|v[0-9]+(\.[0-9]+)*)$")
    ] = "al2023@latest"


class ClusterConfig(_Model):
    """Where the workloads run.

    ``eks`` creates a cluster; ``existing-eks`` uses an EKS cluster by ``name`` (its
    VPC, subnets and OIDC issuer are looked up); ``kubeconfig`` targets a context of
    the local kubeconfig (the ``local`` stack).
    """

    mode: Literal["eks", "existing-eks", "kubeconfig"] = "eks"
    name: Annotated[str, Field(pattern=r"^[0-9A-Za-z][A-Za-z0-9_-]{0,99}$")] | None = None
    context: NonEmpty | None = None
    #: Absolute or under ``~/``: the provider would read a relative path from its
    #: own working directory, not the one `make up` (and its pre-flight) runs in.
    kubeconfig_path: NonEmpty | None = None
    # The API endpoint is private by default; `pulumi up` then runs from inside the
    # VPC (VPN, bastion or a CI runner there) or public access is opened to a CIDR.
    # An AWS stack must say which (config_checks: the bootstrap path is explicit).
    endpoint_public_access: bool = False
    public_access_cidrs: tuple[Cidr, ...] = ()
    #: True declares that `pulumi up` runs inside the VPC (docs/deploying.md).
    deployer_in_vpc: bool = False
    #: Where that in-VPC deployer connects from (its subnet, a VPN's client range);
    #: the cluster security group admits HTTPS from them. Empty: the VPC's CIDR.
    deployer_cidrs: tuple[Cidr, ...] = ()
    #: EKS upgrade policy: STANDARD, or EXTENDED (paid, about 6x the control plane).
    support_type: Literal["STANDARD", "EXTENDED"] = "STANDARD"
    #: IAM role that CI deploys with: a cluster-admin access entry.
    deploy_role_arn: RoleArn | None = None
    #: IAM role for emergencies (assumed by people, audited): a cluster-admin access entry.
    break_glass_role_arn: RoleArn | None = None
    autoscaling: AutoscalingConfig = AutoscalingConfig()
    log_types: tuple[
        Literal["api", "audit", "authenticator", "controllerManager", "scheduler"], ...
    ] = ("api", "audit", "authenticator", "controllerManager", "scheduler")
    node_groups: tuple[NodeGroupConfig, ...] = (NodeGroupConfig(name="system"),)
    #: StorageClass for persistent volumes; None uses the cluster's default class
    #: (on EKS the program's encrypted gp3 class).
    storage_class: (
        Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")] | None
    ) = None

    @field_validator("kubeconfig_path")
    @classmethod
    def _kubeconfig_path(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("/", "~/")):
            raise ValueError("an absolute path or one under ~/ (e.g. ~/.kube/kind.yaml)")
        return value


class Hostnames(_Model):
    """Public hostnames; each defaults to ``<name>.<domain>``."""

    api: DnsName | None = None
    intelligence: DnsName | None = None
    coaching: DnsName | None = None
    property: DnsName | None = None
    roi: DnsName | None = None
    grafana: DnsName | None = None


class EgressConfig(_Model):
    """An external API: hostnames for documentation and proxies, CIDRs for NetworkPolicy."""

    hosts: Annotated[tuple[DnsName, ...], Field(min_length=1)]
    cidrs: Annotated[tuple[Cidr, ...], Field(min_length=1)]
    port: Annotated[int, Field(gt=0, lt=65536)] = 443


def _default_egress() -> dict[catalog.EgressTarget, EgressConfig]:
    return {
        # Anthropic's published inbound ranges for the API
        # (https://docs.anthropic.com/en/api/ip-addresses).
        catalog.EgressTarget.ANTHROPIC: EgressConfig(
            hosts=("api.anthropic.com",), cidrs=("160.79.104.0/23",)
        ),
        # The CRM (GoHighLevel / LeadConnector) publishes no fixed ranges, so the
        # default is any public address on 443; private ranges stay denied by the
        # network policy. Narrow it per stack when an egress proxy is available.
        catalog.EgressTarget.CRM: EgressConfig(
            hosts=("services.leadconnectorhq.com",), cidrs=("0.0.0.0/0",)
        ),
        # Slack publishes no ranges for its incoming webhooks either: any public
        # address on 443 for the rollback handler's notices (when slackWebhookUrl is set).
        catalog.EgressTarget.SLACK: EgressConfig(hosts=("hooks.slack.com",), cidrs=("0.0.0.0/0",)),
    }


@dataclass(frozen=True, slots=True)
class StackSecrets:
    """Secret inputs, kept as ``Output[str]`` (marked secret) all the way to Kubernetes."""

    jwt_secret_key: pulumi.Output[str]
    anthropic_api_key: pulumi.Output[str]
    ghl_api_key: pulumi.Output[str]
    #: JSON {"kid": "secret"} of retired keys still accepted for verification.
    jwt_previous_keys: pulumi.Output[str]
    #: Empty when the stack sends no Slack notifications.
    slack_webhook_url: pulumi.Output[str]
    #: Whether ``slackWebhookUrl`` is set (known at declaration time: without it the
    #: Slack receivers send nowhere and no pod gets Slack egress).
    slack_configured: bool = False


class DnsConfig(_Model):
    """Public DNS: the Route 53 zone external-dns writes the edge's records into."""

    #: The hosted zone of ``domain``; None: records are created by hand (docs/deploying.md).
    hosted_zone_id: Annotated[str, Field(pattern=r"^Z[A-Z0-9]{1,31}$")] | None = None


class RollbackConfig(_Model):
    """What the rollback handler may do besides turning a feature's flag off."""

    #: Also undo the latest rollout of the triggering feature's Deployments (as
    #: ``kubectl rollout undo`` does). Off: that stays an operator's decision and
    #: the handler has no Kubernetes API access at all.
    undo_deployments: bool = False


class StackConfig(_Model):
    """Everything the program needs to know about one stack, validated."""

    stack: str
    environment: Environment
    kubernetes_version: str = "1.35"
    image: str
    namespace: str = "enterprisehub"
    aws_region: str = "us-east-1"
    domain: str
    hostnames: Hostnames = Hostnames()
    tls_issuer: Literal["letsencrypt", "letsencrypt-staging", "selfsigned"] = "letsencrypt"
    #: Empty: none (Pulumi passes the documented default, "", for a stack that sets none).
    acme_email: str = ""
    #: Absolute URL of the runbooks folder (``docs/runbooks/`` of the deployed
    #: commit); every alert's ``runbook_url`` is rewritten onto it.
    runbook_base_url: RunbookBaseUrl
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    jwt_key_id: str = _DEFAULT_KEY_ID
    services: dict[str, ServiceOverride] = Field(default_factory=dict)
    database: DatabaseConfig = DatabaseConfig()
    cache: CacheConfig = CacheConfig()
    storage: StorageConfig = StorageConfig()
    network: NetworkConfig = NetworkConfig()
    cluster: ClusterConfig = ClusterConfig()
    dns: DnsConfig = DnsConfig()
    rollback: RollbackConfig = RollbackConfig()
    egress: dict[catalog.EgressTarget, EgressConfig] = Field(default_factory=_default_egress)
    #: Initial flag states (a bare boolean: on at 100% or off at 0%). They seed
    #: Redis through `enterprisehub flags init --seed`, which never overwrites.
    feature_flags: dict[str, FlagSeed | bool] = Field(
        default_factory=lambda: dict.fromkeys(catalog.FEATURE_FLAGS, _OFF)
    )
    #: Per feature, overrides of the seed's impact assumptions (the ROI page and the
    #: daily aggregate price the features with them); empty: the seed's numbers.
    impact_assumptions: dict[str, ImpactAssumptions] = Field(default_factory=dict)
    secrets: StackSecrets

    @property
    def is_local(self) -> bool:
        """True for the stack that runs on a developer's cluster without AWS."""
        return self.environment is Environment.LOCAL

    @property
    def is_production(self) -> bool:
        """True when the production-only guarantees apply."""
        return self.environment is Environment.PRODUCTION

    def hostname(self, name: str) -> str:
        """The public hostname for ``api``, a dashboard, or ``grafana``."""
        explicit = getattr(self.hostnames, name)
        return str(explicit) if explicit else f"{name}.{self.domain}"

    @property
    def dashboard_hosts(self) -> dict[str, str]:
        """Dashboard name -> hostname, for every dashboard in the catalog."""
        return {name: self.hostname(name) for name in catalog.DASHBOARD_PAGES}

    @property
    def cors_origins(self) -> tuple[str, ...]:
        """Browsers may call the API from the dashboards' origins only."""
        return tuple(f"https://{host}" for host in self.dashboard_hosts.values())

    @property
    def service_plans(self) -> tuple[ServicePlan, ...]:
        """The services this stack deploys: the shipped ones, in seed order."""
        return tuple(plan for plan in self.all_service_plans if plan.spec.shipped)

    @property
    def all_service_plans(self) -> tuple[ServicePlan, ...]:
        """Every catalog service with this stack's overrides applied, in seed order.

        Validation covers all of them, so an override written today for a
        service that ships later is checked now, not on the day it deploys.
        """
        plans = []
        for name, spec in catalog.SERVICES.items():
            override = self.services.get(name, ServiceOverride())
            plans.append(
                ServicePlan(
                    spec=spec,
                    min_replicas=override.min_replicas or spec.scaling.min_replicas,
                    max_replicas=override.max_replicas or spec.scaling.max_replicas,
                    cpu=override.cpu or spec.resources.cpu,
                    memory=override.memory or spec.resources.memory,
                    db_pool_size=override.db_pool_size or self.database.pool_size,
                    db_max_overflow=(
                        self.database.max_overflow
                        if override.db_max_overflow is None
                        else override.db_max_overflow
                    ),
                )
            )
        return tuple(plans)

    def stack_settings(self) -> dict[str, str]:
        """The stack-dependent ConfigMap values that do not come from other resources."""
        settings = {
            "ENVIRONMENT": self.environment.value,
            "LOG_LEVEL": self.log_level,
            "CORS_ORIGINS": ",".join(self.cors_origins),
            "JWT_KEY_ID": self.jwt_key_id,
            "AWS_REGION": self.aws_region,
        }
        return settings

    def pricing_settings(self) -> dict[str, str]:
        """IMPACT_ASSUMPTIONS for the programs that price the features (the dashboards
        and the daily aggregate), when the stack overrides any; else nothing."""
        everything = {
            feature: numbers.overrides()
            for feature, numbers in sorted(self.impact_assumptions.items())
        }
        overrides = {feature: numbers for feature, numbers in everything.items() if numbers}
        if not overrides:
            return {}
        return {
            catalog.IMPACT_ASSUMPTIONS_SETTING: json.dumps(
                overrides, sort_keys=True, separators=(",", ":")
            )
        }

    @property
    def flag_seed(self) -> str:
        """The ``flags init --seed`` JSON: every catalog flag's initial state."""
        seed = {}
        for flag in catalog.FEATURE_FLAGS:
            value = self.feature_flags.get(flag, FlagSeed())
            if isinstance(value, bool):
                value = FlagSeed(enabled=value, rollout_percentage=100 if value else 0)
            seed[flag] = {"enabled": value.enabled, "rolloutPercentage": value.rollout_percentage}
        return json.dumps(seed, sort_keys=True, separators=(",", ":"))


class _Secret:
    """Stands in for a secret value in error messages: its length, never its content."""

    def __init__(self, value: str | None) -> None:
        self.length = len(value or "")

    def __repr__(self) -> str:
        return f"<secret, {self.length} characters>"


# Top-level keys and whether their config value is a JSON object/array.
_SCALAR_KEYS: Final = (
    "environment",
    "kubernetesVersion",
    "image",
    "namespace",
    "awsRegion",
    "domain",
    "tlsIssuer",
    "acmeEmail",
    "runbookBaseUrl",
    "logLevel",
    "jwtKeyId",
)
_OBJECT_KEYS: Final = (
    "hostnames",
    "services",
    "database",
    "cache",
    "storage",
    "network",
    "cluster",
    "dns",
    "rollback",
    "egress",
    "featureFlags",
    "impactAssumptions",
)


def load_stack_config(pulumi_config: pulumi.Config, stack_name: str) -> StackConfig:
    """Read, validate and freeze the stack's configuration.

    Raises ``StackConfigError`` listing every problem found, so that one run shows
    everything to fix.
    """
    problems: list[Problem] = []
    problems.extend(_unknown_key_problems())
    raw = _read_raw(pulumi_config, problems)
    secrets = _read_secrets(pulumi_config, problems)
    problems.extend(_image_problems(raw.get("image")))

    config, repaired = _validate({**raw, "stack": stack_name, "secrets": secrets}, problems)
    # Cross-field rules also run on a copy with the invalid fields reset to their
    # defaults, so that one run reports both kinds of problem.
    checked = config or repaired
    if checked is not None:
        problems.extend(semantic_problems(checked, stack_name))
    if problems or config is None:
        raise StackConfigError(stack_name, _dedupe(problems))
    return config


def _validate(
    data: dict[str, Any], problems: list[Problem]
) -> tuple[StackConfig | None, StackConfig | None]:
    """(the config, None) when valid; else (None, the config without its invalid fields)."""
    try:
        return StackConfig.model_validate(data), None
    except ValidationError as error:
        problems.extend(_from_validation_error(error))
        errors = error.errors()
    # Secrets hold Outputs, which cannot be copied; they are never dropped anyway.
    repaired = {
        key: value if key == "secrets" else copy.deepcopy(value) for key, value in data.items()
    }
    # Each pass removes the fields the previous one rejected; nesting is at most
    # four levels deep, so a handful of passes always settles.
    for _ in range(5):
        if not any([_drop(repaired, [*item["loc"]]) for item in errors]):
            return None, None
        if "environment" not in repaired and repaired["stack"] in ENVIRONMENTS:
            # A stack named after an environment is checked by that environment's rules.
            repaired["environment"] = repaired["stack"]
        try:
            return None, StackConfig.model_validate(repaired)
        except ValidationError as error:
            errors = error.errors()
    return None, None


def _drop(data: dict[str, Any], loc: list[Any]) -> bool:
    """Delete the value at ``loc`` (or the list holding it) so that its default applies."""
    container: Any = data
    for depth, part in enumerate(loc):
        if not isinstance(container, dict) or part not in container:
            return False
        if depth == len(loc) - 1 or not isinstance(container[part], dict):
            if part in {"stack", "secrets"}:
                return False
            del container[part]
            return True
        container = container[part]
    return False


#: Keys older stacks may still hold and nothing reads (docs/deploying.md, "Secrets").
RETIRED_KEYS: Final = ("encryptionKey",)


def _stack_keys() -> dict[str, Any]:
    """Every key the CLI passed to the program, qualified, with its value."""
    passed = dict(pulumi.runtime.config.get_config_env())
    passed.update(pulumi.runtime.config.CONFIG.get())
    return passed


def _unknown_key_problems() -> list[Problem]:
    # Only the keys below are read: a top-level typo (`pulumi config set logLvel
    # DEBUG`, `--path databse.multiAz false`) was ignored without a word while
    # its nested twin was refused.
    known = {*config_keys(), *RETIRED_KEYS}
    problems = []
    for qualified, value in sorted(_stack_keys().items()):
        namespace, _, key = qualified.partition(":")
        if namespace != PROJECT or key in known:
            continue
        secret = pulumi.runtime.is_config_secret(qualified)
        problems.append(
            Problem(
                key,
                _Secret(str(value)) if secret else value,
                "unknown key (see Pulumi.yaml for the keys this project reads)",
            )
        )
    return problems


def _read_raw(pulumi_config: pulumi.Config, problems: list[Problem]) -> dict[str, Any]:
    raw: dict[str, Any] = {}
    for key in _SCALAR_KEYS:
        value = pulumi_config.get(key)
        if value is not None:
            raw[key] = value
    for key in _OBJECT_KEYS:
        text = pulumi_config.get(key)
        if text is None:
            continue
        try:
            raw[key] = json.loads(text)
        except json.JSONDecodeError:
            problems.append(
                Problem(key, text, "must be an object (set it with `pulumi config set --path`)")
            )
    return raw


def _read_secrets(pulumi_config: pulumi.Config, problems: list[Problem]) -> StackSecrets:
    outputs: dict[str, pulumi.Output[str]] = {}
    for key in (*REQUIRED_SECRET_KEYS, *OPTIONAL_SECRET_KEYS):
        plain = pulumi_config.get(key)
        # `pulumi config set KEY VALUE` without --secret writes the value in
        # clear into the stack file (and git); require_secret read it all the same.
        # Pulumi.yaml's defaults ("" and "{}") are plain and hold nothing.
        empty = not plain or (
            key == "jwtPreviousKeys" and _is_string_map(plain) and json.loads(plain) == {}
        )
        if not empty and not pulumi.runtime.is_config_secret(f"{PROJECT}:{key}"):
            problems.append(
                Problem(
                    key,
                    _Secret(plain or ""),
                    f"is in plain text in the stack file: `pulumi config rm {key}`, then "
                    f"`pulumi config set --secret {key}` (and replace the exposed value)",
                )
            )
    for key in REQUIRED_SECRET_KEYS:
        try:
            outputs[key] = pulumi_config.require_secret(key)
        except pulumi.ConfigMissingError:
            problems.append(
                Problem(
                    key, None, f"required secret; set it with `pulumi config set --secret {key}`"
                )
            )
            continue
        # The plain value is read only to check its shape; it never leaves this function.
        plain = pulumi_config.get(key) or ""
        if key == "jwtSecretKey" and len(plain) < MIN_KEY_LENGTH:
            problems.append(
                Problem(
                    key,
                    _Secret(plain),
                    f"must be at least {MIN_KEY_LENGTH} characters "
                    "(generate one with `openssl rand -hex 32`)",
                )
            )
        elif not plain.strip():
            problems.append(Problem(key, _Secret(plain), "must not be empty"))
        elif key in _HEADER_SECRETS and _has_space_or_control(plain):
            problems.append(Problem(key, _Secret(plain), _UNSENDABLE))

    slack = pulumi_config.get("slackWebhookUrl") or ""
    # Any https URL: Slack's own hooks.slack.com, or an egress proxy in front of it.
    if slack and (not slack.startswith("https://") or _has_space_or_control(slack)):
        problems.append(
            Problem(
                "slackWebhookUrl",
                _Secret(slack),
                "must be an https:// URL (Slack incoming webhook) without spaces or line "
                "breaks, or unset",
            )
        )
    previous = pulumi_config.get("jwtPreviousKeys") or "{}"
    if not _is_string_map(previous):
        problems.append(
            Problem("jwtPreviousKeys", _Secret(previous), 'must be a JSON object {"kid": "secret"}')
        )
    else:
        active = pulumi_config.get("jwtKeyId") or _DEFAULT_KEY_ID
        problems.extend(_previous_key_problems(json.loads(previous), active))
    # A missing secret is already a problem; an empty stand-in lets the rest of the
    # configuration be validated in the same run, and is never used to build resources.
    for key in REQUIRED_SECRET_KEYS:
        outputs.setdefault(key, pulumi.Output.secret(""))
    return StackSecrets(
        jwt_secret_key=outputs["jwtSecretKey"],
        anthropic_api_key=outputs["anthropicApiKey"],
        ghl_api_key=outputs["ghlApiKey"],
        jwt_previous_keys=pulumi.Output.secret(previous),
        slack_webhook_url=pulumi.Output.secret(slack),
        slack_configured=bool(slack),
    )


def _previous_key_problems(keys: Mapping[str, str], active_kid: str) -> list[Problem]:
    # The services refuse these at start-up (services/common/settings.py,
    # AuthSettings): accepted here, every pod of the update crash-looped and
    # `pulumi up` waited out the Deployments' timeout.
    problems = []
    for kid, key in keys.items():
        if not _KID.fullmatch(kid):
            problems.append(
                Problem("jwtPreviousKeys", _Secret(kid), "each kid: 1-64 of A-Z a-z 0-9 _ . -")
            )
        elif kid == active_kid:
            problems.append(
                Problem(
                    "jwtPreviousKeys",
                    kid,
                    f"holds the active jwtKeyId {kid!r}: a kid names exactly one key "
                    "(when rotating, give the new key a new jwtKeyId)",
                )
            )
        if len(key.encode()) < MIN_KEY_LENGTH:
            problems.append(
                Problem(
                    "jwtPreviousKeys",
                    _Secret(key),
                    f"the key of {kid!r} must be at least {MIN_KEY_LENGTH} bytes, as the "
                    "services require of every signing key",
                )
            )
    return problems


#: Secrets sent in an HTTP header (the API keys): a space, a tab or a line break
#: in them (a key file with a trailing blank, a CRLF) passed the preview and then
#: failed every call at run time, httpx refusing the header or the API the key.
_HEADER_SECRETS: Final = ("anthropicApiKey", "ghlApiKey")
_UNSENDABLE: Final = (
    "holds a space, a tab or a line break (a key file's trailing blank or CRLF?): set the key alone"
)


def _has_space_or_control(value: str) -> bool:
    return any(char.isspace() or not char.isprintable() for char in value)


def _is_string_map(text: str) -> bool:
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return False
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def _image_problems(image: object) -> list[Problem]:
    if image is None:
        return [
            Problem(
                "image",
                None,
                "required: the services' image pinned by digest, e.g. "
                "`pulumi config set image REGISTRY/enterprisehub@sha256:<64 hex>`",
            )
        ]
    text = str(image)
    match = _IMAGE.fullmatch(text)
    if match is None:
        return [Problem("image", text, "must be REPOSITORY[:TAG]@sha256:<64 lowercase hex>")]
    if match["tag"] == "latest":
        return [
            Problem(
                "image",
                text,
                "`latest` is refused: pin an immutable reference REPOSITORY@sha256:<digest>",
            )
        ]
    if not match["digest"]:
        return [
            Problem(
                "image",
                text,
                "a tag is mutable; pin its digest, e.g. "
                f"`docker buildx imagetools inspect {text}` and set {match['repo']}"
                f"{':' + match['tag'] if match['tag'] else ''}@sha256:<digest>",
            )
        ]
    return []


def _from_validation_error(error: ValidationError) -> list[Problem]:
    problems = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"]]
        # Secrets and the image are checked separately with better messages.
        if loc and loc[0] in {"secrets", "stack", "image"}:
            continue
        key = _dotted(loc)
        message = str(item["msg"]).removeprefix("Value error, ")
        if item["type"] == "missing":
            message = "required; it has no default"
            value: object = None
        elif item["type"] == "extra_forbidden":
            message = "unknown key (see Pulumi.yaml for the keys this project reads)"
            value = item["input"]
        else:
            value = item["input"]
        problems.append(Problem(key, value, message))
    return problems


def _dotted(loc: list[str]) -> str:
    key = ""
    for part in loc:
        if part.isdigit():
            key += f"[{part}]"
        else:
            key += ("." if key else "") + part
    return key


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[str] = set()
    unique = []
    for problem in problems:
        if problem.render() not in seen:
            seen.add(problem.render())
            unique.append(problem)
    return unique


def config_keys() -> Mapping[str, str]:
    """Every top-level key and its kind, for tooling that mirrors Pulumi.yaml."""
    kinds = dict.fromkeys(_SCALAR_KEYS, "scalar") | dict.fromkeys(_OBJECT_KEYS, "object")
    kinds |= dict.fromkeys((*REQUIRED_SECRET_KEYS, *OPTIONAL_SECRET_KEYS), "secret")
    return kinds
