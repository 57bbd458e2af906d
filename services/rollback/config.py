"""rollback-handler settings."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, SecretStr, field_validator

from services.common.settings import CommonSettings

MIN_WEBHOOK_TOKEN_BYTES = 32


class RollbackSettings(CommonSettings):
    """What rollback-handler reads on top of the common settings.

    ALERTMANAGER_WEBHOOK_TOKEN is the bearer credential Alertmanager sends (its
    ``credentials_file``, mounted from the same Kubernetes Secret). A static
    secret rather than a JWT: Alertmanager cannot renew a short-lived token.
    """

    service_name: ClassVar[str] = "rollback"

    alertmanager_webhook_token: SecretStr = Field(
        description="Bearer token Alertmanager presents (at least 32 bytes)."
    )
    rollback_max_body_bytes: int = Field(default=1_048_576, gt=0, le=16_777_216)

    @field_validator("alertmanager_webhook_token")
    @classmethod
    def _long_enough(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value().encode()) < MIN_WEBHOOK_TOKEN_BYTES:
            raise ValueError(
                f"must be at least {MIN_WEBHOOK_TOKEN_BYTES} bytes (openssl rand -hex 32)"
            )
        return value
