"""Monitoring in the stack: rules, scraping, dashboards, Alertmanager, the rollback handler.

The whole program runs under the mocks: ``stack_run`` without a Slack URL,
``synthesized`` with the injected test secrets (Slack configured). What the
stack declares is compared with ``alerts/`` and ``infra/catalog.py``, never
with a copy of either.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts import routing
from alerts.catalog import RUNBOOK_PREFIX, load_rule_file, rule_files, with_runbook_base
from alerts.dashboards import grafana_version, render
from infra import catalog
from infra.components import monitoring
from infra.components.addons import MONITORING_CHART, chart_values
from infra.components.monitoring import (
    ALERTMANAGER_SECRET,
    ROLLBACK_TOKEN_KEY,
    SLACK_URL_KEY,
    alertmanager_routing,
    rollback_webhook_urls,
    rule_selector_labels,
    sidecar_dashboard_label,
)
from infra.components.rollback_handler import RollbackHandler, RollbackHandlerArgs
from infra.environments import ENVIRONMENTS
from infra.synth import Synthesis
from infra.synth.inputs import synthetic_runbook_base
from infra.synth.mocks import ProgramRun, RecordedResource, Secret, unwrap_secrets

APP = "enterprisehub"
RELEASE = "kubernetes:helm.sh/v3:Release"
RULE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"
MONITOR = "kubernetes:monitoring.coreos.com/v1:ServiceMonitor"
SECRET = "kubernetes:core/v1:Secret"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
SERVICE = "kubernetes:core/v1:Service"
NAME_LABEL = "app.kubernetes.io/name"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def production(stack_run: Callable[[str], ProgramRun]) -> ProgramRun:
    """Production without a Slack URL (no optional secrets given)."""
    return stack_run("production")


@pytest.fixture(scope="module")
def with_slack(synthesized: Callable[[str], Synthesis]) -> Synthesis:
    """Production synthesized with every test secret, the Slack URL included."""
    return synthesized("production")


def _release(run: ProgramRun) -> RecordedResource:
    (release,) = [r for r in run.of_type(RELEASE) if r.inputs["name"] == MONITORING_CHART]
    return release


def _values(run: ProgramRun) -> dict[str, Any]:
    values: dict[str, Any] = _release(run).inputs["values"]
    return values


def _named(run: ProgramRun, type_token: str, name: str) -> RecordedResource:
    (found,) = [r for r in run.of_type(type_token) if r.inputs["metadata"]["name"] == name]
    return found


def _all_runbook_urls(spec: Mapping[str, Any]) -> list[str]:
    return [
        body["annotations"]["runbook_url"]
        for group in spec["groups"]
        for body in group["rules"]
        if "runbook_url" in body.get("annotations", {})
    ]


# --------------------------------------------------------------------------- rules


def test_one_prometheus_rule_per_rule_file_with_absolute_runbooks(production: ProgramRun) -> None:
    base = synthetic_runbook_base("production")
    rules = {r.inputs["metadata"]["name"]: r.inputs for r in production.of_type(RULE)}
    assert set(rules) == {f"enterprisehub-{path.stem}" for path in rule_files()}
    for path in rule_files():
        rule = rules[f"enterprisehub-{path.stem}"]
        assert rule["metadata"]["namespace"] == "monitoring"
        assert rule["spec"] == with_runbook_base(load_rule_file(path), base)
        urls = _all_runbook_urls(rule["spec"])
        for url in urls:
            assert url.startswith(base), url
            assert url.endswith(".md"), url
    # Every alert kept its link, now absolute: the count is the files' count.
    linked = sum(len(_all_runbook_urls(load_rule_file(p))) for p in rule_files())
    assert sum(len(_all_runbook_urls(r["spec"])) for r in rules.values()) == linked > 0


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (make setup)")
def test_every_deployed_rule_spec_passes_promtool(production: ProgramRun, tmp_path: Path) -> None:
    """What the operator hands Prometheus is still a valid rule file after the rewrite."""
    files = []
    for rule in production.of_type(RULE):
        path = tmp_path / f"{rule.inputs['metadata']['name']}.yml"
        path.write_text(yaml.safe_dump(rule.inputs["spec"]))
        files.append(str(path))
    result = subprocess.run(
        ["promtool", "check", "rules", "--lint=all", "--lint-fatal", *files],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_carry_the_labels_the_charts_rule_selector_matches(production: ProgramRun) -> None:
    wanted = rule_selector_labels(_values(production), release=MONITORING_CHART)
    for rule in production.of_type(RULE):
        labels = rule.inputs["metadata"]["labels"]
        assert wanted.items() <= labels.items(), rule.name


def test_the_rule_selector_is_read_the_way_the_operator_reads_it() -> None:
    every: dict[str, Any] = {
        "prometheus": {"prometheusSpec": {"ruleSelectorNilUsesHelmValues": False}}
    }
    assert rule_selector_labels(every, "kps") == {}
    # The chart's default: only rules labelled with the release.
    assert rule_selector_labels({}, "kps") == {"release": "kps"}
    explicit: dict[str, Any] = {
        "prometheus": {"prometheusSpec": {"ruleSelector": {"matchLabels": {"a": "b"}}}}
    }
    assert rule_selector_labels(explicit, "kps") == {"a": "b"}
    expressions: dict[str, Any] = {
        "prometheus": {"prometheusSpec": {"ruleSelector": {"matchExpressions": [{}]}}}
    }
    with pytest.raises(ValueError, match="matchExpressions"):
        rule_selector_labels(expressions, "kps")


def test_runbook_links_must_live_under_the_runbooks_folder() -> None:
    document: dict[str, Any] = {
        "groups": [{"name": "g", "rules": [{"alert": "A", "annotations": {}}]}]
    }
    document["groups"][0]["rules"][0]["annotations"]["runbook_url"] = "https://elsewhere/A.md"
    with pytest.raises(ValueError, match=RUNBOOK_PREFIX):
        with_runbook_base(document, "https://x.example/runbooks/")
    with pytest.raises(ValueError, match="must end with"):
        with_runbook_base(document, "https://x.example/runbooks")


# --------------------------------------------------------------------------- scraping


def _scraped_workloads() -> set[str]:
    """Catalog workloads that serve /metrics: every shipped service, the handler
    and the dashboards (on their metrics port)."""
    return {*catalog.SHIPPED_SERVICES, catalog.ROLLBACK_HANDLER.name, catalog.DASHBOARDS.name}


def _selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector["matchLabels"].items())


def test_every_catalog_workload_is_scraped_with_job_equal_to_its_name(
    production: ProgramRun,
) -> None:
    (monitor,) = [m.inputs for m in production.of_type(MONITOR)]
    spec = monitor["spec"]
    assert spec["namespaceSelector"] == {"matchNames": [APP]}
    assert spec["endpoints"] == [
        {"port": "http", "path": "/metrics", "interval": "30s"},
        {"port": "metrics", "path": "/metrics", "interval": "30s"},
    ]
    jobs = {}
    scraped_ports = {}
    for service in production.of_type(SERVICE):
        meta = service.inputs["metadata"]
        if meta.get("namespace") == APP and _selects(spec["selector"], meta.get("labels", {})):
            # The operator sets `job` from the Service label jobLabel names.
            jobs[meta["name"]] = meta["labels"][spec["jobLabel"]]
            # An endpoint whose port the Service lacks is skipped for it.
            ports = {p["name"]: p["port"] for p in service.inputs["spec"]["ports"]}
            scraped_ports[meta["name"]] = {
                ports[e["port"]] for e in spec["endpoints"] if e["port"] in ports
            }
    assert set(jobs.values()) == _scraped_workloads()
    assert all(job == service for service, job in jobs.items())
    # Each target serves /metrics: one port per Service, the metrics port where
    # a workload has one (the dashboards' app port answers a page, not metrics).
    for name, scraped in scraped_ports.items():
        workload = {**catalog.SERVICES, catalog.DASHBOARDS.name: catalog.DASHBOARDS}.get(
            name, catalog.ROLLBACK_HANDLER
        )
        assert scraped == {workload.metrics_port or workload.port}, name


def test_the_public_route_reaches_the_dashboards_app_port_only(production: ProgramRun) -> None:
    """The HTTPRoute names the app's port by number; the metrics port is Prometheus's."""
    (service,) = [
        s.inputs
        for s in production.of_type(SERVICE)
        if s.inputs["metadata"]["name"] == catalog.DASHBOARDS.name
    ]
    ports = {p["name"]: p["port"] for p in service["spec"]["ports"]}
    assert ports == {"app": catalog.DASHBOARDS.port, "metrics": catalog.DASHBOARDS.metrics_port}
    routes = [
        r.inputs
        for r in production.of_type("kubernetes:gateway.networking.k8s.io/v1:HTTPRoute")
        if r.inputs["metadata"]["name"] == "dashboards"
    ]
    assert routes, "the production stack routes the dashboards' hostnames"
    refs = [
        ref for route in routes for rule in route["spec"]["rules"] for ref in rule["backendRefs"]
    ]
    assert refs == [{"name": catalog.DASHBOARDS.name, "port": catalog.DASHBOARDS.port}]


def test_every_job_a_rule_selects_is_a_catalog_service() -> None:
    selected: set[str] = set()
    for path in rule_files():
        selected |= set(re.findall(r'job="([a-z-]+)"', path.read_text()))
    assert selected, "the rules select jobs by name"
    assert selected <= {*catalog.SERVICES, catalog.ROLLBACK_HANDLER.name, catalog.DASHBOARDS.name}
    # A shipped service the rules watch is scraped under that very job.
    assert selected & set(catalog.SHIPPED_SERVICES) <= _scraped_workloads()


def test_the_runbooks_name_the_service_monitor_the_stack_declares(production: ProgramRun) -> None:
    """An on-call engineer pastes these commands: a wrong name answers NotFound."""
    (monitor,) = [m.inputs["metadata"] for m in production.of_type(MONITOR)]
    named = {
        found
        for page in (REPO / RUNBOOK_PREFIX).glob("*.md")
        for found in re.findall(r"kubectl -n (\S+) get servicemonitor (\S+)", page.read_text())
    }
    assert named, "the runbooks name the ServiceMonitor (ServiceNotScraped)"
    assert named == {(monitor["namespace"], monitor["name"])}


# --------------------------------------------------------------------------- dashboards


def test_dashboards_are_configmaps_for_grafanas_sidecar(production: ProgramRun) -> None:
    label, value = sidecar_dashboard_label(_values(production))
    maps = [
        m.inputs
        for m in production.of_type(CONFIG_MAP)
        if m.inputs["metadata"].get("labels", {}).get(label) == value
    ]
    assert {m["metadata"]["namespace"] for m in maps} == {"monitoring"}
    shipped = {file: json.loads(m["data"][file]) for m in maps for file in m["data"]}
    assert shipped == {file: json.loads(text) for file, text in render().items()}
    for config_map in maps:
        # A ConfigMap holds at most 1 MiB.
        assert len(json.dumps(config_map["data"])) < 1_000_000


def test_the_sidecar_is_on_and_needs_a_label() -> None:
    with pytest.raises(ValueError, match="sidecar"):
        sidecar_dashboard_label({"grafana": {"sidecar": {"dashboards": {"enabled": False}}}})


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_grafana_runs_the_version_the_dashboards_are_built_for(environment: str) -> None:
    tag = str(chart_values(MONITORING_CHART, environment)["grafana"]["image"]["tag"])
    assert re.fullmatch(r"\d+\.\d+\.\d+", tag), tag
    assert tag.rsplit(".", 1)[0] == grafana_version()


# --------------------------------------------------------------------------- Alertmanager


def test_alertmanager_runs_the_repositorys_routing_with_slack(with_slack: Synthesis) -> None:
    values = _values(with_slack.run)["alertmanager"]
    assert values["config"] == routing.load()
    assert values["alertmanagerSpec"]["secrets"] == [ALERTMANAGER_SECRET]


def test_without_slack_the_slack_receivers_route_but_send_nowhere(production: ProgramRun) -> None:
    config = _values(production)["alertmanager"]["config"]
    repository = routing.load()
    assert config["route"] == repository["route"]
    assert config["inhibit_rules"] == repository["inhibit_rules"]
    assert [r["name"] for r in config["receivers"]] == [r["name"] for r in repository["receivers"]]
    assert not any("slack_configs" in r for r in config["receivers"])
    # The rollback route still acts.
    handler = next(r for r in config["receivers"] if r["name"] == "rollback-handler")
    assert handler == next(r for r in repository["receivers"] if r["name"] == "rollback-handler")
    assert alertmanager_routing(slack=False) == config
    assert production.plain_stack_outputs()["alertNotifications"] == "none"


@pytest.mark.parametrize("environment", ENVIRONMENTS)
def test_every_environment_gets_the_routing(
    environment: str, stack_run: Callable[[str], ProgramRun]
) -> None:
    values = _values(stack_run(environment))["alertmanager"]
    assert values["config"]["route"] == routing.load()["route"]
    assert values["alertmanagerSpec"]["secrets"] == [ALERTMANAGER_SECRET]


@pytest.mark.skipif(shutil.which("amtool") is None, reason="amtool not installed (make setup)")
@pytest.mark.parametrize("slack", [True, False], ids=["slack", "no-slack"])
def test_the_deployed_routing_passes_amtool(slack: bool, tmp_path: Path) -> None:
    """Receivers without an integration are valid: the no-Slack variant loads too."""
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(alertmanager_routing(slack=slack)))
    result = subprocess.run(
        ["amtool", "check-config", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_routing_reads_only_the_mounted_secrets_keys() -> None:
    folder = f"/etc/alertmanager/secrets/{ALERTMANAGER_SECRET}/"
    config = routing.load()
    files = [
        hook["http_config"]["authorization"]["credentials_file"]
        for r in config["receivers"]
        for hook in r.get("webhook_configs", [])
    ] + [s["api_url_file"] for r in config["receivers"] for s in r.get("slack_configs", [])]
    assert {f.removeprefix(folder) for f in files} == {SLACK_URL_KEY, ROLLBACK_TOKEN_KEY}


def test_a_routing_file_naming_another_file_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    config = routing.load()
    config["receivers"][0]["webhook_configs"][0]["http_config"]["authorization"][
        "credentials_file"
    ] = "/etc/alertmanager/secrets/other/token"
    monkeypatch.setattr(monitoring.routing, "load", lambda: config)
    with pytest.raises(ValueError, match="mounts only"):
        alertmanager_routing(slack=True)


def test_alertmanager_secret_holds_secrets_only(
    with_slack: Synthesis, injected_secrets: Mapping[str, str]
) -> None:
    secret = _named(with_slack.run, SECRET, ALERTMANAGER_SECRET)
    assert secret.inputs["metadata"]["namespace"] == "monitoring"
    data = secret.raw_inputs["stringData"]
    values = data.value if isinstance(data, Secret) else data
    assert set(values) == {SLACK_URL_KEY, ROLLBACK_TOKEN_KEY}
    if not isinstance(data, Secret):
        assert all(isinstance(v, Secret) for v in values.values())
    plain = unwrap_secrets(data)
    assert plain[SLACK_URL_KEY] == injected_secrets["slackWebhookUrl"]
    text = (with_slack.out / "resources.json").read_text()
    assert injected_secrets["slackWebhookUrl"] not in text
    assert plain[ROLLBACK_TOKEN_KEY] not in text
    manifests = "".join(p.read_text() for p in with_slack.manifests_dir.glob("*.yaml"))
    assert plain[ROLLBACK_TOKEN_KEY] not in manifests


def test_without_slack_the_secret_has_no_slack_key(production: ProgramRun) -> None:
    plain = unwrap_secrets(_named(production, SECRET, ALERTMANAGER_SECRET).raw_inputs)
    assert set(plain["stringData"]) == {ROLLBACK_TOKEN_KEY}


def test_alertmanager_and_the_handler_share_one_generated_token(production: ProgramRun) -> None:
    alertmanager = unwrap_secrets(_named(production, SECRET, ALERTMANAGER_SECRET).raw_inputs)
    (handler,) = [
        s
        for s in production.of_type(SECRET)
        if s.inputs["metadata"]["name"].startswith("rollback-handler-secret-")
    ]
    token = unwrap_secrets(handler.raw_inputs)["stringData"]["ALERTMANAGER_WEBHOOK_TOKEN"]
    assert token == alertmanager["stringData"][ROLLBACK_TOKEN_KEY]
    assert len(token) >= 32  # the handler refuses shorter tokens at start-up


def test_the_secret_exists_before_alertmanager_starts(production: ProgramRun) -> None:
    secret = _named(production, SECRET, ALERTMANAGER_SECRET)
    assert secret.urn in _release(production).dependencies


def test_rules_monitors_and_dashboards_wait_for_the_chart(production: ProgramRun) -> None:
    release = _release(production).urn
    label, value = sidecar_dashboard_label(_values(production))
    waiting = [
        *production.of_type(RULE),
        *production.of_type(MONITOR),
        *(
            m
            for m in production.of_type(CONFIG_MAP)
            if m.inputs["metadata"].get("labels", {}).get(label) == value
        ),
    ]
    assert len(waiting) == len(rule_files()) + 1 + len(render())
    for resource in waiting:
        assert release in resource.dependencies, resource.name


# --------------------------------------------------------------------------- rollback handler


def test_the_routing_posts_to_the_handlers_service(production: ProgramRun) -> None:
    spec = catalog.ROLLBACK_HANDLER
    url = spec.webhook_url(APP)
    assert (
        url
        == "http://rollback-handler.enterprisehub.svc.cluster.local:8005/v1/alertmanager/webhook"
    )
    assert rollback_webhook_urls(routing.load()) == [url]
    assert production.plain_stack_outputs()["rollbackWebhookUrl"] == url
    service = _named(production, SERVICE, spec.name).inputs
    assert service["metadata"]["namespace"] == APP
    (port,) = service["spec"]["ports"]
    assert port["port"] == spec.port


def test_the_handler_cannot_roll_a_deployment_back(production: ProgramRun) -> None:
    """No token, no RBAC binding, no cloud role: rolling back stays an operator's decision."""
    name = catalog.ROLLBACK_HANDLER.name
    account = _named(production, "kubernetes:core/v1:ServiceAccount", name).inputs
    assert account["automountServiceAccountToken"] is False
    assert not account["metadata"].get("annotations")
    deployment = _named(production, "kubernetes:apps/v1:Deployment", name).inputs
    assert deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    for binding in production.kubernetes_objects():
        if binding.type.rsplit(":", 1)[1] in {"RoleBinding", "ClusterRoleBinding"}:
            subjects = binding.inputs.get("subjects", [])
            assert all(s.get("name") != name for s in subjects), binding.name


def test_the_handlers_secret_and_settings_are_its_own(production: ProgramRun) -> None:
    spec = catalog.ROLLBACK_HANDLER
    (secret,) = [
        s
        for s in production.of_type(SECRET)
        if s.inputs["metadata"]["name"].startswith(f"{spec.name}-secret-")
    ]
    assert set(secret.inputs["stringData"]) == set(spec.secrets)
    (config_map,) = [
        c
        for c in production.of_type(CONFIG_MAP)
        if c.inputs["metadata"]["name"].startswith(f"{spec.name}-config-")
    ]
    assert not set(config_map.inputs["data"]) & set(catalog.SERVICE_SECRET_KEYS)
    assert config_map.inputs["data"]["ENVIRONMENT"] == "production"


def test_without_slack_the_handler_has_no_internet_egress(
    production: ProgramRun, with_slack: Synthesis
) -> None:
    def blocks(run: ProgramRun) -> list[str]:
        policy = _named(run, "kubernetes:networking.k8s.io/v1:NetworkPolicy", "rollback-handler")
        return [
            peer["ipBlock"]["cidr"]
            for rule in policy.inputs["spec"]["egress"]
            for peer in rule.get("to", [])
            if "ipBlock" in peer
        ]

    assert "0.0.0.0/0" not in blocks(production)
    assert "0.0.0.0/0" in blocks(with_slack.run)


@pytest.mark.parametrize(
    ("settings", "secrets", "message"),
    [
        # ALERTMANAGER_WEBHOOK_TOKEN missing: the handler would not start.
        ({}, {"DATABASE_URL": "x", "REDIS_URL": "x", "JWT_SECRET_KEY": "x"}, "missing"),
        # A credential in the ConfigMap (readable by far more roles than a Secret).
        ({"REDIS_URL": "redis://r"}, {}, "must not be in the ConfigMap"),
        # A credential the handler never reads.
        ({}, {"GHL_API_KEY": "x"}, "not read by the handler"),
    ],
)
def test_the_handler_refuses_a_secret_it_lacks_leaks_or_does_not_read(
    settings: dict[str, str], secrets: dict[str, str], message: str
) -> None:
    spec = catalog.ROLLBACK_HANDLER
    complete = dict.fromkeys(spec.secrets, "x")
    given = secrets if message == "missing" else {**complete, **secrets}
    with pytest.raises(ValueError, match=message):
        RollbackHandler(
            "handler",
            RollbackHandlerArgs(
                namespace=APP,
                image="registry.example/hub@sha256:" + "a" * 64,
                settings=settings,
                secrets=given,
            ),
        )
