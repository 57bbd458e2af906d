"""rollback-handler settings."""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar, Self

from pydantic import Field, field_validator, model_validator

from services.common.flags import FEATURES
from services.common.settings import CommonSettings, LongSecret, PositiveSeconds

# A Deployment's name: a DNS-1123 subdomain (only ever used with fullmatch).
_DEPLOYMENT_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


class RollbackSettings(CommonSettings):
    """What rollback-handler reads on top of the common settings.

    ALERTMANAGER_WEBHOOK_TOKEN is the bearer credential Alertmanager sends (its
    ``credentials_file``, mounted from the same Kubernetes Secret). A static
    secret rather than a JWT: Alertmanager cannot renew a short-lived token.
    """

    service_name: ClassVar[str] = "rollback"

    alertmanager_webhook_token: LongSecret
    """Bearer token Alertmanager presents (at least 32 bytes)."""

    rollback_max_body_bytes: int = Field(default=1_048_576, gt=0, le=16_777_216)
    """Largest Alertmanager webhook body accepted."""

    rollback_undo_deployments: bool = False
    """Also undo the latest rollout of a triggering feature's Deployments (the stack's
    rollback.undoDeployments; the pod then has a token and a Role)."""

    rollback_feature_deployments: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    """Feature -> its Deployments, JSON {"property_vision": ["ml-services"]}."""

    rollback_flag_check_seconds: PositiveSeconds = Field(default=10.0, le=300)
    """How often the handler checks that every flag is in Redis as last recorded, restores the
    missing ones and reverts stale ones (two MGETs and one read of the records when they agree)."""

    rollback_kubernetes_timeout_seconds: PositiveSeconds = Field(default=5.0, le=30)
    """Longest one Kubernetes API call of an undo may take."""

    rollback_service_account_dir: Path = Path("/var/run/secrets/kubernetes.io/serviceaccount")
    """Where the kubelet mounts the pod's ServiceAccount token, CA and namespace."""

    @field_validator("rollback_feature_deployments")
    @classmethod
    def _known_features_and_names(
        cls, value: dict[str, tuple[str, ...]]
    ) -> dict[str, tuple[str, ...]]:
        unknown = sorted(set(value) - set(FEATURES))
        if unknown:
            raise ValueError(
                f"unknown features {', '.join(unknown)}; expected {', '.join(FEATURES)}"
            )
        for names in value.values():
            for name in names:
                if not _DEPLOYMENT_NAME.fullmatch(name):
                    raise ValueError(f"{name!r} is not a Deployment name (DNS-1123 subdomain)")
        return value

    @model_validator(mode="after")
    def _undo_needs_deployments(self) -> Self:
        if self.rollback_undo_deployments and not any(self.rollback_feature_deployments.values()):
            raise ValueError(
                "ROLLBACK_UNDO_DEPLOYMENTS=true needs ROLLBACK_FEATURE_DEPLOYMENTS "
                "(which Deployments serve which feature)"
            )
        return self
