"""Flags inside a FastAPI app: the lifespan part and ``require_feature``.

``serve_flags(app)`` (entered by ``create_app``'s lifespan, after Postgres and
Redis are opened) builds the app's ``FlagCache``, its exposure writer and its
OpenFeature provider (registered under the service's name as the domain),
runs them in the background and stops them on shutdown. Routes then use:

- ``require_feature("property_vision")``: a dependency (``dependencies=[...]``
  or ``Annotated[Principal, require_feature(...)]``) that authenticates the
  caller and answers 403 ``{detail, reason: "feature_disabled"}`` when the
  caller's tenant is outside the rollout;
- ``FlagsDep`` (the ``FlagCache``) or ``FlagClientDep`` (the OpenFeature
  client) for decisions inside a handler.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from openfeature import api as openfeature_api
from openfeature.client import OpenFeatureClient
from openfeature.provider.no_op_provider import NoOpProvider
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection

from services.common.auth import Principal, require_principal
from services.common.flags.cache import FlagCache
from services.common.flags.exposure import ExposureRecorder
from services.common.flags.model import check_feature
from services.common.flags.provider import DecisionMetricsHook, EnterpriseHubProvider


class FeatureDisabled(HTTPException):
    """403 for a tenant outside a feature's rollout; ``reason`` goes in the body."""

    reason = "feature_disabled"

    def __init__(self, feature: str) -> None:
        super().__init__(403, f"feature {feature!r} is not enabled for this tenant")


@asynccontextmanager
async def serve_flags(app: FastAPI, *, refresh_interval: float = 30.0) -> AsyncIterator[FlagCache]:
    """Run the app's flag cache, exposure writer and OpenFeature provider."""
    recorder = ExposureRecorder(app.state.db, registry=app.state.registry)
    cache = FlagCache(
        app.state.redis,
        registry=app.state.registry,
        refresh_interval=refresh_interval,
        exposure=recorder.record,
    )
    domain = str(app.state.service)
    provider = EnterpriseHubProvider(cache, hooks=[DecisionMetricsHook(app.state.registry)])
    app.state.flags = cache
    app.state.flag_client = openfeature_api.get_client(domain=domain)
    async with recorder.running(), cache.running():
        openfeature_api.set_provider(provider, domain=domain)
        try:
            yield cache
        finally:
            with contextlib.suppress(Exception):
                openfeature_api.set_provider(NoOpProvider(), domain=domain)


def get_flag_cache(conn: HTTPConnection) -> FlagCache:
    """The app's flag cache."""
    cache: FlagCache = conn.app.state.flags
    return cache


def get_flag_client(conn: HTTPConnection) -> OpenFeatureClient:
    """The app's OpenFeature client (domain = service name)."""
    client: OpenFeatureClient = conn.app.state.flag_client
    return client


FlagsDep = Annotated[FlagCache, Depends(get_flag_cache)]
FlagClientDep = Annotated[OpenFeatureClient, Depends(get_flag_client)]


def require_feature(feature: str) -> Any:
    """A dependency: the caller's ``Principal`` if its tenant has ``feature``, else 403.

    Authentication comes first (401 before 403), so an anonymous caller learns
    nothing about rollouts. Raises ``InvalidFlag`` at import time for a name
    that is not a feature, so a typo fails at start-up, not per request.
    """
    check_feature(feature)

    async def feature_enabled(
        conn: HTTPConnection, principal: Annotated[Principal, Depends(require_principal)]
    ) -> Principal:
        if not get_flag_cache(conn).evaluate(feature, principal.tenant_id).enabled:
            raise FeatureDisabled(feature)
        return principal

    return Depends(feature_enabled)
