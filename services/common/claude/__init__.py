"""The shared Claude client: settings, retry policy, limiter, breaker, ledger, metrics.

- ``create_claude(settings, registry=..., db=...)`` builds a ``ClaudeClient``
  (None without ANTHROPIC_API_KEY); a service's lifespan stores it as
  ``app.state.claude`` (``open_claude`` / ``close_claude`` do both steps).
- ``get_claude`` / ``ClaudeDep`` hand it to routes, answering 503
  ``{detail, reason: "claude_not_configured"}`` (saying how to enable it)
  when there is no key.
- ``install_claude_error_handlers(app)`` turns ``ClaudeError`` into answers.
- ``claude_health(app)`` is the part of a feature health report about Claude.

See ``client.py`` for the retry policy, ``ledger.py`` for costs.
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
)
from services.common.claude.config import ClaudeSettings, ModelPrice
from services.common.claude.errors import (
    ClaudeBadOutput,
    ClaudeBusy,
    ClaudeError,
    ClaudeNotConfigured,
    ClaudeTimeout,
    ClaudeUnavailable,
    install_claude_error_handlers,
)
from services.common.claude.ledger import Pricing, Usage
from services.common.claude.metrics import ClaudeMetrics
from services.common.database import Database

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
    "close_claude",
    "create_claude",
    "get_claude",
    "install_claude_error_handlers",
    "open_claude",
]


def create_claude(
    settings: ClaudeSettings,
    *,
    registry: CollectorRegistry,
    db: Database | None = None,
) -> ClaudeClient | None:
    """A ``ClaudeClient`` for ``settings``, or None when ANTHROPIC_API_KEY is unset.

    ``db`` receives the cost ledger's rows; without it costs only reach metrics.
    """
    api = build_anthropic(settings)
    if api is None:
        return None
    return ClaudeClient(api, settings=settings, metrics=ClaudeMetrics(registry), db=db)


def open_claude(app: FastAPI, settings: ClaudeSettings) -> ClaudeClient | None:
    """``create_claude`` with the app's registry and database, stored on ``app.state``."""
    client = create_claude(settings, registry=app.state.registry, db=app.state.db)
    app.state.claude = client
    return client


async def close_claude(app: FastAPI) -> None:
    """Close the client ``open_claude`` stored, if any."""
    client: ClaudeClient | None = getattr(app.state, "claude", None)
    app.state.claude = None
    if client is not None:
        await client.close()


def get_claude(conn: HTTPConnection) -> ClaudeClient:
    """The app's client; 503 ``claude_not_configured`` when there is no key."""
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
