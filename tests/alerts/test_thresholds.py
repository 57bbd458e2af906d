"""The promtool tests pin each threshold and ``for:`` duration (mutation tests).

A test that fires on an incident far above the threshold and stays quiet far
below it passes for any threshold in between: a rollback trigger at half the
seed's latency, or one that waits twice as long, would still be green. Here
each pinned alert's threshold is halved and doubled, and its ``for:`` halved
and doubled, one change at a time, in a copy of the rule files; the promtool
tests with a case for the alert must then fail. The SLO burn-rate alerts are
pinned where their numbers live, in the generator (``alerts/slo.py``
``BURN_ALERTS``): each burn rate and ``for:`` is changed there and the rules
re-rendered.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from alerts import RULES_DIR, SLO_SPEC, TESTS_DIR, slo
from alerts.catalog import load_rule_file
from alerts.scale import seconds

PROMTOOL = shutil.which("promtool")
pytestmark = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (make setup)")

#: The seed's rollback triggers (rollback_config.yml) and performance alerts
#: (phase3_alerts.yml) whose numbers are requirements, by rule file.
PINNED: dict[str, tuple[str, ...]] = {
    "rollback.yml": (
        "RealtimeLatencyRollback",
        "LeadScoringLatencyRollback",
        "WebSocketConnectionFailuresRollback",
        "PlatformErrorRateRollback",
    ),
    "features.yml": ("VisionLatencyRollback", "ChurnInterventionLatencyHigh"),
    "performance.yml": (
        "WebSocketLatencyHigh",
        "MLInferenceSlowdown",
        "ErrorRateSpiking",
        "FeatureUsageDrop",
    ),
}
#: Alerts whose numbers are the project's own (not the seed's), by rule file, with
#: what is pinned: every alert's ``for:``, and its threshold unless it has none
#: (``absent()``) or it is a state (``== 1``: halved or doubled it never matches).
PROJECT_PINNED: dict[str, dict[str, tuple[str, ...]]] = {
    "connections.yml": {"WebSocketAuthFailuresHigh": ("threshold", "for")},
    "features.yml": {
        "VisionAnalysisSlow": ("threshold", "for"),
        "CoachingAnalysisSlow": ("threshold", "for"),
        "ClaudeCircuitOpen": ("for",),
    },
    "business.yml": {"ConversionRateDrop": ("threshold", "for")},
    "presence.yml": {
        "ServiceNotScraped": ("for",),
        "FeatureFlagsStale": ("for",),
        "FeatureFlagsMissing": ("for",),
        "TokenRevocationsStale": ("threshold", "for"),
    },
    "rollback.yml": {
        "RollbackNoticesUnsent": ("threshold", "for"),
        "RollbackHandlerDown": ("for",),
    },
    "dashboards.yml": {"DashboardsDown": ("for",)},
}
#: The first comparison with a number is the alert's threshold.
THRESHOLD = re.compile(r"(?:>=|<=|==|>|<)\s*\(?\s*(\d+(?:\.\d+)?)")


def _pinned() -> dict[str, dict[str, tuple[str, ...]]]:
    """File -> alert -> what is pinned, the seed's alerts and the project's."""
    both: tuple[str, ...] = ("threshold", "for")
    pinned = {file: dict.fromkeys(alerts, both) for file, alerts in PINNED.items()}
    for file, alerts in PROJECT_PINNED.items():
        pinned.setdefault(file, {}).update(alerts)
    return pinned


def _mutations() -> list[tuple[str, str, str, str, str]]:
    """(file, alert, what changed, key, new value) of every mutation."""
    found = []
    for file, alerts in _pinned().items():
        for group in load_rule_file(RULES_DIR / file)["groups"]:
            for rule in group["rules"]:
                what = alerts.get(rule.get("alert", ""), ())
                if not what:
                    continue
                match = THRESHOLD.search(rule["expr"])
                for factor in (0.5, 2.0):
                    if "threshold" in what:
                        assert match is not None, rule["alert"]
                        value = float(match.group(1))
                        expr = rule["expr"][: match.start(1)] + repr(value * factor)
                        expr += rule["expr"][match.end(1) :]
                        found.append((file, rule["alert"], f"threshold x{factor}", "expr", expr))
                    if "for" in what:
                        duration = f"{round(seconds(rule['for']) * factor)}s"
                        found.append((file, rule["alert"], f"for x{factor}", "for", duration))
    return found


def _tests_checking(alert: str) -> list[str]:
    """The promtool test files with a case for ``alert`` (only they can notice a change)."""
    return sorted(
        path.name
        for path in TESTS_DIR.glob("*_test.yml")
        if any(
            case["alertname"] == alert
            for test in yaml.safe_load(path.read_text())["tests"]
            for case in test.get("alert_rule_test", [])
        )
    )


def test_every_pinned_alert_exists() -> None:
    named = {alert for _, alert, _, _, _ in _mutations()}
    assert named == {alert for alerts in _pinned().values() for alert in alerts}


@pytest.mark.parametrize(
    ("file", "alert", "change", "key", "value"), _mutations(), ids=lambda v: str(v)[:40]
)
def test_promtool_tests_catch_a_wrong_threshold_or_duration(
    tmp_path: Path, file: str, alert: str, change: str, key: str, value: str
) -> None:
    shutil.copytree(RULES_DIR, tmp_path / "rules")
    shutil.copytree(TESTS_DIR, tmp_path / "tests")
    data = load_rule_file(RULES_DIR / file)
    for group in data["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == alert:
                rule[key] = value
    (tmp_path / "rules" / file).write_text(yaml.safe_dump(data, sort_keys=False))
    assert _promtool_fails(tmp_path / "tests", _tests_checking(alert)), (
        f"{alert} with its {change}: every promtool test still passes"
    )


def _promtool_fails(tests: Path, files: list[str]) -> bool:
    assert PROMTOOL is not None
    assert files, "no promtool test to run"
    result = subprocess.run(
        [PROMTOOL, "test", "rules", *files],
        cwd=tests,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return result.returncode != 0


#: The promtool tests that pin the burn-rate alerts' numbers (the other SLO
#: tests check each SLO's wiring; running them for every mutation takes minutes).
BURN_TESTS = ("slo_burn_fast_test.yml", "slo_burn_slow_test.yml")


def _burn_mutations() -> list[tuple[str, str, slo.BurnAlert]]:
    """(alert, what changed, the mutated alert) for every burn rate and ``for:``."""
    found = []
    for alert in slo.BURN_ALERTS:
        for factor in (0.5, 2.0):
            for index, (burn, long, short) in enumerate(alert.burns):
                burns = list(alert.burns)
                burns[index] = (burn * factor, long, short)
                mutated = dataclasses.replace(alert, burns=tuple(burns))
                found.append((alert.name, f"burn {burn:g} over {long} x{factor}", mutated))
            duration = f"{round(seconds(alert.for_) * factor)}s"
            found.append((alert.name, f"for x{factor}", dataclasses.replace(alert, for_=duration)))
    return found


def test_burn_rates_are_the_workbooks() -> None:
    """Each burn rate is the share of the 30-day budget its long window may spend,
    times 30 days over the window (SRE workbook: 2% in 1 h, 5% in 6 h, 10% in 3 d;
    10% in 1 d from Sloth/Pyrra), and the short window is a twelfth of the long."""
    budget_share = {"1h": 0.02, "6h": 0.05, "1d": 0.10, "3d": 0.10}
    for alert in slo.BURN_ALERTS:
        for burn, long, short in alert.burns:
            assert burn == pytest.approx(budget_share[long] * seconds("30d") / seconds(long))
            assert seconds(short) * 12 == seconds(long)


@pytest.mark.parametrize(
    ("alert", "change", "mutated"), _burn_mutations(), ids=lambda v: str(v)[:40]
)
def test_promtool_tests_catch_a_wrong_burn_rate_or_duration(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    alert: str,
    change: str,
    mutated: slo.BurnAlert,
) -> None:
    shutil.copytree(RULES_DIR, tmp_path / "rules")
    shutil.copytree(TESTS_DIR, tmp_path / "tests")
    alerts = tuple(mutated if a.name == alert else a for a in slo.BURN_ALERTS)
    monkeypatch.setattr(slo, "BURN_ALERTS", alerts)
    rendered = slo.render_rule_files(slo.load_slos(SLO_SPEC))
    for name, text in rendered.items():
        assert (RULES_DIR / name).read_text() != text, f"{change} changed nothing in {name}"
        (tmp_path / "rules" / name).write_text(text)
    checking = [name for name in BURN_TESTS if name in _tests_checking(alert)]
    assert _promtool_fails(tmp_path / "tests", checking), (
        f"{alert} with its {change}: every promtool test still passes"
    )
