"""Settings of the operator commands and jobs: Postgres, Redis (flags), Prometheus."""

from __future__ import annotations

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from services.common.settings import (
    Environment,
    EnvSettings,
    OptionalText,
    RedisSettings,
    _check_postgres_dsn,
)


class OperatorDatabaseSettings(EnvSettings):
    """The environment and the application-role DSN: what every operator job needs.

    The Jobs get the application-role DSN (row-level security applies), never
    the owner's, and nothing here needs the JWT keys.
    """

    environment: Environment = "local"
    database_url: SecretStr = Field(description="Application role DSN (subject to RLS).")

    @field_validator("database_url")
    @classmethod
    def _postgres_dsn(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        checked = _check_postgres_dsn(value, str(info.field_name).upper())
        assert checked is not None
        return checked


class RolloutSettings(OperatorDatabaseSettings, RedisSettings):
    """What ``enterprisehub rollout|flags`` read: flags in Redis, the audit in Postgres."""

    prometheus_url: OptionalText = Field(
        default=None, description="Prometheus HTTP API base URL for `rollout advance`."
    )
