"""Dependencies of rollback-handler."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import HTTPConnection

from services.rollback.config import RollbackSettings
from services.rollback.deployments import DeploymentRollbacker
from services.rollback.metrics import RollbackMetrics


def get_settings(conn: HTTPConnection) -> RollbackSettings:
    """The app's settings."""
    settings: RollbackSettings = conn.app.state.settings
    return settings


def get_metrics(conn: HTTPConnection) -> RollbackMetrics:
    """The app's rollback metrics."""
    metrics: RollbackMetrics = conn.app.state.rollback_metrics
    return metrics


def get_rollbacker(conn: HTTPConnection) -> DeploymentRollbacker | None:
    """The deployment rollbacker; None unless the stack lets the handler undo deployments."""
    rollbacker: DeploymentRollbacker | None = conn.app.state.deployment_rollbacker
    return rollbacker


SettingsDep = Annotated[RollbackSettings, Depends(get_settings)]
MetricsDep = Annotated[RollbackMetrics, Depends(get_metrics)]
RollbackerDep = Annotated[DeploymentRollbacker | None, Depends(get_rollbacker)]
