"""The shared Claude client: settings, retry policy, limiter, breaker, ledger, metrics.

- ``create_claude(settings, registry=..., db=...)`` builds a ``ClaudeClient``
  (None without ANTHROPIC_API_KEY); the common lifespan stores it as
  ``app.state.claude`` for a service that declares ``Need.CLAUDE``.
- ``get_claude`` / ``ClaudeDep`` hand it to routes, answering 503
  ``{detail, reason: "claude_not_configured"}`` (saying how to enable it)
  when there is no key.
- ``ClaudeError`` and its kinds are ``ApiError``s: the common handler answers them.
- ``claude_health(app)`` is the part of a feature health report about Claude.

See ``client.py`` for the retry policy, ``ledger.py`` for costs and
``estimate.py`` for the upper bound of a call that got no answer.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI
from prometheus_client import CollectorRegistry
from starlette.requests import HTTPConnection

from services.common.claude.client import (
    ENABLE_HINT,
    CallResult,
    ClaudeClient,
    StructuredResult,
    build_anthropic,
    without_nul,
)
from services.common.claude.config import ClaudeSettings, ModelPrice
from services.common.claude.errors import (
    ClaudeBadOutput,
    ClaudeBusy,
    ClaudeError,
    ClaudeNotConfigured,
    ClaudeTimeout,
    ClaudeUnavailable,
)
from services.common.claude.ledger import Pricing, Usage
from services.common.claude.metrics import ClaudeMetrics
from services.common.database import Database
from services.common.metrics import new_registry

__all__ = [
    "CallResult",
    "ClaudeBadOutput",
    "ClaudeBusy",
    "ClaudeClient",
    "ClaudeDep",
    "ClaudeError",
    "ClaudeMetrics",
    "ClaudeNotConfigured",
    "ClaudeSettings",
    "ClaudeTimeout",
    "ClaudeUnavailable",
    "ModelPrice",
    "Pricing",
    "StructuredResult",
    "Usage",
    "claude_health",
    "create_claude",
    "get_claude",
    "without_nul",
]


def create_claude(
    settings: ClaudeSettings,
    *,
    registry: CollectorRegistry | None = None,
    db: Database | None = None,
) -> ClaudeClient | None:
    """A ``ClaudeClient`` for ``settings``, or None when ANTHROPIC_API_KEY is unset.

    ``registry`` receives its metrics (a fresh one by default); ``db`` the
    cost ledger's rows (without it costs only reach metrics). A service that
    declares ``Need.CLAUDE`` gets one on ``app.state.claude`` from the common
    lifespan, with the app's registry and database.
    """
    api = build_anthropic(settings)
    if api is None:
        return None
    metrics = ClaudeMetrics(registry if registry is not None else new_registry())
    return ClaudeClient(api, settings=settings, metrics=metrics, db=db)


async def get_claude(conn: HTTPConnection) -> ClaudeClient:
    """The app's client; 503 ``claude_not_configured`` when there is no key.

    ``async`` although it awaits nothing: FastAPI runs a plain ``def``
    dependency in its thread pool, a thread hop on every request (cache
    hits included) for one attribute read.
    """
    client: ClaudeClient | None = getattr(conn.app.state, "claude", None)
    if client is None:
        raise ClaudeNotConfigured(
            "claude_not_configured",
            f"this feature needs Claude and no API key is configured: {ENABLE_HINT}",
        )
    return client


ClaudeDep = Annotated[ClaudeClient, Depends(get_claude)]


def claude_health(app: FastAPI) -> dict[str, Any]:
    """``{"configured": False, ...}`` without a key, else the circuit state and model."""
    client: ClaudeClient | None = getattr(app.state, "claude", None)
    if client is None:
        return {"configured": False, "hint": ENABLE_HINT}
    return client.health()
