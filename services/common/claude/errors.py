"""Errors of Claude-backed work.

Every failure is a ``ClaudeError``: an ``ApiError`` (so the common error
handler answers it as ``{detail, reason}``) with the HTTP status of its kind
and, for 429/503, ``Retry-After`` in whole seconds.
"""

from __future__ import annotations

import math

from services.common.errors import ApiError


class ClaudeError(ApiError):
    """A Claude-backed request could not be answered; the class says how."""

    status: int = 502

    def __init__(self, reason: str, detail: str, *, retry_after: float | None = None) -> None:
        headers = (
            None if retry_after is None else {"Retry-After": str(max(1, math.ceil(retry_after)))}
        )
        super().__init__(self.status, detail, reason=reason, headers=headers)
        self.retry_after = retry_after


class ClaudeNotConfigured(ClaudeError):  # noqa: N818 - reads as the condition
    """No ANTHROPIC_API_KEY: the feature is off, not broken (503)."""

    status = 503


class ClaudeUnavailable(ClaudeError):  # noqa: N818
    """Rate limited for longer than we hold a request, overloaded, circuit open (503)."""

    status = 503


class ClaudeTimeout(ClaudeError):  # noqa: N818
    """The call did not finish in time; it is not retried (it may have been billed): 504."""

    status = 504


class ClaudeBadOutput(ClaudeError):  # noqa: N818
    """The model's answer failed validation twice, or the API refused the request (502)."""

    status = 502


class ClaudeBusy(ClaudeError):  # noqa: N818
    """This replica already runs as many analyses as it may (429)."""

    status = 429
