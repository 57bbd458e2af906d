"""Errors of Claude-backed work and the JSON answers they become.

Every failure is a ``ClaudeError`` carrying the HTTP status, a machine
``reason`` and, for 429/503, the seconds a client should wait. Routes raise
them as they are; ``install_claude_error_handlers`` turns them into the
``{detail, reason}`` contract with ``Retry-After``.
"""

from __future__ import annotations

import math

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


class ClaudeError(Exception):
    """A Claude-backed request could not be answered; ``status`` says how."""

    status: int = 502

    def __init__(self, reason: str, detail: str, *, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        """``Retry-After`` in whole seconds (at least 1) when a wait is known."""
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}


class ClaudeNotConfigured(ClaudeError):  # noqa: N818 - reads as the condition
    """No ANTHROPIC_API_KEY: the feature is off, not broken."""

    status = 503


class ClaudeUnavailable(ClaudeError):  # noqa: N818
    """Rate limited for longer than we hold a request, overloaded, circuit open."""

    status = 503


class ClaudeTimeout(ClaudeError):  # noqa: N818
    """The call did not finish in time; it is not retried (it may have been billed)."""

    status = 504


class ClaudeBadOutput(ClaudeError):  # noqa: N818
    """The model's answer failed validation twice (or the API refused the request)."""

    status = 502


class ClaudeBusy(ClaudeError):  # noqa: N818
    """This replica already runs as many analyses as it may (429)."""

    status = 429


async def _claude_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ClaudeError)
    return JSONResponse(
        {"detail": exc.detail, "reason": exc.reason},
        status_code=exc.status,
        headers=exc.headers(),
    )


def install_claude_error_handlers(app: FastAPI) -> None:
    """Answer every ``ClaudeError`` with its status and ``{detail, reason}``."""
    app.add_exception_handler(ClaudeError, _claude_error)
