"""rollback-handler (port 8005): Alertmanager's rollback triggers turn feature flags off.

``enterprisehub serve rollback`` runs ``create_app()``. Routes:
``POST /v1/alertmanager/webhook`` plus the common health routes and
``/health/rollback``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.common.app import create_app as create_service_app
from services.common.lifespan import ServiceLifespan
from services.common.metrics import new_registry
from services.common.tasks import BackgroundTask
from services.rollback.config import RollbackSettings
from services.rollback.deployments import (
    DeploymentRollbacker,
    kubernetes_client,
    undo_deadline_seconds,
)
from services.rollback.health import ROLLBACK_FEATURE_HEALTH
from services.rollback.metrics import RollbackMetrics
from services.rollback.notices import watch_notices
from services.rollback.routes import webhook
from services.rollback.undo_claims import watch_undo_claims
from services.rollout.restore import keep_flags


def _lifespan(settings: RollbackSettings) -> ServiceLifespan:
    """The watcher of unfinished undo claims, the keeper of the flags (restores the
    ones Redis lost, reverts the stale ones), the pass that posts queued Slack
    notices, and the Kubernetes client, only when the stack lets the handler undo
    deployments."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Always on: a claim left from when undos were enabled still needs an operator.
        watcher = BackgroundTask("rollback-undo-claims")
        watcher.start(lambda: watch_undo_claims(app.state.db, app.state.rollback_metrics))
        keeper = BackgroundTask("rollback-flag-keeper")
        keeper.start(
            lambda: keep_flags(
                db=app.state.db,
                redis=app.state.redis,
                environment=settings.environment,
                interval=settings.rollback_flag_check_seconds,
                report=app.state.rollback_metrics.count_flag_outcomes,
                report_behind=app.state.rollback_metrics.set_flags_behind,
            )
        )
        notices = BackgroundTask("rollback-notices")
        notices.start(
            lambda: watch_notices(
                app.state.db, settings.slack_webhook_url, app.state.rollback_metrics
            )
        )
        try:
            async with _rollbacker(settings, app):
                yield
        finally:
            await notices.stop()
            await keeper.stop()
            await watcher.stop()

    return lifespan


@asynccontextmanager
async def _rollbacker(settings: RollbackSettings, app: FastAPI) -> AsyncIterator[None]:
    if not settings.rollback_undo_deployments:
        app.state.deployment_rollbacker = None
        yield
        return
    timeout = settings.rollback_kubernetes_timeout_seconds
    rollbacker = DeploymentRollbacker(
        kubernetes_client(settings.rollback_service_account_dir, timeout_seconds=timeout),
        deadline_seconds=undo_deadline_seconds(timeout),
    )
    app.state.deployment_rollbacker = rollbacker
    try:
        yield
    finally:
        await rollbacker.aclose()


def create_app(
    settings: RollbackSettings | None = None, *, registry: CollectorRegistry | None = None
) -> FastAPI:
    """Build the app; settings default to the environment.

    With ROLLBACK_UNDO_DEPLOYMENTS on, start-up reads the pod's ServiceAccount
    (ROLLBACK_SERVICE_ACCOUNT_DIR) and fails without it.
    """
    settings = settings if settings is not None else RollbackSettings.from_env()
    registry = registry if registry is not None else new_registry()
    verifier = webhook.WebhookTokenVerifier(settings.alertmanager_webhook_token)
    app = create_service_app(
        settings=settings,
        title="EnterpriseHub rollback-handler",
        routers=[webhook.router],
        feature_health=ROLLBACK_FEATURE_HEALTH,
        registry=registry,
        edge_verifier=verifier,
        lifespan=_lifespan(settings),
        max_body_bytes=settings.rollback_max_body_bytes,
        max_body_setting="ROLLBACK_MAX_BODY_BYTES",
    )
    app.state.webhook_verifier = verifier
    app.state.rollback_metrics = RollbackMetrics(registry)
    return app
