"""Event ids: valid UUIDv7, strictly increasing, whatever the clock does."""

from __future__ import annotations

import uuid

from services.realtime.event_ids import EventIdGenerator


class SteppedClock:
    """A clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_ids_are_version_7_and_carry_the_time_in_milliseconds() -> None:
    clock = SteppedClock(1_764_000_000.123456)
    event_id = uuid.UUID(EventIdGenerator(clock)())
    assert event_id.version == 7
    assert event_id.variant == uuid.RFC_4122
    assert event_id.int >> 80 == 1_764_000_000_123


def test_ids_increase_within_a_millisecond_and_across_them() -> None:
    clock = SteppedClock(1_764_000_000.0)
    make = EventIdGenerator(clock)
    ids = []
    for step in range(3):
        clock.now = 1_764_000_000.0 + step / 1000
        ids += [make() for _ in range(500)]
    # As strings (what Postgres receives) and as UUIDs (how it orders them).
    assert ids == sorted(ids)
    assert [uuid.UUID(i) for i in ids] == sorted(uuid.UUID(i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_ids_keep_increasing_when_the_clock_goes_back_or_a_millisecond_overflows() -> None:
    clock = SteppedClock(1_764_000_000.5)
    make = EventIdGenerator(clock)
    ids = [make() for _ in range(5000)]  # more than the 4,096 a millisecond holds
    clock.now -= 2.0  # NTP stepped the clock back
    ids += [make() for _ in range(10)]
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)


def test_separate_generators_do_not_collide() -> None:
    clock = SteppedClock(1_764_000_000.0)
    first, second = EventIdGenerator(clock), EventIdGenerator(clock)
    made = {first() for _ in range(1000)} | {second() for _ in range(1000)}
    assert len(made) == 2000
