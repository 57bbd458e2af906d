"""Flags inside a FastAPI app: the lifespan part and ``require_feature``.

``serve_flags(app)`` (entered by ``create_app``'s lifespan, after Postgres and
Redis are opened) builds the app's ``FlagCache``, its exposure writer and its
OpenFeature provider (registered under a domain of its own: the service's
name and the app instance), runs them in the background and stops them on
shutdown. Routes then use:

- ``require_feature("property_vision")``: a dependency (``dependencies=[...]``
  or ``Annotated[Principal, require_feature(...)]``) that authenticates the
  caller and answers 403 ``{detail, reason: "feature_disabled"}`` when the
  caller's tenant is outside the rollout;
- ``FlagsDep`` (the ``FlagCache``) or ``FlagClientDep`` (the OpenFeature
  client) for decisions inside a handler.

Code outside a request (a worker, a scheduled pass) takes the app's client
(``app.state.flag_client``) and decides with ``evaluate_feature``; a process
without an app (a benchmark's child, a test) gets one over its own cache
from ``openfeature_client``.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI
from openfeature import api as openfeature_api
from openfeature.client import OpenFeatureClient
from openfeature.evaluation_context import EvaluationContext
from openfeature.flag_evaluation import FlagEvaluationDetails
from openfeature.provider.no_op_provider import NoOpProvider
from prometheus_client import CollectorRegistry
from starlette.requests import HTTPConnection

from services.common.auth import AuthError, Principal, require_principal, require_scope
from services.common.errors import ApiError
from services.common.flags.cache import FlagCache
from services.common.flags.exposure import ExposureRecorder
from services.common.flags.model import check_feature
from services.common.flags.provider import DecisionMetricsHook, EnterpriseHubProvider


class FeatureDisabled(ApiError):  # noqa: N818 - reads as the condition it names
    """403 ``{detail, reason: "feature_disabled"}`` for a tenant outside a feature's rollout."""

    def __init__(self, feature: str) -> None:
        super().__init__(
            403, f"feature {feature!r} is not enabled for this tenant", reason="feature_disabled"
        )


@asynccontextmanager
async def serve_flags(app: FastAPI, *, refresh_interval: float = 30.0) -> AsyncIterator[FlagCache]:
    """Run the app's flag cache, exposure writer and OpenFeature provider.

    Needs ``app.state.redis``; first exposures are written only when the app
    also has Postgres (``app.state.db``).
    """
    db = getattr(app.state, "db", None)
    recorder = ExposureRecorder(db, registry=app.state.registry) if db is not None else None
    cache = FlagCache(
        app.state.redis,
        registry=app.state.registry,
        refresh_interval=refresh_interval,
        exposure=recorder.record if recorder is not None else None,
    )
    app.state.flags = cache
    async with contextlib.AsyncExitStack() as stack:
        if recorder is not None:
            await stack.enter_async_context(recorder.running())
        await stack.enter_async_context(cache.running())
        app.state.flag_client = stack.enter_context(
            openfeature_client(cache, registry=app.state.registry, name=app.state.service)
        )
        yield cache


@contextmanager
def openfeature_client(
    cache: FlagCache, *, registry: CollectorRegistry, name: str
) -> Iterator[OpenFeatureClient]:
    """An OpenFeature client over ``cache``: our provider, with the metrics hook on ``registry``.

    The provider is registered under a domain of its own (``name`` and a random
    suffix) and replaced by a no-op provider on exit: OpenFeature's registry is
    process-wide, so two replicas of one service in a process (tests) must not
    unregister each other.
    """
    domain = f"{name}#{uuid.uuid4().hex[:12]}"
    provider = EnterpriseHubProvider(cache, hooks=[DecisionMetricsHook(registry)])
    openfeature_api.set_provider(provider, domain=domain)
    try:
        yield openfeature_api.get_client(domain=domain)
    finally:
        with contextlib.suppress(Exception):
            openfeature_api.set_provider(NoOpProvider(), domain=domain)


def evaluate_feature(
    client: OpenFeatureClient, feature: str, tenant_id: str
) -> FlagEvaluationDetails[bool]:
    """``feature``'s decision for ``tenant_id`` (the targeting key) through ``client``.

    The one way the services ask OpenFeature: the provider's reasons and every
    registered hook (API, client, provider: ``DecisionMetricsHook``) see the
    decision, and another provider could replace ours without touching a
    caller. An error (no known state, provider not ready) is the default, off.
    """
    return client.get_boolean_details(feature, False, EvaluationContext(targeting_key=tenant_id))


class FeatureDisabledHandshakeError(AuthError):
    """A WebSocket handshake refused with 403 ``feature_disabled`` (``deny_websocket``)."""

    status_code = 403

    def __init__(self, feature: str) -> None:
        super().__init__("feature_disabled", f"feature {feature!r} is not enabled for this tenant")

    def headers(self) -> dict[str, str]:
        """No authentication challenge: the token was fine."""
        return {}


def get_flag_cache(conn: HTTPConnection) -> FlagCache:
    """The app's flag cache (an app without Redis has none: a programming error)."""
    cache: FlagCache | None = getattr(conn.app.state, "flags", None)
    if cache is None:
        raise RuntimeError("feature flags need Redis: declare Need.REDIS in create_app(needs=...)")
    return cache


def get_flag_client(conn: HTTPConnection) -> OpenFeatureClient:
    """The app's OpenFeature client (its own domain, see ``serve_flags``)."""
    client: OpenFeatureClient = conn.app.state.flag_client
    return client


def decide_feature(
    conn: HTTPConnection, feature: str, tenant_id: str
) -> FlagEvaluationDetails[bool]:
    """The app's decision for ``tenant_id`` through its OpenFeature client."""
    get_flag_cache(conn)  # an app without flags is a programming error, not a refusal
    return evaluate_feature(get_flag_client(conn), feature, tenant_id)


FlagsDep = Annotated[FlagCache, Depends(get_flag_cache)]
FlagClientDep = Annotated[OpenFeatureClient, Depends(get_flag_client)]


def require_feature(feature: str) -> Any:
    """A dependency: the caller's ``Principal`` if its tenant has ``feature``, else 403.

    Authentication comes first (401 before 403), so an anonymous caller learns
    nothing about rollouts. The decision goes through OpenFeature
    (``decide_feature``). Raises ``InvalidFlag`` at import time for a name that is not a feature, so
    a typo fails at start-up, not per request.
    """
    check_feature(feature)

    async def feature_enabled(
        conn: HTTPConnection, principal: Annotated[Principal, Depends(require_principal)]
    ) -> Principal:
        if not decide_feature(conn, feature, principal.tenant_id).value:
            raise FeatureDisabled(feature)
        return principal

    return Depends(feature_enabled)


def require_scope_and_feature(scope: str, feature: str) -> list[Any]:
    """A router's ``dependencies``: a token with ``scope``, then the tenant's ``feature``.

    In this order, and before any handler reads a body: 401 for a missing or
    invalid token, 403 ``insufficient_scope`` for a token without ``scope`` (a
    feed reader's token learns nothing about the feature's rollout), then 403
    ``feature_disabled`` for a tenant outside it. Handlers take their principal
    from the scope's dependency (``VisionPrincipalDep``, ...): checking the
    token again is a lookup in the verifier's cache of verified tokens.
    """
    return [Depends(require_scope(scope)), require_feature(feature)]
