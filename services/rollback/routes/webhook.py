"""``POST /v1/alertmanager/webhook``: Alertmanager's rollback notifications.

The bearer token is checked before a byte of the body is read; the body is
bounded (ROLLBACK_MAX_BODY_BYTES) and validated. Every copy of an incident
answers 200 (Alertmanager retries anything else), but only the first one
changes flags, writes the audit and queues the Slack notice. Every copy then
posts the incident's notices Slack has not taken yet (``services.rollback.notices``):
a retry after a crash between the commit and the post tells people once, and
concurrent copies never post twice. When the stack lets the handler
undo deployments, the rollout of the features it turned off is undone after
the flags are off, once per incident (``procedure.undo_deployments``); a
failure there is recorded and notified and leaves the flags off.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPBearer
from pydantic import SecretStr, ValidationError

from services.common.auth import AuthError
from services.common.body import BODY_ERROR_RESPONSES, read_body, request_body_openapi
from services.common.deps import DbDep, RedisDep
from services.common.errors import ApiError
from services.rollback.alerts import Incident, WebhookNotification, incidents
from services.rollback.config import RollbackSettings
from services.rollback.deployments import DeploymentRollbacker
from services.rollback.deps import MetricsDep, RollbackerDep, SettingsDep
from services.rollback.metrics import RollbackMetrics
from services.rollback.notices import deliver
from services.rollback.notify import notify_slack, undo_message
from services.rollback.procedure import (
    RollbackRequest,
    mark_resolved,
    roll_back,
    undo_deployments,
)

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/alertmanager", tags=["rollback"])

ALERTMANAGER_SCHEME = HTTPBearer(
    scheme_name="alertmanagerBearer",
    description="ALERTMANAGER_WEBHOOK_TOKEN, which Alertmanager sends from its receiver's "
    "http_config.authorization (not a JWT).",
    auto_error=False,
)
"""Declares the webhook's credential in the OpenAPI document; ``authenticate`` checks it."""


class WebhookRefusedError(ApiError):
    """A 4xx with its own ``reason`` in the body."""

    def __init__(self, status: int, detail: str, reason: str) -> None:
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        super().__init__(status, detail, reason=reason, headers=headers)


class WebhookTokenVerifier:
    """Alertmanager's credential (ALERTMANAGER_WEBHOOK_TOKEN), compared in constant time.

    The edge guard calls it before any body is read; the route's dependency
    calls it for every request.
    """

    def __init__(self, expected: SecretStr) -> None:
        self._expected = expected.get_secret_value().encode()

    def verify(self, token: str) -> None:
        """Raise ``AuthError`` unless ``token`` is the configured one."""
        if not hmac.compare_digest(token.strip().encode(), self._expected):
            raise AuthError("unauthenticated", "missing or wrong bearer token")


def authenticate(request: Request) -> None:
    """The ``Authorization: Bearer`` header, checked by the app's webhook verifier."""
    verifier: WebhookTokenVerifier = request.app.state.webhook_verifier
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    try:
        if scheme.lower() != "bearer":
            raise AuthError("unauthenticated", "send Authorization: Bearer <token>")
        verifier.verify(token)
    except AuthError as exc:
        raise WebhookRefusedError(401, exc.detail, exc.reason) from None


async def _tell(
    incident: Incident, *, settings: RollbackSettings, db: Any, metrics: RollbackMetrics
) -> None:
    """Post the incident's queued notices Slack has not taken yet (any copy may)."""
    if settings.slack_webhook_url is not None:
        await deliver(db, settings.slack_webhook_url, metrics, incident_key=incident.key)


async def _undo(
    incident: Incident,
    *,
    settings: RollbackSettings,
    db: Any,
    rollbacker: DeploymentRollbacker,
    metrics: RollbackMetrics,
) -> list[dict[str, Any]] | None:
    """The incident's pending undo, if this copy claims it: outcomes counted, logged, told."""
    outcomes = await undo_deployments(
        db=db,
        key=incident.key,
        rollbacker=rollbacker,
        environment=settings.environment,
        alertname=incident.alertname,
        notify=settings.slack_webhook_url is not None,
    )
    if outcomes is None:
        return None
    for outcome in outcomes:
        label = (
            "rolled_back"
            if outcome.rolled_back
            else "failed"
            if outcome.failed
            else "not_rolled_back"
        )
        metrics.deployment_undos.labels(deployment=outcome.deployment, outcome=label).inc()
        log.warning(
            "undo %s after %s (incident %s)", outcome.describe(), incident.alertname, incident.key
        )
    if settings.slack_webhook_url is None:
        await notify_slack(
            None,
            undo_message(
                environment=settings.environment, alertname=incident.alertname, outcomes=outcomes
            ),
        )
    await _tell(incident, settings=settings, db=db, metrics=metrics)
    return [outcome.as_record() for outcome in outcomes]


async def _handle(
    incident: Incident,
    *,
    settings: RollbackSettings,
    db: Any,
    redis: Any,
    metrics: RollbackMetrics,
    rollbacker: DeploymentRollbacker | None,
) -> dict[str, Any]:
    if not incident.firing:
        resolved = await mark_resolved(db=db, key=incident.key)
        metrics.incidents.labels(feature=incident.feature, outcome="resolved").inc()
        return {"incident": incident.key, "feature": incident.feature, "resolved": resolved}
    request = RollbackRequest(
        key=incident.key,
        source="alertmanager",
        alertname=incident.alertname,
        feature=incident.feature,
        features=incident.features,
        environment=settings.environment,
        actor="alertmanager",
        reason=incident.summary or f"{incident.alertname} fired",
        starts_at=incident.starts_at,
        feature_deployments=settings.rollback_feature_deployments if rollbacker else {},
    )
    outcome = await roll_back(
        db=db, redis=redis, request=request, notify=settings.slack_webhook_url is not None
    )
    if outcome.duplicate:
        metrics.incidents.labels(feature=incident.feature, outcome="duplicate").inc()
    else:
        metrics.incidents.labels(feature=incident.feature, outcome="rolled_back").inc()
        log.warning(
            "rolled back %s after %s (incident %s)",
            ", ".join(outcome.changed_features) or "nothing (already off)",
            incident.alertname,
            incident.key,
        )
        if outcome.message is not None and settings.slack_webhook_url is None:
            await notify_slack(None, outcome.message)
    # A duplicate too: the copy that recorded the incident may have died before posting.
    await _tell(incident, settings=settings, db=db, metrics=metrics)
    result = {
        "incident": incident.key,
        "feature": incident.feature,
        "duplicate": outcome.duplicate,
        "flags_turned_off": outcome.changed_features,
    }
    if rollbacker is not None:
        # Every copy may claim: one that follows a crash between the flag write
        # and the claim picks the pending undo up; otherwise the claim is taken.
        result["deployments_undone"] = await _undo(
            incident, settings=settings, db=db, rollbacker=rollbacker, metrics=metrics
        )
    return result


@router.post(
    "/webhook",
    dependencies=[Depends(ALERTMANAGER_SCHEME), Depends(authenticate)],
    summary="Alertmanager webhook receiver for rollback triggers",
    openapi_extra=request_body_openapi(WebhookNotification),
    responses={
        401: {"description": "Missing or wrong bearer token (`unauthenticated`)."},
        **BODY_ERROR_RESPONSES,
    },
)
async def alertmanager_webhook(
    request: Request,
    settings: SettingsDep,
    db: DbDep,
    redis: RedisDep,
    metrics: MetricsDep,
    rollbacker: RollbackerDep,
) -> dict[str, Any]:
    """Turn off the feature each firing rollback alert names, once per incident."""
    body = await read_body(
        request, limit=settings.rollback_max_body_bytes, setting="ROLLBACK_MAX_BODY_BYTES"
    )
    try:
        notification = WebhookNotification.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or "(body)"
        raise WebhookRefusedError(422, f"{field}: {first.get('msg')}", "validation_error") from None
    results = [
        await _handle(
            incident,
            settings=settings,
            db=db,
            redis=redis,
            metrics=metrics,
            rollbacker=rollbacker,
        )
        for incident in incidents(notification)
    ]
    return {"handled": results}
