"""The seed's service table as typed, frozen data.

This module is the only place where infra/ learns about the feature services:
ports, health paths, scaling numbers, resources, the command each container
runs, and the names of the settings and secrets the services read (see
docs/contracts.md). infra/ never imports services/; the two meet here and
in the container image.

Numbers come from the seed's ``railway.json`` table. Where the seed is silent a
default is chosen and the reason is given next to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Final, Literal

#: The console script every container runs (one image, several commands).
CLI: Final = "enterprisehub"

#: The Kubernetes "app.kubernetes.io/part-of" value and the name stem of shared objects.
PLATFORM: Final = "enterprisehub"

#: The realtime feed's websocket path (websocket-manager serves it, the dashboards read it).
FEED_PATH: Final = "/v1/feed"

BucketAccess = Literal["read", "readwrite"]


def service_host(service: str, namespace: str) -> str:
    """A Service's DNS name inside the cluster: ``<service>.<namespace>.svc.cluster.local``."""
    return f"{service}.{namespace}.svc.cluster.local"


class Bucket(StrEnum):
    """The two S3 buckets of the seed's data layer ("S3 (ML models, media storage)")."""

    MODELS = "models"
    MEDIA = "media"


class EgressTarget(StrEnum):
    """External APIs a service may call; each maps to an egress allow-list in config."""

    ANTHROPIC = "anthropic"
    CRM = "crm"
    SLACK = "slack"


@dataclass(frozen=True, slots=True)
class Scaling:
    """Horizontal scaling bounds and autoscaler targets (percent of the request)."""

    min_replicas: int
    max_replicas: int
    cpu_target_percent: int
    # None: the seed gives no memory threshold, so the autoscaler scales on CPU only.
    memory_target_percent: int | None = None


@dataclass(frozen=True, slots=True)
class Resources:
    """Container resources as Kubernetes quantities (the seed's ``resources`` block)."""

    cpu: str
    memory: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Workload:
    """What every long-running container of the image has: a command, a port, a health path.

    ``secrets`` names the keys of the workload's own Secret: exactly the ones
    its settings class reads, so no process holds a credential it never uses
    (the contract test, tests/test_contracts.py, checks both directions).
    """

    name: str
    #: The ``enterprisehub serve <kind>`` sub-command.
    kind: str
    port: int
    #: Readiness path (the liveness path of the feature services is ``/health``).
    health_path: str
    #: Keys of the workload's Secret (all of them in SERVICE_SECRET_KEYS).
    secrets: tuple[str, ...]
    #: A port of its own for Prometheus's ``/metrics`` (its Service's and
    #: container's port ``metrics``); None: ``/metrics`` is served on ``port``.
    metrics_port: int | None = None

    @property
    def service_account(self) -> str:
        """Kubernetes ServiceAccount name; IAM trust policies are scoped to it."""
        return self.name

    @property
    def command(self) -> tuple[str, ...]:
        """The container command: one image, one console script, one sub-command each."""
        return (CLI, "serve", self.kind, "--host", "0.0.0.0", "--port", str(self.port))


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceSpec(Workload):
    """One backend service of the seed's table, with what the infra must know about it."""

    scaling: Scaling
    resources: Resources
    #: Settings this service reads on top of COMMON_SETTINGS, with their defaults.
    settings: Mapping[str, str]
    #: External APIs the service calls (egress network policy, see config.egress).
    egress: frozenset[EgressTarget] = frozenset()
    #: S3 access the service's IAM role (or in-cluster credentials) must grant.
    buckets: Mapping[Bucket, BucketAccess] = field(default_factory=lambda: MappingProxyType({}))
    #: The feature flag (seed rollout names) this service implements.
    feature: str = ""
    #: Whether the image built from this repository serves it yet. The platform
    #: deploys only shipped services: a Deployment whose command exits at once
    #: would hold `pulumi up` until its readiness timeout and then fail the update.
    shipped: bool = True
    #: Public API path prefixes the edge sends to this service (longest prefix wins).
    api_paths: tuple[str, ...] = ()
    #: Paths among ``api_paths`` that hold a connection open (websockets): the
    #: edge gives them no request timeout.
    streaming_paths: tuple[str, ...] = ()
    #: Stack settings (``STACK_SETTINGS``) this service does not read, left out
    #: of its ConfigMap: a setting must have an effect where it is given.
    unread_stack_settings: frozenset[str] = frozenset()
    #: Postgres connections a replica opens besides its DB_POOL_SIZE +
    #: DB_MAX_OVERFLOW pool (counted in the stack's connection budget).
    extra_db_connections: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class DashboardsSpec(Workload):
    """The Streamlit multipage app (services/dashboards)."""

    #: The websocket path of the live lead feed the hub page reads (websocket-manager).
    feed_path: str
    resources: Resources
    #: Whether the image serves it yet (see ``ServiceSpec.shipped``).
    shipped: bool
    #: The setting that tells the app where the feed is, inside the cluster.
    feed_url_setting: str = "DASHBOARDS_FEED_URL"
    #: The setting that tells the process which port serves its metrics (``metrics_port``).
    metrics_port_setting: str = "DASHBOARDS_METRICS_PORT"
    #: Settings on top of the stack's (its pool: one per process, shared by its sessions).
    settings: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: The autoscaler's ceiling (CPU-bound chart rendering under many sessions).
    max_replicas: int = 6

    def feed_url(self, namespace: str) -> str:
        """The in-cluster websocket URL of the feed (the service whose API serves it)."""
        (feed,) = [spec for spec in SERVICES.values() if self.feed_path in spec.api_paths]
        return f"ws://{service_host(feed.name, namespace)}:{feed.port}{self.feed_path}"


@dataclass(frozen=True, slots=True, kw_only=True)
class RollbackHandlerSpec(Workload):
    """rollback-handler (services/rollback): Alertmanager's rollback triggers turn flags off.

    Reached by Alertmanager only (its webhook receiver in
    ``alerts/alertmanager/alertmanager.yml`` names :meth:`webhook_url`), never
    through the edge; it calls Postgres, Redis and, when configured, Slack.
    """

    resources: Resources
    #: The route Alertmanager posts to.
    webhook_path: str
    #: Settings on top of the stack's: a small pool, it handles a few requests an hour.
    settings: Mapping[str, str]
    #: Two replicas: a node drain never leaves rollback triggers without a receiver
    #: (duplicates are harmless: one incident flips a flag once).
    replicas: int = 2
    #: Slack is told about every rollback when the stack has a webhook URL.
    egress: frozenset[EgressTarget] = frozenset()

    def webhook_url(self, namespace: str) -> str:
        """The in-cluster URL Alertmanager posts rollback triggers to."""
        return f"http://{service_host(self.name, namespace)}:{self.port}{self.webhook_path}"


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSpec:
    """A run-to-completion step of every deploy (see infra/components/jobs.py)."""

    name: str
    command: tuple[str, ...]
    #: Keys of the Job's own Secret (least privilege: no Job sees another's DSN).
    secrets: tuple[str, ...]
    #: The most Postgres connections its process opens (the stack's connection budget).
    db_connections: int = 0


def _frozen(mapping: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping))


# The ConfigMap settings every service reads, with the seed's defaults
# ("Required for All Services" and "Performance Targets"). Values are strings
# because they become environment variables.
COMMON_SETTINGS: Final[Mapping[str, str]] = _frozen(
    {
        "DB_POOL_SIZE": "20",
        "DB_MAX_OVERFLOW": "40",
        "DB_POOL_TIMEOUT": "30",
        "REDIS_MAX_CONNECTIONS": "50",
        "REDIS_SOCKET_TIMEOUT": "5",
        "WEBSOCKET_TARGET_LATENCY_MS": "50",
        "ML_INFERENCE_TARGET_MS": "35",
        "VISION_ANALYSIS_TARGET_MS": "1500",
        "CHURN_INTERVENTION_TARGET_S": "30",
        "COACHING_ANALYSIS_TARGET_MS": "2000",
    }
)

# ConfigMap settings whose values depend on the stack (environment, hostnames,
# buckets); the program computes them, so only the names live here.
STACK_SETTINGS: Final[tuple[str, ...]] = (
    "ENVIRONMENT",
    "LOG_LEVEL",
    "CORS_ORIGINS",
    "JWT_KEY_ID",
    "AWS_REGION",
    "MEDIA_BUCKET",
    "MODELS_BUCKET",
    "ML_MODEL_URI",
    "CHURN_MODEL_URI",
    "S3_ENDPOINT_URL",
)

# Every key a workload's Secret may hold (each workload declares its subset in
# ``Workload.secrets``); none of them may ever appear in a ConfigMap.
SERVICE_SECRET_KEYS: Final[tuple[str, ...]] = (
    "DATABASE_URL",
    "REDIS_URL",
    "JWT_SECRET_KEY",
    "JWT_PREVIOUS_KEYS",
    "ANTHROPIC_API_KEY",
    "GHL_API_KEY",
    "SLACK_WEBHOOK_URL",
    "ALERTMANAGER_WEBHOOK_TOKEN",
)

# The owner-role DSN is kept out of the services' Secret: only the migration Job
# (and `enterprisehub migrate`) may alter the schema or bypass row-level security.
MIGRATION_SECRET_KEYS: Final[tuple[str, ...]] = ("MIGRATION_DATABASE_URL",)

#: Static credentials of S3-compatible storage (the local stack's MinIO): given
#: only to workloads that use a bucket. AWS stacks use IRSA roles instead.
OBJECT_STORAGE_SECRET_KEYS: Final[tuple[str, ...]] = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")

#: What every service reads: its stores (application role) and the token keys.
_CORE_SECRETS: Final = ("DATABASE_URL", "REDIS_URL", "JWT_SECRET_KEY", "JWT_PREVIOUS_KEYS")

# Seed feature-flag names (the Redis `feature_flag:<name>` keys). The stack's
# `featureFlags` gives their initial state to the flags-init Job (`flags init
# --seed`); no service reads a flag from its environment.
FEATURE_FLAGS: Final[tuple[str, ...]] = (
    "realtime_intelligence",
    "property_vision",
    "churn_prevention",
    "ai_coaching",
)

#: The setting that carries a stack's ``impactAssumptions`` (JSON, as
#: services/impact/assumptions.py reads it) to the programs that price the
#: features: the dashboards' ROI page and the daily aggregate Job.
IMPACT_ASSUMPTIONS_SETTING: Final = "IMPACT_ASSUMPTIONS"
#: The assumptions that are ranges, lowest first: a stack sets each one whole.
IMPACT_ASSUMPTION_RANGES: Final[tuple[tuple[str, ...], ...]] = (
    ("lift_low", "lift", "lift_high"),
    ("annual_value_low", "annual_value_high"),
)

WEBSOCKET_MANAGER: Final = ServiceSpec(
    name="websocket-manager",
    kind="realtime",
    port=8001,
    health_path="/health/websocket",
    scaling=Scaling(
        min_replicas=2, max_replicas=10, cpu_target_percent=70, memory_target_percent=80
    ),
    resources=Resources(cpu="2000m", memory="4Gi"),
    secrets=_CORE_SECRETS,
    settings=_frozen(
        {
            "WS_MAX_CONNECTIONS_PER_TENANT": "100",
            "WS_HEARTBEAT_INTERVAL": "30",
            "WS_RECONNECT_DELAY": "5",
        }
    ),
    # It receives the CRM's webhooks (ingress) and scores each lead event with the
    # lead-scoring model it loads from the models bucket (read only).
    egress=frozenset(),
    buckets=MappingProxyType({Bucket.MODELS: "read"}),
    feature="realtime_intelligence",
    # The CRM webhook and the feed (a websocket).
    api_paths=("/v1/leads/events", FEED_PATH),
    streaming_paths=(FEED_PATH,),
    # It scores leads, not churn risk.
    unread_stack_settings=frozenset({"CHURN_MODEL_URI"}),
)

ML_SERVICES: Final = ServiceSpec(
    name="ml-services",
    kind="ml",
    port=8002,
    health_path="/health/ml",
    # The seed gives no memory threshold for ml-services: CPU-only scaling.
    scaling=Scaling(min_replicas=3, max_replicas=15, cpu_target_percent=75),
    resources=Resources(cpu="4000m", memory="8Gi"),
    # Property vision calls Claude.
    secrets=(*_CORE_SECRETS, "ANTHROPIC_API_KEY"),
    settings=_frozen(
        {
            "ML_MODEL_CACHE_SIZE": "100",
            "ML_BATCH_SIZE": "32",
            "ML_INFERENCE_TIMEOUT": "10",
            # Photo uploads (VISION_MAX_IMAGE_BYTES) pass the edge's body cap.
            "MAX_REQUEST_BODY_BYTES": "20971520",
        }
    ),
    # Property vision calls Claude; lead scoring loads its model from the models bucket
    # and the vision analysis reads and stores property media.
    egress=frozenset({EgressTarget.ANTHROPIC}),
    buckets=MappingProxyType({Bucket.MODELS: "read", Bucket.MEDIA: "readwrite"}),
    feature="property_vision",
    api_paths=("/v1/leads/score", "/v1/ml"),
    # Churn risk is churn-orchestrator's model.
    unread_stack_settings=frozenset({"CHURN_MODEL_URI"}),
)

COACHING_ENGINE: Final = ServiceSpec(
    name="coaching-engine",
    kind="coaching",
    port=8003,
    health_path="/health/coaching",
    # The seed gives no thresholds: 70% CPU, the same target as websocket-manager.
    scaling=Scaling(min_replicas=2, max_replicas=8, cpu_target_percent=70),
    resources=Resources(cpu="2000m", memory="4Gi"),
    secrets=(*_CORE_SECRETS, "ANTHROPIC_API_KEY"),
    settings=_frozen(
        {
            "COACHING_SESSION_TIMEOUT": "300",
            "COACHING_MAX_CONCURRENT_ANALYSES": "50",
        }
    ),
    egress=frozenset({EgressTarget.ANTHROPIC}),
    feature="ai_coaching",
    api_paths=("/v1/coaching",),
    # Coaching scores no leads: the models' locations mean nothing to it.
    unread_stack_settings=frozenset({"ML_MODEL_URI", "CHURN_MODEL_URI"}),
)

CHURN_ORCHESTRATOR: Final = ServiceSpec(
    name="churn-orchestrator",
    kind="churn",
    port=8004,
    health_path="/health/churn",
    # The seed gives no thresholds: 70% CPU, as for the other CPU-bound services.
    scaling=Scaling(min_replicas=1, max_replicas=5, cpu_target_percent=70),
    resources=Resources(cpu="1000m", memory="2Gi"),
    # The CRM's API delivers the interventions (fixed templates, no Claude, no
    # Slack: services/churn reads neither key), so the GHL key is its only extra.
    secrets=(*_CORE_SECRETS, "GHL_API_KEY"),
    settings=_frozen(
        {
            "CHURN_MONITORING_INTERVAL": "60",
            "CHURN_INTERVENTION_RETRY_COUNT": "3",
        }
    ),
    # Interventions are fixed templates delivered through the CRM's API (LeadConnector);
    # the churn model is loaded from the models bucket (CHURN_MODEL_URI, published by
    # the churn-model-publish Job).
    egress=frozenset({EgressTarget.CRM}),
    buckets=MappingProxyType({Bucket.MODELS: "read"}),
    feature="churn_prevention",
    api_paths=("/v1/churn",),
    # It scores churn risk, not leads: the lead model's location means nothing to it.
    unread_stack_settings=frozenset({"ML_MODEL_URI"}),
    # The job queue's own pool (services/churn/runtime.py, procrastinate's
    # PsycopgConnector): max(4, CHURN_WORKER_CONCURRENCY // 2 + 2), 18 at the
    # default concurrency of 32 (tests/test_contracts.py keeps the two equal).
    extra_db_connections=18,
)

#: The four services in the seed's order, keyed by name.
SERVICES: Final[Mapping[str, ServiceSpec]] = MappingProxyType(
    {
        spec.name: spec
        for spec in (WEBSOCKET_MANAGER, ML_SERVICES, COACHING_ENGINE, CHURN_ORCHESTRATOR)
    }
)

#: The services the platform deploys: those the image serves today.
SHIPPED_SERVICES: Final[Mapping[str, ServiceSpec]] = MappingProxyType(
    {name: spec for name, spec in SERVICES.items() if spec.shipped}
)


def feature_deployments() -> Mapping[str, tuple[str, ...]]:
    """Feature flag -> the Deployments that serve it (the shipped services implementing it).

    What the rollback handler may undo when a feature's trigger fires and the
    stack lets it (``rollback.undoDeployments``): its Role names exactly these
    Deployments, and its settings carry the same mapping.
    """
    served: dict[str, list[str]] = {}
    for spec in SHIPPED_SERVICES.values():
        if spec.feature:
            served.setdefault(spec.feature, []).append(spec.name)
    return MappingProxyType({feature: tuple(names) for feature, names in served.items()})


#: The Streamlit dashboards (the seed put them on Vercel, which cannot run
#: Streamlit): one multipage app served by the image like the services.
DASHBOARDS: Final = DashboardsSpec(
    name="dashboards",
    kind="dashboards",
    port=8501,
    # The public Gateway sends every path of the dashboards' hostnames to `port`:
    # a /metrics there would be public. Prometheus scrapes this one, which no
    # route names and the network policy opens to Prometheus alone. 9102: clear
    # of the services' 8001-8005, the app's 8501 and `make run`'s other ports.
    metrics_port=9102,
    # Streamlit's own health endpoint (answers once the server is up).
    health_path="/_stcore/health",
    feed_path=FEED_PATH,
    # Stored rows (Postgres, application role), their cache (Redis), and the
    # signed-in user's token, verified with the platform's keys.
    secrets=("DATABASE_URL", "REDIS_URL", "JWT_SECRET_KEY", "JWT_PREVIOUS_KEYS"),
    # Sessions are cheap to rebuild; two replicas ride through a node drain.
    resources=Resources(cpu="500m", memory="1Gi"),
    # One pool per process serves every session's queries (services/dashboards/context.py);
    # a page runs a handful of short queries, so 4 + 4 is ample.
    settings=_frozen({"DB_POOL_SIZE": "4", "DB_MAX_OVERFLOW": "4"}),
    # `enterprisehub serve dashboards` (services/dashboards).
    shipped=True,
)

#: The rollback handler (``enterprisehub serve rollback``, services/rollback).
ROLLBACK_HANDLER: Final = RollbackHandlerSpec(
    name="rollback-handler",
    kind="rollback",
    port=8005,
    health_path="/health/rollback",
    webhook_path="/v1/alertmanager/webhook",
    # Incidents, audit rows (Postgres) and flags (Redis); Alertmanager's bearer
    # token; Slack for the notice. JWT_SECRET_KEY only because the common
    # settings require it at start-up (the webhook is checked with its own token).
    secrets=(
        "DATABASE_URL",
        "REDIS_URL",
        "JWT_SECRET_KEY",
        "ALERTMANAGER_WEBHOOK_TOKEN",
        "SLACK_WEBHOOK_URL",
    ),
    resources=Resources(cpu="250m", memory="512Mi"),
    settings=_frozen({"DB_POOL_SIZE": "2", "DB_MAX_OVERFLOW": "2", "REDIS_MAX_CONNECTIONS": "8"}),
    egress=frozenset({EgressTarget.SLACK}),
)

#: The dashboards' public hostnames: keys are the hostnames config keys, values
#: the seed's route names. Every host serves the same app.
DASHBOARD_PAGES: Final[Mapping[str, str]] = _frozen(
    {
        "intelligence": "Real-Time Lead Intelligence Hub",
        "coaching": "Agent Coaching Dashboard",
        "property": "Multimodal Property Intelligence Dashboard",
        "roi": "Phase 3 ROI Dashboard",
    }
)

#: Where the container image keeps the lead-scoring model it was built with
#: (the Dockerfile trains it at build time; its ``ML_MODEL_URI`` default).
ML_MODEL_IMAGE_PATH: Final = "/app/models/lead-scoring/model.joblib"

#: Prefix of the lead-scoring model in the models bucket. The model-publish Job
#: copies the image's model to ``<prefix><version>/model.joblib`` and points
#: ``<prefix>current.json`` at it; the services' ML_MODEL_URI is the prefix
#: itself (trailing ``/``), so they load whatever the alias names. The
#: publisher's IAM role may write under the published models' prefixes only.
ML_MODEL_PREFIX: Final = "lead-scoring/"

#: The churn-risk model, baked into the image the same way (its ``CHURN_MODEL_URI``
#: default) and published by the churn-model-publish Job under its own prefix.
CHURN_MODEL_IMAGE_PATH: Final = "/app/models/churn-risk/model.joblib"
CHURN_MODEL_PREFIX: Final = "churn-risk/"


#: The migration (owner role: it creates the application role from DATABASE_URL's
#: credentials), the feature-flag seeding (flags in Redis, audit in Postgres) and
#: the model publishes (``--to`` gets the stack's ML_MODEL_URI or CHURN_MODEL_URI appended).
MIGRATE_JOB: Final = JobSpec(
    name="migrate",
    command=(CLI, "migrate"),
    secrets=(*MIGRATION_SECRET_KEYS, "DATABASE_URL"),
    db_connections=2,
)
FLAGS_INIT_JOB: Final = JobSpec(
    name="flags-init",
    command=(CLI, "flags", "init"),
    secrets=("DATABASE_URL", "REDIS_URL"),
    db_connections=2,
)
#: The daily aggregate into phase3_business_metrics (idempotent, so a retry is
#: safe); the application role, since it writes under row-level security.
IMPACT_AGGREGATE_JOB: Final = JobSpec(
    name="impact-aggregate",
    command=(CLI, "impact", "aggregate", "--date", "yesterday"),
    secrets=("DATABASE_URL",),
    db_connections=2,
)
#: The daily retention prune (30 days of events, a year of aggregates; idempotent,
#: services/impact/retention.py); the application role: it deletes under row-level security.
RETENTION_PRUNE_JOB: Final = JobSpec(
    name="retention-prune",
    command=(CLI, "retention", "prune"),
    secrets=("DATABASE_URL",),
    db_connections=2,
)
#: The CronJobs (infra/components/jobs.py: ``impact_schedule``, ``retention_schedule``).
DAILY_JOBS: Final = (IMPACT_AGGREGATE_JOB, RETENTION_PRUNE_JOB)
MODEL_PUBLISH_JOB: Final = JobSpec(
    name="model-publish",
    command=(CLI, "model", "publish", "--from", ML_MODEL_IMAGE_PATH, "--to"),
    secrets=(),
)
CHURN_MODEL_PUBLISH_JOB: Final = JobSpec(
    name="churn-model-publish",
    command=(CLI, "model", "publish", "--from", CHURN_MODEL_IMAGE_PATH, "--to"),
    secrets=(),
)


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishedModel:
    """A model the image carries and every deploy publishes to the models bucket.

    The stack sets ``setting`` (a ``STACK_SETTINGS`` key) to :meth:`uri`, the
    published prefix; the services that read that setting load whatever its
    ``current.json`` names, and ``job`` publishes the image's model there first.
    """

    #: Its name in stack outputs, e.g. ``modelPublishJobs.churn-risk``.
    name: str
    #: The ConfigMap setting its services load it from.
    setting: str
    #: Where the image keeps it (``job``'s ``--from``).
    image_path: str
    #: Its key prefix in the models bucket (``/``-terminated).
    prefix: str
    job: JobSpec

    def uri(self, models_bucket: str) -> str:
        """The stack's value of ``setting``: the published prefix in its models bucket."""
        return f"s3://{models_bucket}/{self.prefix}"


LEAD_SCORING_MODEL: Final = PublishedModel(
    name="lead-scoring",
    setting="ML_MODEL_URI",
    image_path=ML_MODEL_IMAGE_PATH,
    prefix=ML_MODEL_PREFIX,
    job=MODEL_PUBLISH_JOB,
)
CHURN_RISK_MODEL: Final = PublishedModel(
    name="churn-risk",
    setting="CHURN_MODEL_URI",
    image_path=CHURN_MODEL_IMAGE_PATH,
    prefix=CHURN_MODEL_PREFIX,
    job=CHURN_MODEL_PUBLISH_JOB,
)
#: Every model a deploy publishes (one Job each, one publisher role for all prefixes).
PUBLISHED_MODELS: Final[tuple[PublishedModel, ...]] = (LEAD_SCORING_MODEL, CHURN_RISK_MODEL)


#: Ports of the data stores, used by security groups and network policies.
POSTGRES_PORT: Final = 5432
REDIS_PORT: Final = 6379
