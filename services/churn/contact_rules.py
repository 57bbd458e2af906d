"""When a lead may be contacted: quiet hours in the lead's own time zone, frequency caps.

Quiet hours are wall-clock hours in the lead's IANA zone (``zoneinfo``), so
"not before 08:00" means 08:00 where the lead is, on both sides of a
daylight-saving change: the next allowed instant is computed on the local
calendar and converted back to UTC with the zone's rules for that date, never
by adding a fixed offset. Tasks for the agent are not contacts and ignore
both rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class InvalidTimeZone(ValueError):  # noqa: N818 - reads as the condition it names
    """Not an IANA time zone name known to this system."""


#: Files of the system's zone database that are not a place's zone: "localtime"
#: is the server's own zone, "Factory" a placeholder whose abbreviation is "-00",
#: "posixrules" a template, "posix/" and "right/" copies of the database (the
#: latter counting leap seconds). ``ZoneInfo`` opens all of them.
_NOT_A_PLACE: Final = re.compile(r"localtime|Factory|posixrules|(?:posix|right)/.*")
_IANA_NAME: Final = re.compile(r"[A-Za-z][A-Za-z0-9_+-]*(?:/[A-Za-z0-9_+-]+)*")


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """The ``ZoneInfo`` for an IANA name; ``InvalidTimeZone`` if unknown or malformed."""
    if len(name) > 64 or not _IANA_NAME.fullmatch(name) or _NOT_A_PLACE.fullmatch(name):
        raise InvalidTimeZone(f"unknown time zone {name[:64]!r}; use an IANA name")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidTimeZone(f"unknown time zone {name!r}; use an IANA name") from None


@dataclass(frozen=True, slots=True)
class QuietHours:
    """Local hours [start, end) in which no lead is contacted; may wrap midnight."""

    start: int
    end: int

    def is_quiet(self, local: datetime) -> bool:
        """Whether the local wall-clock time falls in the quiet hours."""
        hour = local.hour
        if self.start < self.end:
            return self.start <= hour < self.end
        return hour >= self.start or hour < self.end

    def next_allowed(self, now: datetime, timezone: str) -> datetime:
        """``now`` if contact is allowed now, else the end of the quiet hours (UTC).

        The end is the first instant at local ``end:00`` after ``now``; if the
        zone skips that wall time (a spring-forward gap), ``zoneinfo``'s
        ``fold=0`` reading lands just after the gap, which is still allowed; if
        it comes twice (a fall-back) and ``now`` is in the repeat, the second.
        """
        tz = zone(timezone)
        local = now.astimezone(tz)
        if not self.is_quiet(local):
            return now
        day = local.date()
        if local.hour >= self.end and self.start > self.end:
            day = day + timedelta(days=1)
        candidate = datetime(day.year, day.month, day.day, self.end, tzinfo=tz)
        # Normalise through UTC so a nonexistent local time resolves to a real instant.
        resolved = candidate.astimezone(UTC)
        if resolved <= now:
            # Still quiet after the end's wall time: it comes twice (a fall-back
            # repeats it) and this is the repeat, so the second one is the end.
            resolved = candidate.replace(fold=1).astimezone(UTC)
        return max(resolved, now)


def cap_allows(sent_last_day: int, sent_last_week: int, *, per_day: int, per_week: int) -> bool:
    """Whether one more message keeps the lead within both caps."""
    return sent_last_day < per_day and sent_last_week < per_week
