"""The rule files: promtool-clean, unit-tested, complete, and reading real metrics."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from alerts import ROOT, RULES_DIR, SLO_SPEC, TESTS_DIR
from alerts.__main__ import main as alerts_main
from alerts.catalog import (
    SEVERITIES,
    exported_metrics,
    recorded_series,
    rule_files,
    rules,
    selected_metrics,
)
from alerts.slo import load_slos
from localrun.__main__ import SERVICES as SCRAPED_SERVICES
from services.rollout.schedule import PLANS

REPO = ROOT.parent
RUNBOOK_SECTIONS = ("Symptoms", "Impact", "Diagnosis", "Mitigation")
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (make setup)")

ALERTS = [rule for rule in rules() if rule.is_alert]


def _promtool(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run(
        [PROMTOOL, *args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False
    )


@needs_promtool
@pytest.mark.parametrize("path", rule_files(), ids=lambda p: p.name)
def test_rule_file_passes_promtool_check_with_its_linter(path: Path) -> None:
    result = _promtool("check", "rules", "--lint=all", "--lint-fatal", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
@pytest.mark.parametrize("path", sorted(TESTS_DIR.glob("*_test.yml")), ids=lambda p: p.name)
def test_promtool_unit_tests_pass(path: Path) -> None:
    result = _promtool("test", "rules", path.name, cwd=TESTS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_shown_firing_by_a_unit_test() -> None:
    fired: set[str] = set()
    for path in TESTS_DIR.glob("*_test.yml"):
        fired.update(re.findall(r"exp_labels: \{alertname: (\w+)", path.read_text()))
    missing = sorted({rule.name for rule in ALERTS} - fired)
    assert not missing, f"alerts never shown firing in alerts/tests: {missing}"


#: Alerts with no quiet case apart from their incident test, and why.
QUIET_EXEMPT = {
    # Every dead letter is an incident in itself (a lead never got its message).
    "ChurnDeadLetters": "fires on a single dead letter by design",
    # It reads the breaker's state, which only failures open; its one-minute
    # blip is shown in the same test as its page.
    "ClaudeCircuitOpen": "a state, not a rate: blip and page share one test",
}


def _cases() -> list[tuple[str, str, bool]]:
    """(test name, alert name, fires) of every alert_rule_test case."""
    cases = []
    for path in TESTS_DIR.glob("*_test.yml"):
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                cases.append((test["name"], case["alertname"], bool(case.get("exp_alerts"))))
    return cases


def test_every_alert_is_shown_silent_on_a_blip_or_at_low_traffic() -> None:
    """A quiet case in a test of its own (not only "not yet" before an incident)."""
    cases = _cases()
    firing_tests = {(name, alert) for name, alert, fires in cases if fires}
    quiet = {
        alert for name, alert, fires in cases if not fires and (name, alert) not in firing_tests
    }
    missing = sorted({rule.name for rule in ALERTS} - quiet - set(QUIET_EXEMPT))
    assert not missing, f"alerts never shown silent on a blip or at low traffic: {missing}"


def test_every_rule_file_is_exercised_by_a_promtool_test() -> None:
    """Each SLO's generated file too: one test per file, one service per file."""
    loaded: set[str] = set()
    for path in TESTS_DIR.glob("*_test.yml"):
        loaded |= {Path(f).name for f in yaml.safe_load(path.read_text())["rule_files"]}
    missing = sorted({p.name for p in rule_files()} - loaded)
    assert not missing, f"rule files no promtool test loads: {missing}"


def test_generated_slo_rules_match_their_spec() -> None:
    assert alerts_main(["render", "--check"]) == 0


@pytest.mark.parametrize("rule", ALERTS, ids=lambda r: f"{r.file.stem}:{r.name}")
def test_alert_has_severity_annotations_and_for(rule: object) -> None:
    body = rule.body  # type: ignore[attr-defined]
    assert body["labels"]["severity"] in SEVERITIES
    assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", body["alert"]), "alert names are PascalCase"
    for key in ("summary", "description", "runbook_url"):
        assert body["annotations"].get(key), f"missing annotation {key}"
    assert body.get("for"), "every alert waits a `for:` duration before firing"
    assert body.get("keep_firing_for"), "every alert is damped against flapping"


@pytest.mark.parametrize(
    "url", sorted({r.body["annotations"]["runbook_url"] for r in ALERTS}), ids=str
)
def test_runbook_link_resolves_to_a_page_with_every_section(url: str) -> None:
    assert re.fullmatch(r"docs/runbooks/[A-Za-z0-9]+\.md", url), url
    page = REPO / url
    assert page.is_file(), f"{url} does not exist"
    headings = set(re.findall(r"^## (.+)$", page.read_text(), flags=re.MULTILINE))
    missing = [section for section in RUNBOOK_SECTIONS if section not in headings]
    assert not missing, f"{url} lacks sections {missing}"


def test_rollback_triggers_name_an_action_and_a_feature() -> None:
    features = {
        "realtime_intelligence",
        "property_vision",
        "churn_prevention",
        "ai_coaching",
        "all",
    }
    for rule in ALERTS:
        action = rule.body["labels"].get("action")
        if action is None:
            continue
        assert action in {"rollback", "investigate"}, rule.name
        if action == "rollback":
            assert rule.body["labels"].get("feature") in features, rule.name


def test_no_data_is_never_a_reason_to_roll_back() -> None:
    """A rollback trigger needs traffic: no `absent()`, and a guard on a request rate."""
    for rule in ALERTS:
        if rule.body["labels"].get("action") != "rollback":
            continue
        assert "absent" not in rule.expr, rule.name
        assert re.search(r"\band\b[^\n]*(rate5m|count)[^\n]*>", rule.expr), rule.name


def test_recording_rules_follow_level_metric_operations() -> None:
    for name in recorded_series():
        assert re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", name), name


def test_every_expression_reads_only_exported_or_recorded_series() -> None:
    known = exported_metrics() | recorded_series()
    unknown = {
        f"{rule.name}: {metric}"
        for rule in rules()
        for metric in selected_metrics(rule.expr)
        if metric not in known
    }
    assert not unknown, f"expressions read series nobody exports or records: {sorted(unknown)}"


def test_latency_quantiles_come_from_rated_buckets_summed_by_le() -> None:
    for rule in rules():
        for call in re.findall(r"histogram_quantile\((.*)", rule.expr):
            assert "_bucket" in call, rule.name
            assert "rate(" in call, rule.name
            assert re.search(r"sum by \((?:[a-z_]+, )*le\)", call), rule.name


def test_the_rules_dir_holds_only_rule_files() -> None:
    assert {p.suffix for p in RULES_DIR.iterdir()} == {".yml"}


def test_every_scraped_service_is_watched_for_vanishing() -> None:
    """A service whose targets are all gone has no `up` left: only absent() sees it."""
    jobs = {spec.job for spec in SCRAPED_SERVICES if spec.metrics}
    (rule,) = [rule for rule in ALERTS if rule.name == "ServiceNotScraped"]
    watched = re.findall(r'absent\(up\{job="([^"]+)"\}\)', rule.expr)
    assert sorted(watched) == sorted(jobs)


def test_every_scraped_service_down_on_every_target_pages() -> None:
    """`up` at 0 on every target is an availability SLO's burn for the feature
    services; the rollback handler has no SLO, and a crash loop of it (pods still
    listed, so not absent) paged nobody while rollback triggers reached no one."""
    jobs = {spec.job for spec in SCRAPED_SERVICES if spec.metrics}
    with_slo = {slo.service for slo in load_slos(SLO_SPEC) if slo.sli == "availability"}
    paged = {
        job
        for rule in ALERTS
        if rule.body["labels"]["severity"] == "critical"
        for job in re.findall(r'\(up\{job="([^"]+)"\}\)\s*==\s*0\b', rule.expr)
    }
    assert sorted(jobs - with_slo - paged) == []


def test_each_features_usage_is_its_plans_successful_answers() -> None:
    """FeatureUsageDrop watched services: lead scoring's traffic on ml-services hid
    a drop of property_vision. Each feature's usage reads the answers that
    ``rollout advance`` judges it by."""
    usage = {
        rule.body["labels"]["feature"]: rule.expr
        for rule in rules()
        if rule.name == "feature:http_requests_ok:rate1h"
    }
    assert set(usage) == set(PLANS)
    for feature, plan in PLANS.items():
        assert f'{{{plan.request_selector()},status=~"2.."}}' in usage[feature], feature
