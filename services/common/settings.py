"""Typed settings read from the environment, validated once at start-up.

The variable names are the ones the infrastructure writes (see
``docs/contracts.md``). ``CommonSettings`` holds what every service
reads; a service subclasses it in ``services/<svc>/config.py`` for its own
variables. Build settings with ``from_env()``: it turns pydantic's validation
error into a ``SettingsError`` whose lines name the variable, the rejected
value (hidden for secrets) and what is allowed.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self
from urllib.parse import SplitResult, urlsplit

from annotated_types import Le
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from services.common.scopes import SCOPES, ttl_setting

Environment = Literal["local", "dev", "staging", "production"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

# HS256 keys shorter than the hash output weaken the MAC (RFC 7518 section 3.2);
# PyJWT also warns about them, and warnings are errors in the test suite. The
# same floor holds for the static bearer tokens a service accepts (Alertmanager's).
MIN_SECRET_BYTES = 32
# Used with fullmatch only ("$" would accept a trailing newline).
_KID_PATTERN = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_ORIGIN_PATTERN = re.compile(r"https?://(\*\.)?[A-Za-z0-9.-]+(:\d{1,5})?")


def check_secret_length(value: SecretStr) -> SecretStr:
    """``value`` if it has at least ``MIN_SECRET_BYTES`` bytes, else ``ValueError`` saying
    how to generate one (the message never contains the secret)."""
    if len(value.get_secret_value().encode()) < MIN_SECRET_BYTES:
        raise ValueError(
            f"must be at least {MIN_SECRET_BYTES} bytes (generate one with: openssl rand -hex 32)"
        )
    return value


#: A signing key or bearer token: refused at start-up when shorter than ``MIN_SECRET_BYTES``.
LongSecret = Annotated[SecretStr, AfterValidator(check_secret_length)]


def _empty_to_none(value: object) -> object:
    return None if value == "" else value


# Kubernetes Secrets and ConfigMaps often carry optional keys as "": unset.
OptionalText = Annotated[str | None, BeforeValidator(_empty_to_none)]
OptionalSecret = Annotated[SecretStr | None, BeforeValidator(_empty_to_none)]

#: A duration in seconds that must be above zero; each setting adds its own ceiling (``le=``).
PositiveSeconds = Annotated[float, Field(gt=0)]
#: A duration in seconds where zero means "none" (no wait, no tolerance).
NonNegativeSeconds = Annotated[float, Field(ge=0)]

#: The largest request body a route accepts, in bytes: at least 1 KiB; each
#: setting adds its own ceiling (``le=``).
BodyLimit = Annotated[int, Field(ge=1024)]

#: How many recent latencies a service's ``/health/...`` figures are computed over
#: (``services.common.latency.LatencyWindow(max_samples=...)``).
LatencyWindowSize = Annotated[int, Field(ge=10, le=100_000)]


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


#: A comma-separated variable ("a, b,c") read as a list: items trimmed, empty ones dropped.
CommaSeparated = Annotated[list[str], NoDecode, BeforeValidator(_split_commas)]


class SettingsError(ValueError):
    """Start-up configuration is invalid; ``problems`` has one line per variable."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {line}" for line in problems))


def _is_secret(settings_cls: type[BaseSettings], field_name: str) -> bool:
    field = settings_cls.model_fields.get(field_name)
    if field is None:
        return False
    return "SecretStr" in repr(field.annotation)


def _describe(settings_cls: type[BaseSettings], error: dict[str, Any]) -> str:
    loc = error.get("loc") or ()
    field_name = str(loc[0]) if loc else ""
    variable = field_name.upper() if field_name else "(settings)"
    message = str(error.get("msg", "invalid value"))
    # pydantic prefixes messages from our validators with "Value error, ".
    message = message.removeprefix("Value error, ")
    if error.get("type") == "missing":
        return f"{variable}: required but not set"
    if not field_name or _is_secret(settings_cls, field_name):
        return f"{variable}: {message} (value hidden)"
    return f"{variable}={error.get('input')!r}: {message}"


def _check_postgres_dsn(value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
    """Accept postgresql:// URLs with a host, a user and a database name.

    The message names the variable but never contains the value: a DSN usually
    carries a password.
    """
    if value is None:
        return None
    variable = str(info.field_name).upper()
    raw = value.get_secret_value()
    allowed = (
        "expected postgresql://USER:PASSWORD@HOST:PORT/DATABASE "
        "(scheme postgresql, postgres or postgresql+asyncpg)"
    )
    parts = urlsplit(raw)
    if parts.scheme not in {"postgresql", "postgres", "postgresql+asyncpg"}:
        raise ValueError(f"{variable} has an unsupported scheme; {allowed}")
    try:
        parts.port  # noqa: B018 - the property raises on a malformed port
    except ValueError:
        raise ValueError(f"{variable} has a non-numeric or out-of-range port; {allowed}") from None
    if not parts.hostname or not parts.username or parts.path.strip("/") == "":
        raise ValueError(f"{variable} lacks a host, user or database name; {allowed}")
    return value


#: A postgresql:// DSN (DATABASE_URL, MIGRATION_DATABASE_URL), checked at start-up.
DatabaseUrl = Annotated[SecretStr, AfterValidator(_check_postgres_dsn)]
OptionalDatabaseUrl = Annotated[OptionalSecret, AfterValidator(_check_postgres_dsn)]


class EnvSettings(BaseSettings):
    """Base of every settings class: environment only, unknown variables ignored.

    A field's description is the docstring on the line after it, as pydantic reads
    it with ``use_attribute_docstrings`` (kept in subclasses, whose own config merges).
    """

    model_config = SettingsConfigDict(
        extra="ignore", case_sensitive=False, use_attribute_docstrings=True
    )

    @classmethod
    def from_env(cls, **overrides: Any) -> Self:
        """Read the environment; raise ``SettingsError`` naming every bad variable."""
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise SettingsError(
                [_describe(cls, dict(err)) for err in exc.errors(include_url=False)]
            ) from None


def _upper_bound(settings: type[BaseModel], field: str) -> float:
    """The ``le`` bound of one of ``settings``' fields (each lifetime setting has one)."""
    bounds = [
        float(m.le)
        for m in settings.model_fields[field].metadata
        if isinstance(m, Le) and isinstance(m.le, int | float)
    ]
    if not bounds:
        raise TypeError(f"{settings.__name__}.{field} has no upper bound")
    return min(bounds)


class TokenLifetimeSettings(EnvSettings):
    """How long a token may live: what verifying needs besides the keys, and what
    revoking one needs (how long its revocation must be kept), without the keys."""

    jwt_leeway_seconds: NonNegativeSeconds = Field(default=10.0, le=300)
    """Clock skew tolerated on exp, iat, and a subject revocation's time (tokens issued up to this
    long after it are revoked too)."""

    # Longest token lifetime per scope (services.common.auth): minted tokens
    # are refused beyond it, and so are tokens that claim a longer one.
    jwt_max_ttl_feed_read: PositiveSeconds = Field(default=12 * 3600, le=30 * 86400)
    """Feed tokens (an agent's shift)."""

    jwt_max_ttl_crm_ingest: PositiveSeconds = Field(default=30 * 86400, le=365 * 86400)
    """CRM webhook tokens (rotated with the CRM integration's secret)."""

    jwt_max_ttl_leads_score: PositiveSeconds = Field(default=30 * 86400, le=365 * 86400)
    """Scoring API tokens."""

    jwt_max_ttl_vision_analyze: PositiveSeconds = Field(default=30 * 86400, le=365 * 86400)
    """Photo analysis tokens."""

    jwt_max_ttl_coaching_analyze: PositiveSeconds = Field(default=30 * 86400, le=365 * 86400)
    """Coaching analysis tokens."""

    jwt_max_ttl_dashboards_view: PositiveSeconds = Field(default=12 * 3600, le=30 * 86400)
    """Dashboards tokens (a working day)."""

    jwt_max_ttl_operator: PositiveSeconds = Field(default=3600, le=86400)
    """Operator tokens (short: they can do most)."""

    @property
    def token_max_ttl(self) -> dict[str, float]:
        """Longest lifetime in seconds per token scope (JWT_MAX_TTL_*)."""
        return {scope: float(getattr(self, ttl_setting(scope))) for scope in SCOPES}

    @classmethod
    def revocation_keep_seconds(cls) -> float:
        """How long after its revocation a token could still verify, at most.

        A token alive then was issued no later than the leeway after it (a later
        ``iat`` is not valid yet), lives at most its scopes' cap plus the leeway
        (longer is ``lifetime_too_long``) and verifies until the leeway after its
        ``exp``; its scopes are unknown, so the longest cap counts. The caps and
        the leeway are the largest these settings accept, not the values of the
        shell that revokes: the services may run with larger ones than it, and a
        revocation pruned while its token still verifies would be undone.
        """
        caps = [_upper_bound(cls, ttl_setting(scope)) for scope in SCOPES]
        return max(caps) + 3 * _upper_bound(cls, "jwt_leeway_seconds")


class AuthSettings(TokenLifetimeSettings):
    """The JWT keys and lifetimes: enough to mint or verify tokens without any datastore."""

    jwt_secret_key: LongSecret
    """Active HS256 signing key."""

    jwt_key_id: str = "k1"
    """kid header of the active key."""

    jwt_previous_keys: Annotated[dict[str, SecretStr], NoDecode] = Field(default_factory=dict)
    """JSON object {"kid": "secret"} of retired keys, verification only."""

    @field_validator("jwt_key_id")
    @classmethod
    def _kid_shape(cls, value: str) -> str:
        if not _KID_PATTERN.fullmatch(value):
            raise ValueError("must be 1-64 characters from A-Z a-z 0-9 _ . -")
        return value

    @field_validator("jwt_previous_keys", mode="before")
    @classmethod
    def _parse_previous_keys(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        if value.strip() == "":
            return {}
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            raise ValueError('must be a JSON object like {"kid": "secret"} or {}') from None
        if not isinstance(parsed, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in parsed.items()
        ):
            raise ValueError("must be a JSON object of string kids to string secrets")
        return parsed

    @field_validator("jwt_previous_keys")
    @classmethod
    def _previous_keys_valid(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for kid, secret in value.items():
            if not _KID_PATTERN.fullmatch(kid):
                raise ValueError(f"kid {kid!r} must be 1-64 characters from A-Z a-z 0-9 _ . -")
            try:
                check_secret_length(secret)
            except ValueError as exc:
                raise ValueError(f"key {kid!r} {exc}") from None
        return value

    @model_validator(mode="after")
    def _active_kid_not_retired(self) -> Self:
        if self.jwt_key_id in self.jwt_previous_keys:
            raise ValueError(
                f"JWT_KEY_ID {self.jwt_key_id!r} also appears in JWT_PREVIOUS_KEYS; "
                "a kid names exactly one key"
            )
        return self


class RedisSettings(EnvSettings):
    """Redis connection settings: enough for `enterprisehub flags init`."""

    redis_url: SecretStr
    """redis:// or rediss:// URL."""

    redis_max_connections: int = Field(default=50, gt=0, le=10000)
    """Connections in each process's Redis pool."""

    redis_socket_timeout: PositiveSeconds = Field(default=5.0, le=600)
    """Longest wait to connect to Redis or for one command's answer."""

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr) -> SecretStr:
        expected = "expected redis://[:PASSWORD@]HOST:PORT/DB or rediss:// for TLS"
        parts = urlsplit(value.get_secret_value())
        database = parts.path.strip("/")
        if (
            parts.scheme not in {"redis", "rediss"}
            or not parts.hostname
            or not _port_ok(parts)
            or not (database == "" or database.isdigit())
        ):
            raise ValueError(expected)
        return value


_BUCKET_PATTERN = re.compile(r"\A[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")


def _port_ok(parts: SplitResult) -> bool:
    """False for a port urllib cannot read or 0.

    Checked at start-up: the clients (redis-py, httpx) otherwise raised on it
    at the first connection, as a traceback, in a service or an operator command.
    """
    try:
        return parts.port != 0
    except ValueError:
        return False


def http_url(value: str | None, expected: str) -> str | None:
    """``value`` if it is an http(s) URL with a host and a readable port, else
    ``ValueError("expected " + expected)``; None passes (an unset optional URL)."""
    if value is not None:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname or not _port_ok(parts):
            raise ValueError(f"expected {expected}")
    return value


class StorageSettings(EnvSettings):
    """Object storage (S3, or MinIO in a local cluster) and the platform's buckets."""

    s3_endpoint_url: OptionalText = None
    """S3-compatible endpoint (in-cluster storage); unset for AWS."""

    aws_region: OptionalText = None
    """Region of the buckets."""

    models_bucket: OptionalText = None
    """Bucket of model artifacts."""

    media_bucket: OptionalText = None
    """Bucket of uploaded media."""

    @field_validator("s3_endpoint_url")
    @classmethod
    def _endpoint_shape(cls, value: str | None) -> str | None:
        return http_url(value, "http(s)://HOST[:PORT] of an S3-compatible endpoint")

    @field_validator("models_bucket", "media_bucket")
    @classmethod
    def _bucket_shape(cls, value: str | None) -> str | None:
        if value is not None and not _BUCKET_PATTERN.fullmatch(value):
            raise ValueError("must be an S3 bucket name: 3-63 of a-z 0-9 . -")
        return value


#: List prices (USD per million tokens, which is micro-dollars per token) of the
#: models the services use. Override with CLAUDE_PRICES when the price list changes.
DEFAULT_CLAUDE_PRICES: dict[str, dict[str, str]] = {
    "claude-sonnet-4-5": {"input": "3", "output": "15"},
    "claude-haiku-4-5": {"input": "1", "output": "5"},
    "claude-opus-4-5": {"input": "5", "output": "25"},
}


class ModelPrice(BaseModel):
    """One model's base prices in USD per million tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: Decimal = Field(ge=0)
    output: Decimal = Field(ge=0)


class ClaudeSettings(EnvSettings):
    """The Anthropic API: without ANTHROPIC_API_KEY the Claude client is absent."""

    anthropic_api_key: OptionalSecret = None
    """Anthropic API key; unset disables every Claude feature."""

    anthropic_base_url: OptionalText = None
    """API base URL (a proxy or a local stand-in); unset: Anthropic."""

    anthropic_timeout_seconds: PositiveSeconds = Field(default=60.0, le=600)
    """Per-request timeout of Claude calls."""

    anthropic_max_retries: int = Field(default=2, ge=0, le=10)
    """Retries of 429/529/5xx/connect errors by the one retry policy (services.common.claude); read
    timeouts are never retried."""

    claude_model: str = Field(default="claude-sonnet-4-5", min_length=1, max_length=100)
    """The model every Claude feature calls (priced in CLAUDE_PRICES)."""

    claude_connect_timeout_seconds: PositiveSeconds = Field(default=5.0, le=60)
    """Longest wait to connect to the API (within ANTHROPIC_TIMEOUT_SECONDS)."""

    claude_max_retry_wait_seconds: NonNegativeSeconds = Field(default=5.0, le=120)
    """Longest wait for a 429's retry-after or the local limiter; longer is a 503."""

    claude_backoff_base_seconds: PositiveSeconds = Field(default=0.5, le=60)
    """First retry's longest backoff (with jitter), doubled for each further retry."""

    claude_backoff_max_seconds: PositiveSeconds = Field(default=8.0, le=600)
    """Cap of the backoff between two retries."""

    claude_breaker_failures: int = Field(default=5, ge=1, le=1000)
    """Consecutive failures that open the circuit."""

    claude_breaker_open_seconds: PositiveSeconds = Field(default=30.0, le=3600)
    """How long the open circuit refuses calls (503) before it lets one through to try."""

    claude_spend_limit_open_seconds: PositiveSeconds = Field(default=900.0, le=86400)
    """Circuit open time after a spend-limit 429."""

    claude_prices: Annotated[dict[str, ModelPrice], NoDecode] = Field(
        default_factory=lambda: {
            k: ModelPrice.model_validate(v) for k, v in DEFAULT_CLAUDE_PRICES.items()
        }
    )
    """JSON {"model": {"input": USD/MTok, "output": USD/MTok}}."""

    @field_validator("claude_prices", mode="before")
    @classmethod
    def _parse_prices(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                raise ValueError(
                    'must be JSON like {"model": {"input": 3, "output": 15}}'
                ) from None
        return value

    @model_validator(mode="after")
    def _model_is_priced(self) -> Self:
        if self.claude_model not in self.claude_prices:
            raise ValueError(
                f"CLAUDE_MODEL {self.claude_model!r} has no price in CLAUDE_PRICES "
                f"(priced: {', '.join(sorted(self.claude_prices))}); every call must be costed"
            )
        return self

    @field_validator("anthropic_base_url")
    @classmethod
    def _base_url_shape(cls, value: str | None) -> str | None:
        return http_url(value, "http(s)://HOST[:PORT][/PATH]")


class DatabaseSettings(EnvSettings):
    """The environment and its application-role DSN: what every service and operator job reads.

    Row-level security applies to this role; the owner's DSN is read only where
    migrations run (``CommonSettings.migration_database_url``).
    """

    environment: Environment = "local"
    """Which environment this is. Flags and their audit are kept per environment; production
    also serves no API docs and refuses FAULT_INJECTION_FILE."""

    database_url: DatabaseUrl
    """Application role DSN (subject to RLS)."""


class CommonSettings(
    DatabaseSettings, AuthSettings, RedisSettings, StorageSettings, ClaudeSettings
):
    """Settings every feature service reads.

    Latency targets keep the seed's variable names (``..._MS``/``..._S``); use
    ``targets_seconds`` for comparisons so that code works in base units.
    """

    service_name: ClassVar[str] = "common"

    log_level: LogLevel = "INFO"
    """Level of the services' logs (any case)."""

    migration_database_url: OptionalDatabaseUrl = None
    """Owner role DSN, used only by `enterprisehub migrate`."""

    db_pool_size: int = Field(default=20, gt=0, le=1000)
    """With DB_MAX_OVERFLOW, the most Postgres connections a process opens (their sum;
    they open as needed). The seed's names: the pool has no separate overflow."""

    db_max_overflow: int = Field(default=40, ge=0, le=1000)
    """Added to DB_POOL_SIZE for the most connections a process opens."""

    db_pool_timeout: PositiveSeconds = Field(default=30.0, le=600)
    """Longest wait for a free Postgres connection (then 503)."""

    cors_origins: CommaSeparated = Field(default_factory=list)
    """Comma-separated browser origins allowed to call the APIs (scheme://host[:port]; a
    leading *. subdomain wildcard allowed, never a bare *); empty: no CORS headers."""

    max_request_body_bytes: BodyLimit = Field(default=2_097_152, le=100_000_000)
    """Largest request body any route accepts (a 1,000-lead batch is ~0.5 MB)."""

    slack_webhook_url: OptionalSecret = None
    """Slack incoming webhook the rollback handler posts its notices to; unset: none sent."""

    fault_injection_file: Path | None = None
    """Test-only: a JSON file of latency/errors to inject (services.common.faults); refused in
    production."""

    websocket_target_latency_ms: float = Field(default=50, gt=0)
    """The seed's feed delivery target (/health/websocket reports it; degraded at 100 ms)."""

    ml_inference_target_ms: float = Field(default=35, gt=0)
    """The seed's target for one lead's scoring."""

    vision_analysis_target_ms: float = Field(default=1500, gt=0)
    """The seed's target for one photo's analysis."""

    churn_intervention_target_s: float = Field(default=30, gt=0)
    """The seed's target from detection to the first send of an intervention."""

    coaching_analysis_target_ms: float = Field(default=2000, gt=0)
    """The seed's target for one coaching analysis."""

    auth_revocation_refresh_seconds: float = Field(default=10.0, ge=0.05, le=300)
    """How often each process reads the token revocations from Postgres: a revoked token is
    refused, and a feed socket opened with it closed, within about this long."""

    @model_validator(mode="after")
    def _no_faults_in_production(self) -> Self:
        if self.fault_injection_file is not None and self.environment == "production":
            raise ValueError(
                "FAULT_INJECTION_FILE is for tests and drills; never set in production"
            )
        return self

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("cors_origins")
    @classmethod
    def _origins_shape(cls, value: list[str]) -> list[str]:
        for origin in value:
            if not _ORIGIN_PATTERN.fullmatch(origin):
                raise ValueError(
                    f"origin {origin!r} must be scheme://host[:port] without a path; "
                    "a wildcard is allowed only as a leading subdomain "
                    "(https://*.example.com), never a bare '*'"
                )
        return value

    @property
    def cors_exact_origins(self) -> list[str]:
        """Origins without wildcards, for ``CORSMiddleware(allow_origins=...)``."""
        return [o for o in self.cors_origins if "*" not in o]

    @property
    def cors_origin_regex(self) -> str | None:
        """One regex for the ``https://*.example.com`` entries, or None."""
        patterns = []
        for origin in self.cors_origins:
            if "*" not in origin:
                continue
            scheme, rest = origin.split("://", 1)
            host = re.escape(rest.removeprefix("*."))
            patterns.append(rf"{scheme}://[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*\.{host}")
        # \A...\Z, not ^...$: "$" also matches before a trailing newline.
        return r"\A(" + "|".join(patterns) + r")\Z" if patterns else None

    @property
    def targets_seconds(self) -> dict[str, float]:
        """The seed's performance targets converted to seconds, keyed by feature."""
        return {
            "realtime_intelligence": self.websocket_target_latency_ms / 1000,
            "ml_inference": self.ml_inference_target_ms / 1000,
            "property_vision": self.vision_analysis_target_ms / 1000,
            "churn_prevention": self.churn_intervention_target_s,
            "ai_coaching": self.coaching_analysis_target_ms / 1000,
        }

    @property
    def db_max_connections(self) -> int:
        """Upper bound of the asyncpg pool: DB_POOL_SIZE + DB_MAX_OVERFLOW."""
        return self.db_pool_size + self.db_max_overflow
