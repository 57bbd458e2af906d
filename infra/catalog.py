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

BucketAccess = Literal["read", "readwrite"]


class Bucket(StrEnum):
    """The two S3 buckets of the seed's data layer ("S3 (ML models, media storage)")."""

    MODELS = "models"
    MEDIA = "media"


class EgressTarget(StrEnum):
    """External APIs a service may call; each maps to an egress allow-list in config."""

    ANTHROPIC = "anthropic"
    CRM = "crm"


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


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One backend service of the seed's table, with what the infra must know about it."""

    name: str
    #: The ``enterprisehub serve <kind>`` sub-command.
    kind: str
    port: int
    health_path: str
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
    #: Public API path prefixes the ingress sends to this service (longest prefix wins).
    api_paths: tuple[str, ...] = ()

    @property
    def service_account(self) -> str:
        """Kubernetes ServiceAccount name; IAM trust policies are scoped to it."""
        return self.name

    @property
    def command(self) -> tuple[str, ...]:
        """The container command: one image, one console script, one sub-command each."""
        return (CLI, "serve", self.kind, "--host", "0.0.0.0", "--port", str(self.port))


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
# buckets, flags); the program computes them, so only the names live here.
STACK_SETTINGS: Final[tuple[str, ...]] = (
    "ENVIRONMENT",
    "DEPLOYMENT_ENV",
    "LOG_LEVEL",
    "CORS_ORIGINS",
    "JWT_KEY_ID",
    "AWS_REGION",
    "MEDIA_BUCKET",
    "MODELS_BUCKET",
    "ML_MODEL_URI",
    "S3_ENDPOINT_URL",
    "FEATURE_REALTIME_INTELLIGENCE",
    "FEATURE_PROPERTY_VISION",
    "FEATURE_CHURN_PREVENTION",
    "FEATURE_AI_COACHING",
)

# Keys of the Secret every service mounts as environment variables.
SERVICE_SECRET_KEYS: Final[tuple[str, ...]] = (
    "DATABASE_URL",
    "REDIS_URL",
    "JWT_SECRET_KEY",
    "JWT_PREVIOUS_KEYS",
    "ENCRYPTION_KEY",
    "ANTHROPIC_API_KEY",
    "GHL_API_KEY",
    "SLACK_WEBHOOK_URL",
)

# The owner-role DSN is kept out of the services' Secret: only the migration Job
# (and `enterprisehub migrate`) may alter the schema or bypass row-level security.
MIGRATION_SECRET_KEYS: Final[tuple[str, ...]] = ("MIGRATION_DATABASE_URL",)

# Seed feature-flag names (the Redis `feature_flag:<name>` keys) and the
# FEATURE_* environment variable that carries each one's default.
FEATURE_FLAGS: Final[Mapping[str, str]] = _frozen(
    {
        "realtime_intelligence": "FEATURE_REALTIME_INTELLIGENCE",
        "property_vision": "FEATURE_PROPERTY_VISION",
        "churn_prevention": "FEATURE_CHURN_PREVENTION",
        "ai_coaching": "FEATURE_AI_COACHING",
    }
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
    # The CRM webhook and the feed (a websocket: see dashboards.default_api_routes).
    api_paths=("/v1/leads/events", "/v1/feed"),
)

ML_SERVICES: Final = ServiceSpec(
    name="ml-services",
    kind="ml",
    port=8002,
    health_path="/health/ml",
    # The seed gives no memory threshold for ml-services: CPU-only scaling.
    scaling=Scaling(min_replicas=3, max_replicas=15, cpu_target_percent=75),
    resources=Resources(cpu="4000m", memory="8Gi"),
    settings=_frozen(
        {
            "ML_MODEL_CACHE_SIZE": "100",
            "ML_BATCH_SIZE": "32",
            "ML_INFERENCE_TIMEOUT": "10",
        }
    ),
    # Property vision calls Claude; lead scoring loads its model from the models bucket
    # and the vision analysis reads and stores property media.
    egress=frozenset({EgressTarget.ANTHROPIC}),
    buckets=MappingProxyType({Bucket.MODELS: "read", Bucket.MEDIA: "readwrite"}),
    feature="property_vision",
    api_paths=("/v1/leads/score", "/v1/ml"),
)

COACHING_ENGINE: Final = ServiceSpec(
    name="coaching-engine",
    kind="coaching",
    port=8003,
    health_path="/health/coaching",
    # The seed gives no thresholds: 70% CPU, the same target as websocket-manager.
    scaling=Scaling(min_replicas=2, max_replicas=8, cpu_target_percent=70),
    resources=Resources(cpu="2000m", memory="4Gi"),
    settings=_frozen(
        {
            "COACHING_SESSION_TIMEOUT": "300",
            "COACHING_MAX_CONCURRENT_ANALYSES": "50",
        }
    ),
    egress=frozenset({EgressTarget.ANTHROPIC}),
    feature="ai_coaching",
    # Arrives with the coaching issue; `enterprisehub serve coaching` refuses until then.
    shipped=False,
    api_paths=("/v1/coaching",),
)

CHURN_ORCHESTRATOR: Final = ServiceSpec(
    name="churn-orchestrator",
    kind="churn",
    port=8004,
    health_path="/health/churn",
    # The seed gives no thresholds: 70% CPU, as for the other CPU-bound services.
    scaling=Scaling(min_replicas=1, max_replicas=5, cpu_target_percent=70),
    resources=Resources(cpu="1000m", memory="2Gi"),
    settings=_frozen(
        {
            "CHURN_MONITORING_INTERVAL": "60",
            "CHURN_INTERVENTION_RETRY_COUNT": "3",
        }
    ),
    # Interventions are fixed templates delivered through the CRM's API (LeadConnector);
    # the churn model is loaded from the models bucket.
    egress=frozenset({EgressTarget.CRM}),
    buckets=MappingProxyType({Bucket.MODELS: "read"}),
    feature="churn_prevention",
    # The service exists (services/churn); shipping waits for the stacks to publish
    # the churn model and pass its prefix as CHURN_MODEL_URI (docs/churn.md).
    shipped=False,
    api_paths=("/v1/churn",),
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

#: Whether the image serves the Streamlit dashboards yet (they arrive with the
#: business-impact work). Until then the stack declares neither their Deployment
#: nor their Ingress, for the same reason as ``ServiceSpec.shipped``.
DASHBOARDS_SHIPPED: Final = False

#: Dashboards served from the cluster (the seed put them on Vercel, which cannot run
#: Streamlit). Keys are the hostnames config keys; values are the seed's route names.
DASHBOARDS: Final[Mapping[str, str]] = _frozen(
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
#: publisher's IAM role may write under this prefix only.
ML_MODEL_PREFIX: Final = "lead-scoring/"


def ml_model_uri(models_bucket: str) -> str:
    """The ML_MODEL_URI of a stack: the published prefix in its models bucket."""
    return f"s3://{models_bucket}/{ML_MODEL_PREFIX}"


#: Ports of the data stores, used by security groups and network policies.
POSTGRES_PORT: Final = 5432
REDIS_PORT: Final = 6379
