"""Grafana dashboards: valid JSON, valid PromQL over real series, covering every alert."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from alerts import ROOT, SLO_SPEC
from alerts.__main__ import main as alerts_main
from alerts.catalog import exported_metrics, recorded_series, rules, selected_metrics
from alerts.dashboards import VARIABLES, as_promql, queries, render
from alerts.slo import load_slos

REPO = ROOT.parent
RENDERED = render()


def _as_promql(expr: str) -> str:
    """Grafana's variables replaced the way Grafana would before sending the query."""
    return as_promql(expr, dict.fromkeys(VARIABLES, "x"))


ALL_QUERIES = [(name, q) for name, text in RENDERED.items() for q in queries(text)]


def test_rendering_is_deterministic() -> None:
    assert render() == RENDERED


def test_every_dashboard_has_a_unique_uid_and_panels() -> None:
    uids = [json.loads(text)["uid"] for text in RENDERED.values()]
    assert len(set(uids)) == len(uids)
    for text in RENDERED.values():
        assert json.loads(text)["panels"], "a dashboard without panels"


@pytest.mark.parametrize(("dashboard", "expr"), ALL_QUERIES)
def test_query_parses_and_reads_only_real_series(dashboard: str, expr: str) -> None:
    known = exported_metrics() | recorded_series()
    unknown = selected_metrics(_as_promql(expr)) - known
    assert not unknown, f"{dashboard}: {expr} reads {sorted(unknown)}"


def test_every_series_an_alert_reads_is_on_some_dashboard() -> None:
    charted: set[str] = set()
    for _, expr in ALL_QUERIES:
        charted |= selected_metrics(_as_promql(expr))
    missing = {
        f"{rule.name}: {metric}"
        for rule in rules()
        if rule.is_alert
        for metric in selected_metrics(rule.expr)
        if metric not in charted
    }
    assert not missing, f"alert inputs no dashboard shows: {sorted(missing)}"


def test_seed_latency_panel_has_its_thresholds() -> None:
    overview = json.loads(RENDERED["phase3-overview.json"])
    panel = next(p for p in overview["panels"] if p.get("title", "").startswith("Feed delivery"))
    steps = [s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]]
    assert steps == [None, 0.05, 0.1, 0.2]
    assert panel["fieldConfig"]["defaults"]["unit"] == "s"


def test_the_command_writes_every_dashboard(tmp_path: Any) -> None:
    assert alerts_main(["dashboards", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(RENDERED)


def _panel(dashboard: str, title_start: str) -> dict[str, Any]:
    panels = json.loads(RENDERED[dashboard])["panels"]
    matching = [p for p in panels if p.get("title", "").startswith(title_start)]
    assert len(matching) == 1, f"{dashboard}: one panel titled {title_start!r}..."
    return matching[0]


def _exprs(panel: dict[str, Any]) -> list[str]:
    return [t["expr"] for t in panel["targets"]]


def test_seed_churn_panels_chart_the_success_rate_and_leads_saved() -> None:
    success = _exprs(_panel("phase3-overview.json", "Intervention success rate"))[0]
    assert "churn_intervention_successes_total" in success
    saved = _exprs(_panel("phase3-overview.json", "Leads saved from churn"))
    assert any('outcome="re_engaged"' in e for e in saved)


def test_churn_success_rate_panel_draws_the_seeds_65_percent_target() -> None:
    """The seed's "65% intervention success": a line across the success-rate panel."""
    panel = _panel("phase3-overview.json", "Intervention success rate")
    defaults = panel["fieldConfig"]["defaults"]
    steps = defaults["thresholds"]["steps"]
    assert [(step["value"], step["color"]) for step in steps] == [(None, "red"), (0.65, "green")]
    assert defaults["custom"]["thresholdsStyle"] == {"mode": "line"}
    assert "target 65%" in panel["title"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_churn_success_rate_divides_delivered_interventions_not_sends(tmp_path: Path) -> None:
    # A day of 24 delivered interventions, each sent over sms, email and a task
    # (three delivered sends apiece), 12 of whose leads responded and then
    # re-engaged: 0.5. The success counter counts each once (services/churn/
    # success.py); the outcome counter would count 24, dividing by delivered
    # sends would say 1/6.
    success = _exprs(_panel("phase3-overview.json", "Intervention success rate"))[0]
    sends = [
        {
            "series": f'churn_interventions_total{{stage="nudge",channel="{channel}",'
            'outcome="delivered"}',
            "values": "0+1x24",
        }
        for channel in ("sms", "email", "task")
    ]
    test = {
        "rule_files": [],
        "evaluation_interval": "1h",
        "tests": [
            {
                "interval": "1h",
                "input_series": [
                    *sends,
                    {"series": "churn_intervention_latency_seconds_count", "values": "0+1x24"},
                    *(
                        {
                            "series": 'churn_interventions_total{stage="nudge",channel="any",'
                            f'outcome="{outcome}"}}',
                            "values": "0+0.5x24",
                        }
                        for outcome in ("responded", "re_engaged")
                    ),
                    {
                        "series": 'churn_intervention_successes_total{stage="nudge"}',
                        "values": "0+0.5x24",
                    },
                ],
                "promql_expr_test": [
                    {"expr": success, "eval_time": "24h", "exp_samples": [{"value": 0.5}]}
                ],
            }
        ],
    }
    path = tmp_path / "success_rate_test.yml"
    path.write_text(json.dumps(test))
    result = subprocess.run(
        ["promtool", "test", "rules", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_automatic_rollbacks_are_charted() -> None:
    (expr,) = _exprs(_panel("phase3-overview.json", "Rollback triggers received"))
    assert "rollback_incidents_total" in expr
    (undos,) = _exprs(_panel("phase3-overview.json", "Deployment rollouts undone"))
    assert "sum by (deployment, outcome)" in undos
    assert "rollback_deployment_undos_total[1h]" in undos
    (stuck,) = _exprs(_panel("phase3-overview.json", "Oldest deployment undo claimed"))
    assert stuck == "max by (job) (rollback_deployment_undo_oldest_claim_age_seconds)"
    (unsent,) = _exprs(_panel("phase3-overview.json", "Oldest rollback notice"))
    assert unsent == "max by (job) (rollback_notice_oldest_unsent_age_seconds)"


def test_a_tenant_view_selects_one_tenant_and_ranks_them_all() -> None:
    tenants = json.loads(RENDERED["phase3-tenants.json"])
    (variable,) = tenants["templating"]["list"]
    assert variable["query"] == "label_values(http_tenant_requests_total, tenant)"
    exprs = [t["expr"] for p in tenants["panels"] for t in p.get("targets", [])]
    assert any('tenant="$tenant"' in e and 'status_class="5xx"' in e for e in exprs)
    assert any(e.startswith("topk(10, sum by (tenant)") for e in exprs)


def test_every_recorded_series_is_read() -> None:
    """A recording rule costs an evaluation every interval; one that no alert, dashboard
    or service reads (the per-job HTTP p95 was one) is cost with no reader."""
    read: set[str] = set()
    for rule in rules():
        read |= selected_metrics(rule.expr)
    for _, expr in ALL_QUERIES:
        read |= selected_metrics(_as_promql(expr))
    services = "\n".join(path.read_text() for path in (REPO / "services").rglob("*.py"))
    unread = {name for name in recorded_series() - read if name not in services}
    assert not unread, f"recorded series nothing reads: {sorted(unread)}"


def _unit_overridden(panel: dict[str, Any]) -> set[str]:
    """The query refIds whose fields a panel's overrides give a unit of their own."""
    return {
        str(override["matcher"].get("options"))
        for override in panel.get("fieldConfig", {}).get("overrides", [])
        if override["matcher"]["id"] == "byFrameRefID"
        and any(prop["id"] == "unit" for prop in override["properties"])
    }


def test_a_panel_in_seconds_draws_counts_in_their_own_unit() -> None:
    """A count on a seconds axis reads as a duration: 300 interventions in 30
    minutes drawn as "5 min" beside the 30 s p95 they guard."""
    wrong = []
    for name, text in RENDERED.items():
        for panel in json.loads(text)["panels"]:
            if panel.get("fieldConfig", {}).get("defaults", {}).get("unit") != "s":
                continue
            own_unit = _unit_overridden(panel)
            for target in panel.get("targets", []):
                if target["refId"] in own_unit:
                    continue
                counts = {
                    metric
                    for metric in selected_metrics(_as_promql(target["expr"]))
                    if re.search(r"_count(:|$)|_total$", metric) or "_seconds" not in metric
                }
                if counts:
                    wrong.append(f"{name}: {panel['title']} {target['refId']} {sorted(counts)}")
    assert not wrong, f"counts drawn in seconds: {wrong}"


def test_slo_event_panels_claim_no_request_unit_an_availability_slo_lacks() -> None:
    """An availability SLO's events are scrape targets: three pods drawn in req/s."""
    if not any(slo.sli == "availability" for slo in load_slos(SLO_SPEC)):
        pytest.skip("no availability SLO")
    wrong = []
    for panel in json.loads(RENDERED["phase3-slos.json"])["panels"]:
        reads = {
            metric
            for target in panel.get("targets", [])
            for metric in selected_metrics(_as_promql(target["expr"]))
        }
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        if any(m.startswith("slo:sli_requests:") for m in reads) and unit in ("reqps", "rps"):
            wrong.append(panel["title"])
    assert not wrong, f"panels charting SLO events in requests per second: {wrong}"


def test_a_panel_in_requests_per_second_draws_only_requests() -> None:
    """Leads scored and flag decisions are not requests: a request holds many of
    them, so "req/s" on their axis overstates the traffic by that factor."""
    wrong = []
    for name, text in RENDERED.items():
        for panel in json.loads(text)["panels"]:
            if panel.get("fieldConfig", {}).get("defaults", {}).get("unit") != "reqps":
                continue
            own_unit = _unit_overridden(panel)
            for target in panel.get("targets", []):
                if target["refId"] in own_unit:
                    continue
                # A feed handshake is an HTTP request (the upgrade).
                others = {
                    metric
                    for metric in selected_metrics(_as_promql(target["expr"]))
                    if "requests" not in metric and "websocket_connection" not in metric
                }
                if others:
                    wrong.append(f"{name}: {panel['title']} {target['refId']} {sorted(others)}")
    assert not wrong, f"other events drawn in requests per second: {wrong}"


def test_the_services_dashboard_offers_only_jobs_that_serve_requests() -> None:
    # Its panels are rate, errors and duration of HTTP requests: a job without
    # them (the Streamlit dashboards) would be an entry of empty panels.
    services = json.loads(RENDERED["phase3-services.json"])
    (variable,) = services["templating"]["list"]
    assert variable["query"] == "label_values(http_requests_total, job)"
