"""Settings of the operator commands and jobs: Postgres, Redis (flags), Prometheus."""

from __future__ import annotations

from pydantic import field_validator

from services.common.settings import DatabaseSettings, OptionalText, RedisSettings, http_url


class RolloutSettings(DatabaseSettings, RedisSettings):
    """What ``enterprisehub rollout|flags`` read: flags in Redis, the audit in Postgres.

    The Jobs get the application-role DSN (row-level security applies), never
    the owner's, and nothing here needs the JWT keys.
    """

    prometheus_url: OptionalText = None
    """Prometheus HTTP API base URL for `rollout advance`."""

    @field_validator("prometheus_url")
    @classmethod
    def _prometheus_url(cls, value: str | None) -> str | None:
        return http_url(value, "http(s)://HOST[:PORT][/PATH] of Prometheus's HTTP API")
