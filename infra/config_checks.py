"""Cross-field, per-environment and catalog checks of a parsed ``StackConfig``.

The pydantic models in ``infra.config`` check single fields (types, positive
numbers, CIDRs); the rules here need several fields at once, the environment
(production guarantees) or the catalog. Each returns ``Problem`` objects so that
``load_stack_config`` reports everything in one error.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Final

from infra import catalog
from infra.environments import ENVIRONMENTS
from infra.problems import PROJECT, Problem

if TYPE_CHECKING:
    from infra.config import CacheConfig, DatabaseConfig, StackConfig, StorageConfig

# EKS Kubernetes versions as of 2026-12-03 (docs.aws.amazon.com/eks, "Kubernetes
# version lifecycle"): 1.31 and older can no longer be created (1.31's extended
# support ended 2026-11-26); 1.32-1.34 are in paid extended support; 1.35 and 1.36
# are in standard support. docs/deploying.md says how to move a stack forward.
STANDARD_SUPPORT_VERSIONS: Final = ("1.35", "1.36")
EXTENDED_SUPPORT_VERSIONS: Final = ("1.32", "1.33", "1.34")
SUPPORTED_KUBERNETES_VERSIONS: Final = (*EXTENDED_SUPPORT_VERSIONS, *STANDARD_SUPPORT_VERSIONS)

# Used with ``fullmatch`` only: with ``match``, "^...$" would accept a trailing newline.
_HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_DNS1123 = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
_WINDOW = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-3]):([0-5][0-9])")
_WEEKLY = re.compile(
    r"(mon|tue|wed|thu|fri|sat|sun):([01][0-9]|2[0-3]):([0-5][0-9])-"
    r"(mon|tue|wed|thu|fri|sat|sun):([01][0-9]|2[0-3]):([0-5][0-9])"
)
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")

_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY = 24 * 60
_WEEK = 7 * _DAY
#: The gp3 storage sizes RDS for PostgreSQL accepts, in GiB.
RDS_GP3_STORAGE_GB: Final = (20, 65536)
#: ElastiCache's shortest maintenance and snapshot windows, in minutes (60; RDS's are 30).
ELASTICACHE_MIN_WINDOW_MINUTES: Final = 60

# Postgres connections. RDS for PostgreSQL's default max_connections is
# LEAST({DBInstanceClassMemory/9531392}, 5000) (RDS User Guide, "Quotas and
# constraints: maximum number of database connections"; AWS Prescriptive
# Guidance, "Tuning PostgreSQL parameters: max_connections"). DBInstanceClassMemory
# is the class's memory less what RDS keeps for the OS, an amount AWS does not
# publish (db.r4.large, 15.25 GiB: 1,660 measured against 1,717 on the nominal
# memory), so the program sets max_connections itself in the parameter group:
# the formula on the nominal memory below, or database.maxConnections.
RDS_BYTES_PER_CONNECTION: Final = 9531392
RDS_MAX_CONNECTIONS_CAP: Final = 5000
#: Burstable classes' memory in GiB, by size.
_BURSTABLE_GIB: Final = {
    "micro": 1,
    "small": 2,
    "medium": 4,
    "large": 8,
    "xlarge": 16,
    "2xlarge": 32,
}
#: GiB per vCPU of the general-purpose (m) and memory-optimised (r) families.
_GIB_PER_VCPU: Final = {"m": 4, "r": 8}
#: Slots a non-superuser can never have. RDS: superuser_reserved_connections (3)
#: plus rds.rds_superuser_reserved_connections (2): "max_connections -
#: superuser_reserved_connections - rds.rds_superuser_reserved_connections" (AWS
#: knowledge center, "remaining connection slots are reserved"); RDS's own
#: monitoring and an operator's psql as the master user live there. The
#: in-cluster Postgres of local reserves PostgreSQL's 3.
RDS_RESERVED_CONNECTIONS: Final = 5
LOCAL_RESERVED_CONNECTIONS: Final = 3
#: PostgreSQL's own default max_connections (the local stack's image sets none).
POSTGRES_DEFAULT_MAX_CONNECTIONS: Final = 100


def rds_instance_memory_gib(instance_class: str) -> int | None:
    """Nominal memory of an RDS class (db.t4g.medium: 4, db.r6g.large: 16); None if unknown."""
    match = re.fullmatch(
        r"db\.([a-z])([0-9][a-z0-9-]*)\.([0-9]*)(micro|small|medium|large|xlarge)", instance_class
    )
    if match is None:
        return None
    family, size = match[1], match[3] + match[4]
    if family == "t":
        return _BURSTABLE_GIB.get(size)
    if family not in _GIB_PER_VCPU or match[4] not in {"large", "xlarge"}:
        return None
    vcpus = 2 if size == "large" else 4 * int(match[3] or 1)
    return vcpus * _GIB_PER_VCPU[family]


def database_max_connections(config: StackConfig) -> int | None:
    """The server's max_connections the program sets; None when it cannot be derived."""
    db = config.database
    if db.max_connections is not None:
        return db.max_connections
    if config.is_local:
        return POSTGRES_DEFAULT_MAX_CONNECTIONS
    memory = rds_instance_memory_gib(db.instance_class)
    if memory is None:
        return None
    return min(memory * 2**30 // RDS_BYTES_PER_CONNECTION, RDS_MAX_CONNECTIONS_CAP)


def connection_budget(config: StackConfig) -> list[tuple[str, int, int]]:
    """(workload, processes, connections each) with every Deployment at its worst.

    A Deployment at its autoscaler's maximum plus the one surge pod of a rollout
    (``workload.rolling_update``: maxSurge 1); the deploy's Jobs as if all ran at once.
    """
    rows = [
        (plan.spec.name, plan.max_replicas + 1, plan.db_connections_per_replica)
        for plan in config.service_plans
    ]
    dashboards, handler = catalog.DASHBOARDS, catalog.ROLLBACK_HANDLER
    if dashboards.shipped:
        rows.append((dashboards.name, dashboards.max_replicas + 1, _pool(dashboards.settings)))
    rows.append((handler.name, handler.replicas + 1, _pool(handler.settings)))
    jobs = (catalog.MIGRATE_JOB, catalog.FLAGS_INIT_JOB, *catalog.DAILY_JOBS)
    rows.append(("jobs", 1, sum(job.db_connections for job in jobs)))
    return rows


def _pool(settings: Mapping[str, str]) -> int:
    return int(settings["DB_POOL_SIZE"]) + int(settings["DB_MAX_OVERFLOW"])


def _connection_problems(config: StackConfig) -> list[Problem]:
    """The worst case of every pool at once must fit the server's max_connections."""
    db = config.database
    limit = database_max_connections(config)
    if limit is None:
        return [
            Problem(
                "database.instanceClass",
                db.instance_class,
                "its memory is not known here, so max_connections cannot be derived: "
                "set database.maxConnections (RDS's default is "
                "LEAST(DBInstanceClassMemory/9531392, 5000))",
            )
        ]
    reserved = LOCAL_RESERVED_CONNECTIONS if config.is_local else RDS_RESERVED_CONNECTIONS
    rows = connection_budget(config)
    total = sum(processes * each for _, processes, each in rows)
    if total <= limit - reserved:
        return []
    terms = ", ".join(f"{name} {processes}x{each}" for name, processes, each in rows)
    source = "database.maxConnections" if db.max_connections else f"for {db.instance_class}"
    if config.is_local and not db.max_connections:
        source = "PostgreSQL's default"
    return [
        Problem(
            "database.maxConnections",
            limit,
            f"every Deployment at its maximum replicas plus a rollout's surge pod opens "
            f"{total} Postgres connections ({terms}), more than max_connections {limit} "
            f"({source}) less {reserved} reserved for superusers = {limit - reserved}: "
            "lower database.poolSize/maxOverflow or a service's dbPoolSize/dbMaxOverflow/"
            "maxReplicas, or raise database.maxConnections or instanceClass",
        )
    ]


def semantic_problems(config: StackConfig, stack_name: str) -> list[Problem]:
    """Checks that span fields, environments or the catalog (the model checks single fields)."""
    problems: list[Problem] = []
    problems += _identity_problems(config, stack_name)
    problems += _service_problems(config)
    problems += _hostname_problems(config)
    problems += _database_problems(config.database, managed=not config.is_local)
    problems += _connection_problems(config)
    problems += _cache_problems(config.cache)
    problems += _storage_problems(config.storage)
    problems += _cluster_problems(config)
    if config.is_production:
        problems += _production_problems(config)
    return problems


def _identity_problems(config: StackConfig, stack_name: str) -> list[Problem]:
    problems = []
    longest = AWS_STACK_NAME_MAX.get(config.cluster.mode)
    if longest is not None and len(stack_name) > longest:
        problems.append(
            Problem.prerequisite(
                f"stack name {stack_name!r} ({len(stack_name)} characters)",
                f"at most {longest} characters with cluster.mode {config.cluster.mode}: AWS "
                "names derived from it would pass IAM's 64-character limit; move to a "
                "shorter name (`pulumi stack rename`, before the first `up`)",
            )
        )
    if stack_name in ENVIRONMENTS and config.environment.value != stack_name:
        problems.append(
            Problem(
                "environment",
                config.environment.value,
                f"stack '{stack_name}' must declare environment '{stack_name}'",
            )
        )
    if config.kubernetes_version not in SUPPORTED_KUBERNETES_VERSIONS:
        problems.append(
            Problem(
                "kubernetesVersion",
                config.kubernetes_version,
                f"supported versions: {', '.join(SUPPORTED_KUBERNETES_VERSIONS)}",
            )
        )
    if not _DNS1123.fullmatch(config.namespace):
        problems.append(Problem("namespace", config.namespace, "must be a DNS-1123 label"))
    if config.tls_issuer.startswith("letsencrypt") and not (
        config.acme_email and _EMAIL.fullmatch(config.acme_email)
    ):
        problems.append(
            Problem("acmeEmail", config.acme_email, "an ACME issuer needs a contact e-mail address")
        )
    if not re.fullmatch(r"[a-z]{2}(-[a-z]+)+-[0-9]", config.aws_region):
        problems.append(
            Problem("awsRegion", config.aws_region, "must be an AWS region such as us-east-1")
        )
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", config.jwt_key_id):
        problems.append(Problem("jwtKeyId", config.jwt_key_id, "1-64 of A-Z a-z 0-9 _ . -"))
    for flag in config.feature_flags:
        if flag not in catalog.FEATURE_FLAGS:
            problems.append(
                Problem(
                    f"featureFlags.{flag}", flag, f"known flags: {', '.join(catalog.FEATURE_FLAGS)}"
                )
            )
    for feature in config.impact_assumptions:
        if feature not in catalog.FEATURE_FLAGS:
            problems.append(
                Problem(
                    f"impactAssumptions.{feature}",
                    feature,
                    f"known features: {', '.join(catalog.FEATURE_FLAGS)}",
                )
            )
    return problems


def _service_problems(config: StackConfig) -> list[Problem]:
    problems = []
    for name in config.services:
        if name not in catalog.SERVICES:
            problems.append(
                Problem(f"services.{name}", name, f"known services: {', '.join(catalog.SERVICES)}")
            )
    for plan in config.all_service_plans:
        if plan.min_replicas > plan.max_replicas:
            problems.append(
                Problem(
                    f"services.{plan.spec.name}.minReplicas",
                    plan.min_replicas,
                    f"must not exceed maxReplicas ({plan.max_replicas})",
                )
            )
    return problems


def _hostname_problems(config: StackConfig) -> list[Problem]:
    problems = []
    if not is_hostname(config.domain):
        problems.append(Problem("domain", config.domain, "must be a DNS name such as example.com"))
        return problems
    for name in type(config.hostnames).model_fields:
        host = config.hostname(name)
        if not is_hostname(host):
            problems.append(
                Problem(f"hostnames.{name}", host, "must be a DNS name (a-z, 0-9, '-', dots)")
            )
    for target, egress in config.egress.items():
        for host in egress.hosts:
            if not is_hostname(host):
                problems.append(Problem(f"egress.{target.value}.hosts", host, "must be a DNS name"))
    return problems


def _database_problems(database: DatabaseConfig, *, managed: bool) -> list[Problem]:
    """``managed``: RDS runs it (AWS stacks), not the in-cluster Postgres of local."""
    problems = []
    if not re.fullmatch(r"15(\.[0-9]+)?", database.engine_version):
        problems.append(
            Problem("database.engineVersion", database.engine_version, "PostgreSQL 15 (15 or 15.N)")
        )
    if not database.instance_class.startswith("db."):
        problems.append(
            Problem(
                "database.instanceClass",
                database.instance_class,
                "an RDS class such as db.r6g.large",
            )
        )
    if database.backup_retention_days > 35:
        problems.append(
            Problem(
                "database.backupRetentionDays", database.backup_retention_days, "1 to 35 days (RDS)"
            )
        )
    # RDS refuses a storage-autoscaling ceiling less than 10 % above the allocated
    # storage (CreateDBInstance: "The maximum allocated storage must be increased
    # by at least 10 percent"); the in-cluster Postgres of local has no ceiling.
    least = -(-database.allocated_storage_gb * 11 // 10) if managed else 0
    if database.max_allocated_storage_gb < max(least, database.allocated_storage_gb):
        problems.append(
            Problem(
                "database.maxAllocatedStorageGb",
                database.max_allocated_storage_gb,
                f"must be at least allocatedStorageGb ({database.allocated_storage_gb})"
                + (f" plus 10 %, {least} (RDS)" if managed else ""),
            )
        )
    # CreateDBInstance, RDS for PostgreSQL on gp3: "an integer from 20 to 65536" GiB.
    if managed:
        for key, size in (
            ("database.allocatedStorageGb", database.allocated_storage_gb),
            ("database.maxAllocatedStorageGb", database.max_allocated_storage_gb),
        ):
            if not RDS_GP3_STORAGE_GB[0] <= size <= RDS_GP3_STORAGE_GB[1]:
                problems.append(Problem(key, size, "20 to 65536 GiB (RDS gp3 storage)"))
    pi_days = database.performance_insights_retention_days
    if pi_days != 7 and (pi_days % 31 or pi_days > 731):
        problems.append(
            Problem(
                "database.performanceInsightsRetentionDays",
                pi_days,
                "7, or a multiple of 31 up to 731",
            )
        )
    problems += _window_problems("database.backupWindow", database.backup_window, daily=True)
    problems += _window_problems(
        "database.maintenanceWindow", database.maintenance_window, daily=False
    )
    # RDS: the backup window "must not conflict with the preferred maintenance window".
    if managed and _windows_overlap(database.backup_window, database.maintenance_window):
        problems.append(
            Problem(
                "database.backupWindow",
                database.backup_window,
                f"must not overlap database.maintenanceWindow ({database.maintenance_window})",
            )
        )
    for key, value in (
        ("database.name", database.name),
        ("database.ownerUsername", database.owner_username),
    ):
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", value):
            problems.append(
                Problem(key, value, "a lowercase identifier: [a-z][a-z0-9_]*, up to 63")
            )
    return problems


def _cache_problems(cache: CacheConfig) -> list[Problem]:
    problems = []
    # pulumi-aws takes Redis 6+ versions as <major>.<minor> only: "7" alone fails the preview.
    if not re.fullmatch(r"7\.[0-9]+", cache.engine_version):
        problems.append(Problem("cache.engineVersion", cache.engine_version, "Redis 7.N, e.g. 7.1"))
    if not cache.node_type.startswith("cache."):
        problems.append(
            Problem(
                "cache.nodeType", cache.node_type, "an ElastiCache type such as cache.m7g.large"
            )
        )
    if cache.num_nodes > 6:
        problems.append(
            Problem("cache.numNodes", cache.num_nodes, "1 to 6 (a primary and up to 5 replicas)")
        )
    if cache.automatic_failover and cache.num_nodes < 2:
        problems.append(
            Problem("cache.numNodes", cache.num_nodes, "automatic failover needs at least 2 nodes")
        )
    if cache.multi_az and not cache.automatic_failover:
        problems.append(
            Problem("cache.automaticFailover", False, "multi-AZ Redis requires automatic failover")
        )
    allowed_policies = {
        "allkeys-lru", "volatile-lru", "allkeys-lfu", "volatile-lfu",
        "allkeys-random", "volatile-random", "volatile-ttl", "noeviction",
    }  # fmt: skip
    if cache.maxmemory_policy not in allowed_policies:
        problems.append(
            Problem(
                "cache.maxmemoryPolicy", cache.maxmemory_policy, ", ".join(sorted(allowed_policies))
            )
        )
    if not re.fullmatch(r"[KEg$lshzxetmdnA]*", cache.notify_keyspace_events):
        problems.append(
            Problem(
                "cache.notifyKeyspaceEvents",
                cache.notify_keyspace_events,
                "Redis event classes, e.g. Ex",
            )
        )
    if cache.snapshot_retention_days > 35:
        problems.append(
            Problem("cache.snapshotRetentionDays", cache.snapshot_retention_days, "1 to 35 days")
        )
    minimum = ELASTICACHE_MIN_WINDOW_MINUTES
    problems += _window_problems(
        "cache.snapshotWindow", cache.snapshot_window, daily=True, minimum_minutes=minimum
    )
    problems += _window_problems(
        "cache.maintenanceWindow", cache.maintenance_window, daily=False, minimum_minutes=minimum
    )
    return problems


def _storage_problems(storage: StorageConfig) -> list[Problem]:
    problems = []
    # Bucket names are at most 63 characters; the program appends
    # "-<environment>-<purpose>-" plus a 26-character unique suffix.
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{1,18}[a-z0-9]", storage.bucket_prefix):
        problems.append(
            Problem("storage.bucketPrefix", storage.bucket_prefix, "3-20 of a-z, 0-9 and '-'")
        )
    if storage.media_transition_glacier_days <= storage.media_transition_ia_days:
        problems.append(
            Problem(
                "storage.mediaTransitionGlacierDays",
                storage.media_transition_glacier_days,
                f"must be later than mediaTransitionIaDays ({storage.media_transition_ia_days})",
            )
        )
    return problems


def _cluster_problems(config: StackConfig) -> list[Problem]:
    cluster = config.cluster
    problems = []
    if config.is_local and cluster.mode != "kubeconfig":
        problems.append(
            Problem("cluster.mode", cluster.mode, "the local stack supports only 'kubeconfig'")
        )
    if not config.is_local and cluster.mode == "kubeconfig":
        problems.append(
            Problem(
                "cluster.mode",
                cluster.mode,
                "AWS stacks need 'eks' or 'existing-eks' "
                "(service-account roles need EKS's OIDC issuer)",
            )
        )
    if cluster.mode == "existing-eks" and not cluster.name:
        problems.append(Problem("cluster.name", None, "existing-eks needs the EKS cluster's name"))
    # Only a cluster this program creates gets external-dns (program._external_dns):
    # elsewhere the zone would be accepted and ignored, and `up` would succeed with
    # no records, so the certificates' HTTP-01 challenges never resolve.
    if config.dns.hosted_zone_id and cluster.mode != "eks":
        problems.append(
            Problem(
                "dns.hostedZoneId",
                config.dns.hosted_zone_id,
                "external-dns is installed only on a cluster the stack creates "
                "(cluster.mode eks); unset it and create the records by hand, or with "
                "the existing cluster's own external-dns",
            )
        )
    if cluster.endpoint_public_access and not cluster.public_access_cidrs:
        problems.append(
            Problem(
                "cluster.publicAccessCidrs",
                [],
                "a public endpoint needs the CIDRs allowed to reach it (never 0.0.0.0/0)",
            )
        )
    if _the_world(cluster.deployer_cidrs):
        problems.append(
            Problem(
                "cluster.deployerCidrs",
                list(cluster.deployer_cidrs),
                "0.0.0.0/0 is refused, alone or pieced together "
                "(name the runner's subnet or the VPN's client range)",
            )
        )
    if cluster.deployer_cidrs and not cluster.deployer_in_vpc:
        problems.append(
            Problem(
                "cluster.deployerCidrs",
                list(cluster.deployer_cidrs),
                "only used with cluster.deployerInVpc true",
            )
        )
    if _the_world(cluster.public_access_cidrs):
        problems.append(
            Problem(
                "cluster.publicAccessCidrs",
                list(cluster.public_access_cidrs),
                "0.0.0.0/0 is refused, alone or pieced together",
            )
        )
    problems += _bootstrap_problems(config)
    names = [group.name for group in cluster.node_groups]
    if cluster.mode == "eks" and not names:
        problems.append(Problem("cluster.nodeGroups", [], "at least one node group"))
    if len(set(names)) != len(names):
        problems.append(Problem("cluster.nodeGroups", names, "node group names must be unique"))
    longest = node_group_name_limit(config.stack)
    for index, group in enumerate(cluster.node_groups):
        prefix = f"cluster.nodeGroups[{index}]"
        if cluster.mode == "eks" and len(group.name) > longest:
            problems.append(
                Problem(
                    f"{prefix}.name",
                    group.name,
                    f"at most {longest} characters in stack {config.stack}: pulumi-aws names "
                    f"the node group {node_group_logical_name(config.stack, group.name)!r} plus "
                    f"{AUTO_NAME_SUFFIX} random characters, and EKS allows "
                    f"{EKS_NODE_GROUP_NAME_MAX}",
                )
            )
        mismatched = [
            kind
            for kind in group.instance_types
            if instance_architecture(kind) != ami_architecture(group.ami_type)
        ]
        if mismatched:
            problems.append(
                Problem(
                    f"{prefix}.amiType",
                    group.ami_type,
                    f"an {ami_architecture(group.ami_type)} AMI cannot boot "
                    f"{', '.join(mismatched)} ({instance_architecture(mismatched[0])}); "
                    "one group's instance types share the AMI's architecture",
                )
            )
        if group.disk_size_gb > EBS_MAX_VOLUME_GIB:
            problems.append(
                Problem(
                    f"{prefix}.diskSizeGb",
                    group.disk_size_gb,
                    f"at most {EBS_MAX_VOLUME_GIB} GiB (the largest gp2/gp3 EBS volume)",
                )
            )
        if not group.min_size <= group.desired_size <= group.max_size:
            problems.append(
                Problem(
                    f"{prefix}.desiredSize",
                    group.desired_size,
                    f"minSize ({group.min_size}) <= desiredSize <= maxSize ({group.max_size})",
                )
            )
    return problems


#: EKS's limit on a node group's name (CreateNodegroup), which pulumi-aws checks
#: at preview against the auto-name; infra/synth/naming.py holds the same rule.
#: An instance family's attribute letters (after its generation) that name a
#: Graviton processor: m7g, c7gn, t4g, r8gd, g5g; a1 is the first Graviton.
_GRAVITON = re.compile(r"(?:[a-z]+[0-9]+[a-z]*g[a-z]*|a1)(?:-[a-z]+)?\.[a-z0-9]+")


def instance_architecture(instance_type: str) -> str:
    """``arm64`` for a Graviton instance type, else ``x86_64`` (EC2's naming scheme)."""
    return "arm64" if _GRAVITON.fullmatch(instance_type) else "x86_64"


def ami_architecture(ami_type: str) -> str:
    """The architecture of an EKS AMI type (``AL2023_ARM_64_STANDARD``: ``arm64``)."""
    return "arm64" if "_ARM_64" in ami_type else "x86_64"


EKS_NODE_GROUP_NAME_MAX: Final = 63
#: "-" and the 7 random characters pulumi-aws appends to an auto-name.
AUTO_NAME_SUFFIX: Final = 8
#: The largest gp2/gp3 EBS volume, 16 TiB: a node's root disk above it fails
#: the node group's creation at `up`, after the cluster itself (EBS User Guide,
#: "Amazon EBS volume types").
EBS_MAX_VOLUME_GIB: Final = 16384


#: IAM's limit on a role's name, which pulumi-aws checks at preview against the auto-name.
IAM_ROLE_NAME_MAX: Final = 64
#: Per ``cluster.mode``, the longest logical name the program derives from the stack
#: name, after ``enterprisehub-<stack>-``: an IAM role pulumi-aws auto-names.
_LONGEST_DERIVED: Final = {
    "eks": "cluster-karpenter-controller",
    "existing-eks": "roles-churn-orchestrator",
}
#: The longest stack name whose derived AWS names fit, per ``cluster.mode`` (13 and
#: 17). A longer name failed the preview on the provider's "longer than maximum
#: length", naming no key. tests/infra/test_stack_name.py checks both limits by
#: synthesis: the name at the limit passes, one character more fails.
AWS_STACK_NAME_MAX: Final[Mapping[str, int]] = {
    mode: IAM_ROLE_NAME_MAX - AUTO_NAME_SUFFIX - len(f"{PROJECT}--{suffix}")
    for mode, suffix in _LONGEST_DERIVED.items()
}


def node_group_logical_name(stack: str, group: str) -> str:
    """The logical name the EKS component gives a node group (its auto-name's stem)."""
    return f"{PROJECT}-{stack}-cluster-{group}"


def node_group_name_limit(stack: str) -> int:
    """The longest ``cluster.nodeGroups[].name`` whose auto-name EKS accepts in ``stack``.

    The stem is ``enterprisehub-<stack>-cluster-``, so 22 characters in production:
    a name the DNS-1123 rule admits (63) failed the preview with pulumi-aws's
    "plus 7 random chars is longer than maximum length", naming no config key.
    """
    return EKS_NODE_GROUP_NAME_MAX - AUTO_NAME_SUFFIX - len(node_group_logical_name(stack, ""))


def _the_world(cidrs: Sequence[str]) -> bool:
    """True when ``cidrs`` together admit every IPv4 address (0.0.0.0/1 and 128.0.0.0/1)."""
    networks = [ipaddress.IPv4Network(cidr) for cidr in cidrs]
    return ipaddress.IPv4Network("0.0.0.0/0") in ipaddress.collapse_addresses(networks)


def _bootstrap_problems(config: StackConfig) -> list[Problem]:
    """A new EKS cluster must say how the first `pulumi up` reaches its API."""
    cluster = config.cluster
    if cluster.mode != "eks":
        return []
    problems = []
    if not cluster.endpoint_public_access and not cluster.deployer_in_vpc:
        problems.append(
            Problem(
                "cluster.deployerInVpc",
                False,
                "the API endpoint is private, so the deployer must run inside the VPC: set "
                "cluster.deployerInVpc true (a runner in the VPC, docs/deploying.md), or open "
                "the endpoint with cluster.endpointPublicAccess true and "
                "cluster.publicAccessCidrs",
            )
        )
    version = config.kubernetes_version
    if version in EXTENDED_SUPPORT_VERSIONS and cluster.support_type == "STANDARD":
        problems.append(
            Problem(
                "kubernetesVersion",
                version,
                f"{version} is in EKS extended support only: use "
                f"{' or '.join(STANDARD_SUPPORT_VERSIONS)}, or set cluster.supportType "
                "EXTENDED (billed at about 6x the standard control-plane price)",
            )
        )
    if cluster.deploy_role_arn and cluster.deploy_role_arn == cluster.break_glass_role_arn:
        problems.append(
            Problem(
                "cluster.breakGlassRoleArn",
                cluster.break_glass_role_arn,
                "must differ from deployRoleArn (EKS allows one access entry per principal)",
            )
        )
    return problems


def _production_problems(config: StackConfig) -> list[Problem]:
    """The guarantees the seed and the issue require of production, whatever the stack says."""
    db, cache, storage, network = config.database, config.cache, config.storage, config.network
    required_true = {
        "database.deletionProtection": db.deletion_protection,
        "database.multiAz": db.multi_az,
        "database.storageEncrypted": db.storage_encrypted,
        "database.performanceInsights": db.performance_insights,
        "cache.automaticFailover": cache.automatic_failover,
        "cache.multiAz": cache.multi_az,
        "cache.transitEncryption": cache.transit_encryption,
        "cache.atRestEncryption": cache.at_rest_encryption,
        "cache.deletionProtection": cache.deletion_protection,
        "network.natGatewayPerAz": network.nat_gateway_per_az,
    }
    rules: list[tuple[str, object, bool, str]] = [
        (key, value, value, "production requires true") for key, value in required_true.items()
    ]
    rules += [
        ("database.skipFinalSnapshot", db.skip_final_snapshot, not db.skip_final_snapshot,
         "production requires false (a final snapshot is taken on delete)"),
        ("database.backupRetentionDays", db.backup_retention_days, db.backup_retention_days >= 30,
         "production keeps backups at least 30 days"),
        ("database.backupWindow", db.backup_window, db.backup_window.startswith("02:00-"),
         "production backups start at 02:00 UTC (02:00-HH:MM)"),
        ("database.allocatedStorageGb", db.allocated_storage_gb, db.allocated_storage_gb >= 100,
         "production needs at least 100 GiB"),
        ("cache.numNodes", cache.num_nodes, cache.num_nodes >= 3,
         "production runs at least 3 Redis nodes"),
        ("storage.forceDestroy", storage.force_destroy, not storage.force_destroy,
         "production requires false (buckets holding objects are never deleted)"),
        ("network.azCount", network.az_count, network.az_count >= 3,
         "production spans at least 3 availability zones"),
        ("tlsIssuer", config.tls_issuer, config.tls_issuer != "selfsigned",
         "production needs a publicly trusted issuer, not selfsigned"),
        ("logLevel", config.log_level, config.log_level != "DEBUG",
         "production refuses DEBUG (it may log personal data)"),
    ]  # fmt: skip
    return [Problem(key, value, allowed) for key, value, ok, allowed in rules if not ok]


def _window_span(window: str, *, daily: bool) -> tuple[int, int] | None:
    """(start, length) in minutes of the day, or of the week from Monday; None if malformed."""
    if daily:
        match = _WINDOW.fullmatch(window)
        if match is None:
            return None
        start = int(match[1]) * 60 + int(match[2])
        end = int(match[3]) * 60 + int(match[4])
        return start, (end - start) % _DAY
    weekly = _WEEKLY.fullmatch(window)
    if weekly is None:
        return None
    start = _WEEKDAYS.index(weekly[1]) * _DAY + int(weekly[2]) * 60 + int(weekly[3])
    end = _WEEKDAYS.index(weekly[4]) * _DAY + int(weekly[5]) * 60 + int(weekly[6])
    return start, (end - start) % _WEEK


def _window_problems(
    key: str, window: str, *, daily: bool, minimum_minutes: int = 30
) -> list[Problem]:
    """RDS/ElastiCache windows: UTC, at least ``minimum_minutes`` long."""
    span = _window_span(window, daily=daily)
    if span is None:
        if daily:
            return [Problem(key, window, "HH:MM-HH:MM in UTC, e.g. 02:00-02:30")]
        return [Problem(key, window, "ddd:HH:MM-ddd:HH:MM in UTC, e.g. sun:03:00-sun:04:00")]
    if span[1] < minimum_minutes:
        return [Problem(key, window, f"the window must last at least {minimum_minutes} minutes")]
    return []


def _windows_overlap(daily: str, weekly: str) -> bool:
    """Whether a daily window falls, on any day, inside a weekly one."""
    day_span, week_span = _window_span(daily, daily=True), _window_span(weekly, daily=False)
    if day_span is None or week_span is None:
        return False
    week_minutes = {(week_span[0] + m) % _WEEK for m in range(week_span[1])}
    return any(
        (day * _DAY + day_span[0] + m) % _WEEK in week_minutes
        for day in range(7)
        for m in range(day_span[1])
    )


def is_hostname(value: str) -> bool:
    """A DNS name of two labels or more: a-z, 0-9 and '-' (not at either end of a
    label), at most 63 a label and 253 in all, and a top-level label that is not all
    digits ("example.2" is no name a public zone can hold; "1.2" reads as an address)."""
    labels = value.split(".")
    if len(value) > 253 or len(labels) < 2 or labels[-1].isdigit():
        return False
    return all(_HOST_LABEL.fullmatch(label) for label in labels)
