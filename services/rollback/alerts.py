"""Alertmanager's webhook payload (version 4) and the rollback incidents in it.

Only alerts labelled ``action="rollback"`` with a ``feature`` label that names a
feature (or ``all``) are incidents; everything else in a notification is
ignored, so routing mistakes can never turn a flag off.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from services.common.flags import FEATURES

ALL_FEATURES = "all"

log = logging.getLogger(__name__)


class WebhookAlert(BaseModel):
    """One alert of a notification."""

    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: dict[str, str] = Field(max_length=64)
    annotations: dict[str, str] = Field(default_factory=dict, max_length=64)
    startsAt: datetime  # noqa: N815 - Alertmanager's field name
    endsAt: datetime | None = None  # noqa: N815
    fingerprint: str = Field(min_length=1, max_length=64)


class WebhookNotification(BaseModel):
    """The body Alertmanager POSTs to a webhook receiver."""

    model_config = ConfigDict(extra="ignore")

    version: Literal["4"]
    status: Literal["firing", "resolved"]
    receiver: str = Field(max_length=200)
    groupKey: str = Field(max_length=2000)  # noqa: N815
    alerts: list[WebhookAlert] = Field(max_length=1000)


@dataclass(frozen=True, slots=True)
class Incident:
    """One rollback trigger that fired (or resolved), as the handler acts on it."""

    key: str
    alertname: str
    feature: str
    firing: bool
    starts_at: datetime
    summary: str

    @property
    def features(self) -> tuple[str, ...]:
        """The flags it turns off."""
        return FEATURES if self.feature == ALL_FEATURES else (self.feature,)


def incident_key(fingerprint: str, starts_at: datetime) -> str:
    """Equal for every copy of one incident (retries, repeats, HA peers).

    Alertmanager derives the fingerprint from the alert's labels and keeps the
    start time Prometheus gave; a new incident of the same alert starts later.
    """
    digest = hashlib.sha256(f"{fingerprint}|{starts_at.isoformat()}".encode()).hexdigest()
    return f"alertmanager:{digest[:40]}"


def _storable(text: str, limit: int) -> str:
    # Postgres text cannot hold NUL: kept, one such label or annotation made
    # the whole notification a 422 (unstorable_input), which Alertmanager does
    # not retry, so no trigger of its group turned a flag off.
    return text[:limit].replace("\x00", "\ufffd")


#: asyncpg stores these two as -infinity and infinity, not as the instants they are.
_INFINITIES = (datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))


def _recorded_start(starts_at: datetime) -> datetime:
    """``startsAt`` in UTC (read as UTC without an offset), or now when it is no finite time.

    Alertmanager takes any startsAt from whoever posts an alert. One whose
    offset moves it past year 1 or 9999 in UTC cannot be stored, and the 422
    refused the whole notification, which Alertmanager does not retry: no
    trigger of its group turned a flag off. It is only a record (the incident
    key keeps the value as sent), so the time it arrived stands in for it.
    """
    if starts_at.tzinfo is None:
        starts_at = starts_at.replace(tzinfo=UTC)
    try:
        utc = starts_at.astimezone(UTC)
    except OverflowError:
        return datetime.now(UTC)
    return datetime.now(UTC) if utc in _INFINITIES else utc


def incidents(notification: WebhookNotification) -> list[Incident]:
    """The rollback incidents of a notification, in its order."""
    found = []
    for alert in notification.alerts:
        labels = alert.labels
        feature = labels.get("feature", "")
        if labels.get("action") != "rollback":
            continue
        if feature not in FEATURES and feature != ALL_FEATURES:
            # Still never acted on, but said: a rule whose feature label is
            # wrong would otherwise never roll anything back, unnoticed.
            log.warning(
                "ignored a rollback trigger naming no feature: alertname=%r feature=%r",
                labels.get("alertname", "unnamed")[:200],
                feature[:100],
            )
            continue
        found.append(
            Incident(
                key=incident_key(alert.fingerprint, alert.startsAt),
                alertname=_storable(labels.get("alertname", "unnamed"), 200),
                feature=feature,
                firing=alert.status == "firing",
                starts_at=_recorded_start(alert.startsAt),
                summary=_storable(alert.annotations.get("summary", ""), 1000),
            )
        )
    return found
