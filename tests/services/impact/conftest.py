"""The impact tests aggregate fixed days (November 2026): retention must keep them."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _events_kept_for_the_fixed_days(monkeypatch: pytest.MonkeyPatch) -> None:
    # `impact aggregate` refuses to restate a day whose events retention may
    # have pruned (RETENTION_EVENT_DAYS); these tests' days are fixed dates.
    monkeypatch.setenv("RETENTION_EVENT_DAYS", "3660")
