"""Quiet hours in the lead's zone across daylight-saving changes; caps; backoff; stages."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.churn.contact_rules import InvalidTimeZone, QuietHours, cap_allows, zone
from services.churn.crm import parse_retry_after
from services.churn.delivery import DeliveryPolicy
from services.churn.stages import stage_for

QUIET = QuietHours(21, 8)


def test_allowed_hours_send_now() -> None:
    now = datetime(2026, 6, 1, 16, 0, tzinfo=UTC)  # 12:00 in New York (EDT)
    assert QUIET.next_allowed(now, "America/New_York") == now


def test_night_waits_for_eight_local_across_spring_forward() -> None:
    # 22:00 EST on Saturday 2026-03-07; clocks jump 02:00 -> 03:00 on the 8th.
    now = datetime(2026, 3, 8, 3, 0, tzinfo=UTC)
    allowed = QUIET.next_allowed(now, "America/New_York")
    # 08:00 EDT (UTC-4) on the 8th, not 08:00 EST (which would be 13:00 UTC).
    assert allowed == datetime(2026, 3, 8, 12, 0, tzinfo=UTC)
    assert allowed.astimezone(zone("America/New_York")).hour == 8


def test_night_waits_for_eight_local_across_fall_back() -> None:
    # 23:30 EDT on Saturday 2026-10-31; clocks fall back 02:00 -> 01:00 on Nov 1st.
    now = datetime(2026, 11, 1, 3, 30, tzinfo=UTC)
    allowed = QUIET.next_allowed(now, "America/New_York")
    assert allowed == datetime(2026, 11, 1, 13, 0, tzinfo=UTC)  # 08:00 EST (UTC-5)


def test_early_morning_waits_the_same_day() -> None:
    now = datetime(2026, 7, 1, 20, 0, tzinfo=UTC)  # 05:00 in Tokyo
    assert QUIET.next_allowed(now, "Asia/Tokyo") == datetime(2026, 7, 1, 23, 0, tzinfo=UTC)


def test_quiet_hours_that_do_not_wrap_midnight() -> None:
    hours = QuietHours(0, 7)
    assert hours.next_allowed(datetime(2026, 1, 5, 3, 0, tzinfo=UTC), "UTC") == datetime(
        2026, 1, 5, 7, 0, tzinfo=UTC
    )
    assert hours.next_allowed(datetime(2026, 1, 5, 9, 0, tzinfo=UTC), "UTC").hour == 9


def test_end_inside_a_dst_gap_lands_on_a_real_instant() -> None:
    hours = QuietHours(23, 2)  # 02:00 does not exist in New York on 2026-03-08
    now = datetime(2026, 3, 8, 5, 30, tzinfo=UTC)  # 00:30 EST
    allowed = hours.next_allowed(now, "America/New_York")
    assert allowed == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)  # 03:00 EDT, just after the gap
    assert not hours.is_quiet(allowed.astimezone(zone("America/New_York")))


@pytest.mark.parametrize(
    ("quiet", "zone_name", "now", "allowed"),
    [
        # Troll falls back from 03:00 +02 to 01:00 +00: 02:00 comes twice.
        (
            QuietHours(1, 2),
            "Antarctica/Troll",
            datetime(2026, 10, 25, 1, 0, tzinfo=UTC),
            datetime(2026, 10, 25, 2, 0, tzinfo=UTC),
        ),
        # Chatham falls back from 03:45 +13:45 to 02:45 +12:45: 03:00 comes twice.
        (
            QuietHours(2, 3),
            "Pacific/Chatham",
            datetime(2026, 4, 4, 14, 0, tzinfo=UTC),
            datetime(2026, 4, 4, 14, 15, tzinfo=UTC),
        ),
    ],
    ids=["troll", "chatham"],
)
def test_an_end_that_comes_twice_is_waited_for_the_second_time(
    quiet: QuietHours, zone_name: str, now: datetime, allowed: datetime
) -> None:
    # In the repeated hour after a fall-back, the end's first occurrence is
    # past: it was taken as "allowed now", and a message went out at night.
    assert quiet.is_quiet(now.astimezone(zone(zone_name)))
    assert quiet.next_allowed(now, zone_name) == allowed


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../etc/passwd", "/etc/localtime", "x" * 80])
def test_unknown_zones_are_refused(name: str) -> None:
    with pytest.raises(InvalidTimeZone):
        zone(name)


@pytest.mark.parametrize(
    "name", ["localtime", "Factory", "posixrules", "right/UTC", "posix/Europe/Paris", "UTC\n"]
)
def test_database_files_that_are_no_place_are_refused(name: str) -> None:
    """Each opened as a zone: "localtime" put a lead's quiet hours in the server's
    zone, "right/" counts leap seconds (its clock is 27 s off)."""
    with pytest.raises(InvalidTimeZone):
        zone(name)


@pytest.mark.parametrize("name", ["UTC", "Etc/GMT+5", "America/Argentina/Buenos_Aires", "EST5EDT"])
def test_iana_names_are_zones(name: str) -> None:
    assert zone(name).key == name


def test_caps() -> None:
    assert cap_allows(0, 0, per_day=1, per_week=3)
    assert not cap_allows(1, 1, per_day=1, per_week=3)
    assert not cap_allows(0, 3, per_day=1, per_week=3)


def test_backoff_doubles_is_capped_and_honours_retry_after() -> None:
    policy = DeliveryPolicy(
        retry_count=3,
        retry_base_seconds=2,
        retry_max_seconds=30,
        quiet_hours=QUIET,
        max_per_day=1,
        max_per_week=3,
        send_timeout_seconds=10,
    )
    assert [policy.backoff(n, None) for n in (1, 2, 3, 6)] == [2, 4, 8, 30]
    assert policy.backoff(1, 12.0) == 12.0
    assert policy.backoff(1, 3600.0) == 30


def test_retry_after_forms() -> None:
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30
    assert parse_retry_after("soon") is None
    assert parse_retry_after("999999") == 3600


def test_stages_follow_the_thresholds() -> None:
    assert stage_for(0.1) is None
    assert [stage_for(p).name for p in (0.3, 0.5, 0.7, 0.85, 1.0)] == [  # type: ignore[union-attr]
        "watch",
        "nudge",
        "intervene",
        "escalate",
        "escalate",
    ]
