"""Alertmanager routing: where each kind of alert goes (``amtool config routes test``)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from alerts import ALERTMANAGER_CONFIG
from alerts.catalog import rules
from alerts.routing import local_config

AMTOOL = shutil.which("amtool")
pytestmark = pytest.mark.skipif(AMTOOL is None, reason="amtool not installed (make setup)")


def _amtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert AMTOOL is not None
    return subprocess.run([AMTOOL, *args], capture_output=True, text=True, timeout=60, check=False)


def test_config_is_valid() -> None:
    result = _amtool("check-config", str(ALERTMANAGER_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        # A rollback trigger reaches the handler and, through `continue`, people.
        (
            [
                "alertname=RealtimeLatencyRollback",
                "action=rollback",
                "severity=critical",
                "feature=realtime_intelligence",
            ],
            "rollback-handler,slack-critical",
        ),
        (["alertname=ErrorBudgetBurnFast", "severity=critical", "slo=x"], "slack-critical"),
        (["alertname=ErrorBudgetBurnSlow", "severity=warning", "slo=x"], "slack-warnings"),
        # Business-impact triggers notify and never reach the rollback handler.
        (
            ["alertname=FeatureUsageDrop", "action=investigate", "severity=warning"],
            "slack-warnings",
        ),
        (["alertname=Watchdog", "severity=info"], "blackhole"),
        (["alertname=Unlabelled"], "slack-warnings"),
    ],
    ids=lambda v: v if isinstance(v, str) else v[0],
)
def test_routes(labels: list[str], receivers: str) -> None:
    result = _amtool("config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}", *labels)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == receivers


def test_fast_burn_inhibits_its_slow_sibling_of_the_same_slo() -> None:
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    assert {
        "source_matchers": ['alertname="ErrorBudgetBurnFast"'],
        "target_matchers": ['alertname="ErrorBudgetBurnSlow"'],
        "equal": ["slo"],
    } in config["inhibit_rules"]


def test_no_secret_in_the_file() -> None:
    text = ALERTMANAGER_CONFIG.read_text()
    assert "hooks.slack.com" not in text
    for receiver in yaml.safe_load(text)["receivers"]:
        for slack in receiver.get("slack_configs", []):
            assert "api_url" not in slack, "the Slack URL is a secret: use api_url_file"


def _expected_receivers(labels: dict[str, str]) -> str:
    """Where the file's header says an alert with ``labels`` goes."""
    people = {"critical": "slack-critical", "warning": "slack-warnings", "info": "blackhole"}
    receiver = people[labels["severity"]]
    return f"rollback-handler,{receiver}" if labels.get("action") == "rollback" else receiver


_ALERT_LABELS = sorted(
    {
        tuple(sorted({"alertname": rule.name, **rule.body["labels"]}.items()))
        for rule in rules()
        if rule.is_alert
    }
)


@pytest.mark.parametrize("labels", _ALERT_LABELS, ids=lambda labels: dict(labels)["alertname"])
def test_every_alert_reaches_the_receiver_its_severity_promises(
    labels: tuple[tuple[str, str], ...],
) -> None:
    """Each rule's own labels through the real routing tree: none falls to the default."""
    result = _amtool(
        "config",
        "routes",
        "test",
        f"--config.file={ALERTMANAGER_CONFIG}",
        *(f"{name}={value}" for name, value in labels),
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == _expected_receivers(dict(labels))


@pytest.mark.parametrize(
    ("labels", "title"),
    [
        (
            {"job": "ml-services", "feature": "property_vision"},
            "FIRING: VisionLatencyRollback (ml-services, property_vision)",
        ),
        ({"job": "ml-services"}, "FIRING: VisionLatencyRollback (ml-services)"),
        ({"feature": "property_vision"}, "FIRING: VisionLatencyRollback (property_vision)"),
        ({}, "FIRING: VisionLatencyRollback"),
    ],
)
def test_slack_titles_name_the_job_and_the_feature_apart(
    tmp_path: Path, labels: dict[str, str], title: str
) -> None:
    # They were run together ("ml-servicesproperty_vision") where both are set.
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))
    templates = {
        slack["title"]
        for receiver in config["receivers"]
        for slack in receiver.get("slack_configs", [])
    }
    assert templates
    data = tmp_path / "data.json"
    data.write_text(
        json.dumps(
            {
                "receiver": "slack-critical",
                "status": "firing",
                "alerts": [],
                "groupLabels": {},
                "commonLabels": {"alertname": "VisionLatencyRollback", **labels},
                "commonAnnotations": {},
                "externalURL": "http://alertmanager",
            }
        ),
        encoding="utf-8",
    )
    empty = tmp_path / "none.tmpl"
    empty.write_text("", encoding="utf-8")
    for template in templates:
        result = _amtool(
            "template",
            "render",
            f"--template.glob={empty}",
            f"--template.data={data}",
            f"--template.text={template}",
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == title


def test_a_local_run_shortens_waits_but_never_delays_the_rollback_route(tmp_path: Path) -> None:
    # The closed-loop benchmark (W7) passes group_wait="1s": the rollback route's
    # own 0s must stay 0s, or the benchmark measures a loop a second slower
    # than production's.
    config = local_config(
        rollback_url="http://127.0.0.1:1/rollback",
        token_file=tmp_path / "token",
        slack_url_file=None,
        group_wait="1s",
        group_interval="5s",
    )
    rollback, *_ = config["route"]["routes"]
    assert rollback["receiver"] == "rollback-handler"
    assert (rollback["group_wait"], rollback["group_interval"]) == ("0s", "5s")
    assert (config["route"]["group_wait"], config["route"]["group_interval"]) == ("1s", "5s")
