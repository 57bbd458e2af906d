"""Event ids: UUIDv7 (RFC 9562), time-ordered and strictly increasing per process.

Why not random (v4) ids:

- The outbox relay publishes a tenant's unpublished events ordered by
  ``(created_at, event_id)``. The events of one batch request share
  ``created_at`` (they were accepted together), so only increasing ids keep
  them in the order the CRM sent them when they are relayed after a Redis
  outage, as the live path does.
- Random ids put every insert at a random place of the primary-key index;
  time-ordered ids append at its right edge, where the pages are in memory.

Layout (RFC 9562, section 5.7, with the "fixed-length dedicated counter"
of section 6.2): 48 bits of Unix time in milliseconds, the version (7), a
12-bit counter that orders ids made within the same millisecond, the
variant, and 62 random bits that keep ids of different processes apart.
Ids are ordered within a process only; across replicas, by millisecond.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable

_COUNTER_MAX = 0xFFF


class EventIdGenerator:
    """Makes UUIDv7 strings, each greater than the one before.

    Not thread-safe: the ingest makes ids on its event loop only. If the
    clock goes backwards, or more than 4,096 ids are made in one
    millisecond, ids keep increasing by running ahead of the clock.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._last_ms = -1
        self._counter = 0

    def __call__(self) -> str:
        """The next id, as the canonical lowercase string."""
        now_ms = int(self._clock() * 1000)
        if now_ms > self._last_ms:
            self._last_ms = now_ms
            self._counter = 0
        elif self._counter < _COUNTER_MAX:
            self._counter += 1
        else:
            self._last_ms += 1
            self._counter = 0
        value = (
            (self._last_ms & 0xFFFF_FFFF_FFFF) << 80
            | 0x7 << 76
            | self._counter << 64
            | 0b10 << 62
            | secrets.randbits(62)
        )
        return str(uuid.UUID(int=value))


new_event_id = EventIdGenerator()
"""The process's generator of event ids."""
