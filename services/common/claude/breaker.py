"""A circuit breaker in front of the Messages API.

Closed: calls pass; ``failures`` consecutive failures (5xx, 529, timeouts,
connection errors) open it. Open: calls fail at once with 503 and the time
left, so an outage costs clients milliseconds instead of timeouts. After the
open period one probe call is let through (half-open): its success closes
the circuit, its failure opens it again. A spend-limit 429 opens it
immediately for a longer period (``trip``): retrying cannot help until
someone raises the limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum


class CircuitState(StrEnum):
    """The breaker's three states (exported as a gauge by ``ClaudeMetrics``)."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitOpen(Exception):  # noqa: N818 - reads as the condition
    """Calls are refused for ``retry_after`` seconds because of ``reason``."""

    def __init__(self, reason: str, retry_after: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class CircuitBreaker:
    """See the module docstring. Not thread-safe: one per event loop."""

    def __init__(
        self,
        *,
        failures: int,
        open_seconds: float,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[CircuitState], None] | None = None,
    ) -> None:
        self._threshold = failures
        self._open_seconds = open_seconds
        self._clock = clock
        self._on_change = on_change
        self._state = CircuitState.CLOSED
        self._consecutive = 0
        self._open_until = 0.0
        self._reason = ""
        self._probe_in_flight = False

    @property
    def state(self) -> CircuitState:
        """The current state (an elapsed open period reads as half-open)."""
        if self._state is CircuitState.OPEN and self._clock() >= self._open_until:
            return CircuitState.HALF_OPEN
        return self._state

    @property
    def reason(self) -> str:
        """Why the circuit last opened ('' when it never did)."""
        return self._reason

    def _set(self, state: CircuitState) -> None:
        if state is not self._state:
            self._state = state
            if self._on_change is not None:
                self._on_change(state)

    def before_call(self) -> bool:
        """Raise ``CircuitOpen`` unless a call may go out now; True when this call
        is the half-open probe (its caller must end it: a record or ``release_probe``)."""
        state = self.state
        if state is CircuitState.CLOSED:
            return False
        if state is CircuitState.OPEN:
            raise CircuitOpen(self._reason, self._open_until - self._clock())
        if self._probe_in_flight:
            raise CircuitOpen(self._reason, 1.0)
        self._probe_in_flight = True
        self._set(CircuitState.HALF_OPEN)
        return True

    def record_success(self) -> None:
        """An answer arrived (any answer that shows the API is up)."""
        self._consecutive = 0
        self._probe_in_flight = False
        self._set(CircuitState.CLOSED)

    def record_failure(self, reason: str) -> None:
        """A failure that suggests the API is down or overloaded."""
        self._consecutive += 1
        was_probe = self._probe_in_flight
        self._probe_in_flight = False
        if was_probe or self._consecutive >= self._threshold:
            self.trip(reason, self._open_seconds)

    def trip(self, reason: str, seconds: float) -> None:
        """Open now for ``seconds`` (at least until any longer opening ends)."""
        self._reason = reason
        self._open_until = max(self._open_until, self._clock() + seconds)
        self._probe_in_flight = False
        self._set(CircuitState.OPEN)

    def release_probe(self) -> None:
        """A probe ended without telling whether the API is up (e.g. a 400)."""
        self._probe_in_flight = False
