"""Settings of the operator commands: Redis (flags), Postgres (audit), Prometheus."""

from __future__ import annotations

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from services.common.settings import Environment, RedisSettings, _check_postgres_dsn


class RolloutSettings(RedisSettings):
    """What ``enterprisehub rollout|flags|impact`` read from the environment.

    The flags Job and an operator's shell get the application-role DSN and
    the Redis URL; nothing here needs the JWT keys.
    """

    environment: Environment = "local"
    database_url: SecretStr = Field(description="Application role DSN (subject to RLS).")
    prometheus_url: str | None = Field(
        default=None, description="Prometheus HTTP API base URL for `rollout advance`."
    )

    @field_validator("database_url")
    @classmethod
    def _postgres_dsn(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        checked = _check_postgres_dsn(value, str(info.field_name).upper())
        assert checked is not None
        return checked

    @field_validator("prometheus_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value
