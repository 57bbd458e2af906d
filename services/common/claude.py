"""The shared Claude client: one ``AsyncAnthropic`` per process, from settings.

``create_claude(settings)`` builds it from ANTHROPIC_API_KEY,
ANTHROPIC_BASE_URL, ANTHROPIC_TIMEOUT_SECONDS and ANTHROPIC_MAX_RETRIES, or
returns ``None`` when no key is set: Claude features are then off, and a route
that needs the client (``ClaudeDep``) answers 503 with
``reason: "claude_not_configured"`` and how to turn them on, instead of failing
deep inside a request. A service that declares ``Need.CLAUDE`` gets the client
on ``app.state.claude``, opened and closed by ``create_app``'s lifespan.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends
from starlette.requests import HTTPConnection

from services.common.errors import ApiError
from services.common.settings import ClaudeSettings

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic

__all__ = ["ClaudeDep", "ClaudeNotConfigured", "create_claude", "get_claude"]

NOT_CONFIGURED_DETAIL = (
    "Claude is not configured on this service: set ANTHROPIC_API_KEY "
    "(the anthropicApiKey secret of the stack) and restart it"
)


class ClaudeNotConfigured(ApiError):  # noqa: N818 - reads as the condition it names
    """503 ``{detail, reason: "claude_not_configured"}``: no ANTHROPIC_API_KEY."""

    def __init__(self) -> None:
        super().__init__(503, NOT_CONFIGURED_DETAIL, reason="claude_not_configured")


def create_claude(settings: ClaudeSettings) -> AsyncAnthropic | None:
    """The client for ``settings``, or ``None`` when ANTHROPIC_API_KEY is unset."""
    if settings.anthropic_api_key is None:
        return None
    # Imported here: the SDK takes seconds to import, which services that
    # never talk to Claude should not pay at start-up.
    from anthropic import AsyncAnthropic

    return AsyncAnthropic(
        api_key=settings.anthropic_api_key.get_secret_value(),
        base_url=settings.anthropic_base_url,
        timeout=settings.anthropic_timeout_seconds,
        max_retries=settings.anthropic_max_retries,
    )


async def get_claude(conn: HTTPConnection) -> AsyncAnthropic:
    """The app's Claude client; raises `ClaudeNotConfigured` (503) when it has none."""
    client: AsyncAnthropic | None = getattr(conn.app.state, "claude", None)
    if client is None:
        raise ClaudeNotConfigured()
    return client


if TYPE_CHECKING:
    ClaudeDep = Annotated[AsyncAnthropic, Depends(get_claude)]
else:  # the same at run time, without importing the SDK for the annotation
    ClaudeDep = Annotated[Any, Depends(get_claude)]
