"""Settings of the dashboards app, read from the environment at start-up."""

from __future__ import annotations

from typing import Annotated, ClassVar

from pydantic import Field, field_validator

from services.common.settings import CommonSettings
from services.impact.config import AssumptionsSettings

DASHBOARDS_PORT = 8501
#: Where the process serves Prometheus's ``/metrics``: a port of its own, since
#: the public Gateway routes every path of the dashboards' hosts to ``DASHBOARDS_PORT``
#: (the catalog's ``DASHBOARDS.metrics_port``; tests/test_contracts.py keeps them equal).
DASHBOARDS_METRICS_PORT = 9102


class DashboardSettings(CommonSettings, AssumptionsSettings):
    """CommonSettings (the JWT keys that verify sign-ins, the application-role
    DATABASE_URL pages query through), where the live feed is, and
    IMPACT_ASSUMPTIONS, which the ROI page prices the features with (the same
    numbers as ``enterprisehub impact report`` and the daily aggregate)."""

    service_name: ClassVar[str] = "dashboards"

    dashboards_feed_url: str = "ws://127.0.0.1:8001/v1/feed"
    """websocket-manager's WS /v1/feed, as the dashboards reach it."""

    dashboards_metrics_port: Annotated[int, Field(ge=1, le=65535)] = DASHBOARDS_METRICS_PORT
    """TCP port of the process's Prometheus metrics (`/metrics`), on the address `serve`
    listens on; never the app's port, which the public Gateway routes whole."""

    @field_validator("dashboards_feed_url")
    @classmethod
    def _ws_url(cls, value: str) -> str:
        if not value.startswith(("ws://", "wss://")):
            raise ValueError("expected ws://HOST:PORT/v1/feed or wss://...")
        return value
