"""``POST /v1/alertmanager/webhook``: Alertmanager's rollback notifications.

The bearer token is checked before a byte of the body is read; the body is
bounded (ROLLBACK_MAX_BODY_BYTES) and validated. Every copy of an incident
answers 200 (Alertmanager retries anything else), but only the first one
changes flags, writes the audit and notifies.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from services.common.deps import DbDep, RedisDep
from services.rollback.alerts import Incident, WebhookNotification, incidents
from services.rollback.config import RollbackSettings
from services.rollback.deps import MetricsDep, SettingsDep
from services.rollback.notify import notify_slack, rollback_message
from services.rollback.procedure import RollbackRequest, mark_resolved, roll_back

log = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/alertmanager", tags=["rollback"])


class WebhookRefused(HTTPException):
    """A 4xx with its own ``reason`` in the body."""

    def __init__(self, status: int, detail: str, reason: str) -> None:
        super().__init__(
            status, detail, headers={"WWW-Authenticate": "Bearer"} if status == 401 else None
        )
        self.reason = reason


def authenticate(request: Request, settings: SettingsDep) -> None:
    """The Alertmanager credential, compared in constant time."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    expected = settings.alertmanager_webhook_token.get_secret_value()
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), expected.encode()):
        raise WebhookRefused(401, "missing or wrong bearer token", "unauthenticated")


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise WebhookRefused(413, f"body over ROLLBACK_MAX_BODY_BYTES={limit}", "too_large")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise WebhookRefused(413, f"body over ROLLBACK_MAX_BODY_BYTES={limit}", "too_large")
        chunks.append(chunk)
    return b"".join(chunks)


async def _handle(
    incident: Incident, *, settings: RollbackSettings, db: Any, redis: Any, metrics: Any
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
    )
    outcome = await roll_back(db=db, redis=redis, request=request)
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
        if outcome.changes:
            await notify_slack(
                settings.slack_webhook_url,
                rollback_message(
                    environment=settings.environment,
                    features=outcome.changed_features,
                    alertname=incident.alertname,
                    reason=request.reason,
                    actor=request.actor,
                ),
            )
    return {
        "incident": incident.key,
        "feature": incident.feature,
        "duplicate": outcome.duplicate,
        "flags_turned_off": outcome.changed_features,
    }


@router.post(
    "/webhook",
    dependencies=[Depends(authenticate)],
    summary="Alertmanager webhook receiver for rollback triggers",
)
async def alertmanager_webhook(
    request: Request,
    settings: SettingsDep,
    db: DbDep,
    redis: RedisDep,
    metrics: MetricsDep,
) -> dict[str, Any]:
    """Turn off the feature each firing rollback alert names, once per incident."""
    body = await _read_body(request, settings.rollback_max_body_bytes)
    try:
        notification = WebhookNotification.model_validate_json(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in first.get("loc", ())) or "(body)"
        raise WebhookRefused(422, f"{field}: {first.get('msg')}", "validation_error") from None
    results = [
        await _handle(incident, settings=settings, db=db, redis=redis, metrics=metrics)
        for incident in incidents(notification)
    ]
    return {"handled": results}
