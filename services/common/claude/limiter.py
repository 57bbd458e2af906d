"""Client-side request pacing fed by Anthropic's ``anthropic-ratelimit-*`` headers.

Anthropic limits requests with a token bucket and reports it on every answer:
``anthropic-ratelimit-requests-limit`` (bucket size),
``-requests-remaining`` and ``-requests-reset`` (RFC 3339 time at which the
bucket is full again). The limiter mirrors that bucket locally: it refills at
the rate the headers imply, takes one token per request sent, and makes a
request wait for the next token instead of sending it to be refused. A wait
longer than the caller allows raises ``RateLimited`` with the wait, which the
client turns into a 503 with ``Retry-After``.

Until the first answer arrives nothing is known, and requests pass.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from datetime import datetime

PREFIX = "anthropic-ratelimit-requests-"


class RateLimited(Exception):  # noqa: N818 - reads as the condition
    """The next request slot is further away than the caller may wait."""

    def __init__(self, wait_seconds: float) -> None:
        super().__init__(f"next request slot in {wait_seconds:.1f} s")
        self.wait_seconds = wait_seconds


def _parse_reset(value: str | None, now_wall: float) -> float | None:
    """Seconds from now until the RFC 3339 ``value``; None when absent or malformed."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - now_wall)


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        return None
    return number if number >= 0 else None


class RateLimiter:
    """A local copy of the server's request bucket (see the module docstring)."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._wall = wall_clock
        self._limit: float | None = None
        self._rate = 0.0  # tokens per second
        self._tokens = 0.0
        self._stamp = clock()
        self._in_flight = 0

    @property
    def known(self) -> bool:
        """Whether any answer has told us the limit yet."""
        return self._limit is not None

    def _refill(self) -> None:
        now = self._clock()
        if self._limit is not None:
            self._tokens = min(self._limit, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now

    def reserve(self, *, max_wait: float) -> float:
        """Take a slot; return the seconds to wait before sending (0 for now).

        Raises ``RateLimited`` when the wait would exceed ``max_wait``; then
        nothing is taken.
        """
        self._refill()
        if self._limit is None:
            self._in_flight += 1
            return 0.0
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            self._in_flight += 1
            return 0.0
        if self._rate <= 0:
            raise RateLimited(max_wait + 1.0)
        wait = (1.0 - self._tokens) / self._rate
        if wait > max_wait:
            raise RateLimited(wait)
        # The token is spent now (the balance goes negative), so requests that
        # arrive meanwhile queue behind this one instead of racing for it.
        self._tokens -= 1.0
        self._in_flight += 1
        return wait

    async def acquire(self, *, max_wait: float) -> None:
        """``reserve`` and sleep for the returned wait."""
        wait = self.reserve(max_wait=max_wait)
        if wait > 0:
            await asyncio.sleep(wait)

    def release(self, headers: Mapping[str, str] | None) -> None:
        """A request sent through ``acquire`` has been answered (``headers`` may be None)."""
        self._in_flight = max(0, self._in_flight - 1)
        if headers is not None:
            self.update(headers)

    def update(self, headers: Mapping[str, str]) -> None:
        """Adopt the server's view of the bucket from an answer's headers."""
        limit = _int(headers.get(PREFIX + "limit"))
        remaining = _int(headers.get(PREFIX + "remaining"))
        if limit is None or remaining is None or limit == 0:
            return
        self._refill()
        reset_in = _parse_reset(headers.get(PREFIX + "reset"), self._wall())
        missing = limit - remaining
        if missing > 0 and reset_in:
            self._rate = missing / reset_in
        elif self._rate == 0:
            # Full bucket and no better clue: Anthropic's limits are per minute.
            self._rate = limit / 60.0
        self._limit = float(limit)
        # Requests in flight (sent or waiting to be sent) are not in the
        # server's count yet, or were counted after it: assume the worst.
        self._tokens = float(remaining - self._in_flight)
