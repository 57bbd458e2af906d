"""Settings of the operator commands and jobs: Postgres, Redis (flags), Prometheus."""

from __future__ import annotations

from services.common.settings import DatabaseSettings, OptionalText, RedisSettings


class RolloutSettings(DatabaseSettings, RedisSettings):
    """What ``enterprisehub rollout|flags`` read: flags in Redis, the audit in Postgres.

    The Jobs get the application-role DSN (row-level security applies), never
    the owner's, and nothing here needs the JWT keys.
    """

    prometheus_url: OptionalText = None
    """Prometheus HTTP API base URL for `rollout advance`."""
