"""churn-orchestrator (port 8004): proactive churn prevention.

``create_app()`` builds the app from the environment; ``enterprisehub serve
churn`` runs it. Start-up loads and verifies the churn model at
CHURN_MODEL_URI (failing with the artifact error's message when it is
unusable), builds the LeadConnector client when GHL_API_KEY is set, and
starts the delivery worker and the detection scheduler (runtime.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.churn.config import ChurnSettings
from services.churn.crm import LeadConnectorClient
from services.churn.health import CHURN_FEATURE_HEALTH
from services.churn.metrics import ChurnMetrics
from services.churn.model import ChurnModel
from services.churn.routes import dead_letters, interventions, outcomes, signals
from services.churn.runtime import ChurnRuntime
from services.common.app import Need, ServiceLifespan
from services.common.app import create_app as create_common_app
from services.common.scoring import ModelArtifactError

log = logging.getLogger(__name__)

# Postgres (everything), Redis (the feature-flag cache only: health does not
# require it, see health.py), object storage (the model in S3).
NEEDS = frozenset({Need.POSTGRES, Need.REDIS, Need.STORAGE})


class ModelLoadError(RuntimeError):
    """Start-up could not load the churn model; the message says why."""


def _load_model(settings: ChurnSettings, s3: Any | None) -> ChurnModel:
    try:
        return ChurnModel.load(settings.churn_model_uri, s3=s3)
    except ModelArtifactError as exc:
        raise ModelLoadError(
            f"churn-orchestrator cannot start: CHURN_MODEL_URI={settings.churn_model_uri!r} "
            f"is unusable: {exc}; train one with `enterprisehub churn train`"
        ) from exc


def build_crm(settings: ChurnSettings) -> LeadConnectorClient | None:
    """The LeadConnector client, or None without GHL_API_KEY (sends recorded as not sent)."""
    if settings.ghl_api_key is None:
        return None
    return LeadConnectorClient(
        api_key=settings.ghl_api_key.get_secret_value(),
        base_url=settings.ghl_base_url,
        timeout=settings.ghl_timeout_seconds,
        # A keep-alive connection for each delivery job the worker runs at once.
        connections=settings.churn_worker_concurrency,
    )


def _lifespan(settings: ChurnSettings) -> ServiceLifespan:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        storage = getattr(app.state, "storage", None)
        model = await asyncio.to_thread(
            _load_model, settings, None if storage is None else storage.client
        )
        crm = build_crm(settings)
        if crm is None:
            log.warning("GHL_API_KEY is not set: interventions are recorded as not sent")
        runtime = ChurnRuntime(
            settings=settings,
            db=app.state.db,
            model=model,
            metrics=ChurnMetrics(app.state.registry),
            crm=crm,
            flags=app.state.flags,
            flag_client=app.state.flag_client,
        )
        await runtime.start(
            worker=settings.churn_worker_enabled, scheduler=settings.churn_scheduler_enabled
        )
        app.state.churn = runtime
        log.info("churn model %s loaded from %s", model.version, model.uri)
        try:
            yield
        finally:
            del app.state.churn
            await runtime.stop()

    return lifespan


def create_app(
    settings: ChurnSettings | None = None, *, registry: CollectorRegistry | None = None
) -> FastAPI:
    """Build churn-orchestrator; settings default to the environment."""
    settings = settings if settings is not None else ChurnSettings.from_env()
    return create_common_app(
        settings=settings,
        title="EnterpriseHub churn-orchestrator",
        routers=[signals.router, outcomes.router, interventions.router, dead_letters.router],
        feature_health=CHURN_FEATURE_HEALTH,
        lifespan=_lifespan(settings),
        registry=registry,
        needs=NEEDS,
        max_body_bytes=settings.churn_max_body_bytes,
        max_body_setting="CHURN_MAX_BODY_BYTES",
    )
