"""The platform's monitoring, declared in the stack: rules, scraping, dashboards, routing.

kube-prometheus-stack (:mod:`infra.components.addons`) installs Prometheus,
Alertmanager, Grafana and the operator's CRDs. What the platform adds comes
from ``alerts/``, read at declaration time (it is repository content, not
config):

* one ``PrometheusRule`` per file of ``alerts/rules/``, with the labels the
  chart's ``ruleSelector`` matches and every ``runbook_url`` made absolute
  (stack config ``runbookBaseUrl``);
* one ``ServiceMonitor`` for every Service labelled ``enterprisehub.ai/metrics``,
  whose ``jobLabel`` is ``app.kubernetes.io/name``: the ``job`` of every series is
  the workload's catalog name, which is what the rules select
  (``job="ml-services"``); it scrapes ``/metrics`` on the port named ``http``
  (the services, the rollback handler) or ``metrics`` (the dashboards, whose
  app port the public Gateway routes whole);
* the Grafana dashboards of ``alerts/dashboards``, rendered now (nothing
  rendered is committed), as ConfigMaps with the label Grafana's sidecar loads;
* Alertmanager's routing (``alerts/alertmanager/alertmanager.yml``) as the chart's
  ``alertmanager.config``, and the Secret whose files it names (the Slack URL,
  the rollback handler's bearer token), mounted through
  ``alertmanager.alertmanagerSpec.secrets``.

The routing and its Secret must exist before Alertmanager starts, so they go
into the chart release (:func:`alertmanager_values`,
:func:`alertmanager_secret`, used by ``ClusterAddons``); everything else is a
custom resource or a ConfigMap the chart's CRDs and sidecar act on, declared by
:class:`Monitoring` after the release.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import pulumi
import pulumi_kubernetes as k8s

from alerts import routing
from alerts.catalog import load_rule_file, rule_files, with_runbook_base
from alerts.dashboards import render as render_dashboards
from infra import catalog
from infra.components import hardening
from infra.components.base import Component
from infra.components.workload import HTTP_PORT, METRICS_PATH, METRICS_PORT

#: The Secret Alertmanager's routing file reads its credentials from.
ALERTMANAGER_SECRET: Final = f"{catalog.PLATFORM}-alertmanager"
#: Its keys: the Slack incoming webhook and the rollback handler's bearer token.
SLACK_URL_KEY: Final = "slack-webhook-url"
ROLLBACK_TOKEN_KEY: Final = "rollback-token"  # noqa: S105 - a key name
#: Where the operator mounts each Secret listed in ``alertmanagerSpec.secrets``.
ALERTMANAGER_SECRETS_DIR: Final = "/etc/alertmanager/secrets"
PROMETHEUS_RULE_API: Final = "monitoring.coreos.com/v1"
#: Scrape interval; the rules' shortest window (rate over 5m) wants several samples.
SCRAPE_INTERVAL: Final = "30s"


def alertmanager_routing(*, slack: bool) -> dict[str, Any]:
    """``alerts/alertmanager/alertmanager.yml`` as Alertmanager in the cluster runs it.

    The file is written for the cluster already (the rollback handler's Service
    URL, the secret files under :data:`ALERTMANAGER_SECRETS_DIR`). Without a
    Slack URL the Slack receivers keep their names and routes but have no
    integration: Alertmanager accepts them and sends nothing (a documented
    no-op, as ``make run`` does), and the rollback route still acts.
    """
    config = routing.load()
    _check_secret_files(config)
    if not slack:
        for receiver in config["receivers"]:
            receiver.pop("slack_configs", None)
    return config


def _check_secret_files(config: Mapping[str, Any]) -> None:
    """Every credential file the routing names is a key of :data:`ALERTMANAGER_SECRET`."""
    folder = f"{ALERTMANAGER_SECRETS_DIR}/{ALERTMANAGER_SECRET}/"
    files = []
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            files.append(hook["http_config"]["authorization"]["credentials_file"])
        files.extend(slack["api_url_file"] for slack in receiver.get("slack_configs", []))
    wrong = [f for f in files if f.removeprefix(folder) not in {SLACK_URL_KEY, ROLLBACK_TOKEN_KEY}]
    if wrong:
        raise ValueError(
            f"alertmanager.yml reads {', '.join(wrong)}; the stack mounts only "
            f"{folder}{{{SLACK_URL_KEY},{ROLLBACK_TOKEN_KEY}}}"
        )


def rollback_webhook_urls(config: Mapping[str, Any]) -> list[str]:
    """The webhook URLs the routing posts to (the rollback handler's, in-cluster)."""
    return [
        str(hook["url"])
        for receiver in config["receivers"]
        for hook in receiver.get("webhook_configs", [])
    ]


def alertmanager_values(*, slack: bool) -> dict[str, Any]:
    """kube-prometheus-stack values: the routing, and the Secret mounted beside it."""
    return {
        "alertmanager": {
            "config": alertmanager_routing(slack=slack),
            "alertmanagerSpec": {"secrets": [ALERTMANAGER_SECRET]},
        }
    }


@dataclass(frozen=True, kw_only=True)
class AlertmanagerCredentials:
    """What :func:`alertmanager_secret` puts in the Secret (Pulumi secrets)."""

    #: The bearer token the rollback handler expects (its ALERTMANAGER_WEBHOOK_TOKEN).
    rollback_token: pulumi.Input[str]
    #: The Slack incoming webhook; None when the stack has none (no key, no-op receivers).
    slack_webhook_url: pulumi.Input[str] | None = None


def alertmanager_secret(
    logical: str,
    *,
    namespace: str,
    credentials: AlertmanagerCredentials,
    opts: pulumi.ResourceOptions,
) -> k8s.core.v1.Secret:
    """The Secret the routing's ``credentials_file``/``api_url_file`` name, every value secret."""
    values: dict[str, pulumi.Input[str]] = {ROLLBACK_TOKEN_KEY: credentials.rollback_token}
    if credentials.slack_webhook_url is not None:
        values[SLACK_URL_KEY] = credentials.slack_webhook_url
    return k8s.core.v1.Secret(
        logical,
        metadata=hardening.platform_metadata(ALERTMANAGER_SECRET, namespace),
        type="Opaque",
        string_data={key: pulumi.Output.secret(value) for key, value in values.items()},
        opts=opts,
    )


def rule_selector_labels(values: Mapping[str, Any], release: str) -> dict[str, str]:
    """The labels a PrometheusRule needs for the chart's Prometheus to load it.

    An explicit ``ruleSelector`` wins; otherwise, with
    ``ruleSelectorNilUsesHelmValues`` (the chart's default, true) Prometheus
    loads only rules labelled ``release: <release>``, and without it every rule.
    """
    spec = values.get("prometheus", {}).get("prometheusSpec", {})
    selector = spec.get("ruleSelector") or {}
    if selector.get("matchExpressions"):
        raise ValueError("ruleSelector.matchExpressions is not supported; use matchLabels")
    if selector.get("matchLabels"):
        return dict(selector["matchLabels"])
    if spec.get("ruleSelectorNilUsesHelmValues", True):
        return {"release": release}
    return {}


def sidecar_dashboard_label(values: Mapping[str, Any]) -> tuple[str, str]:
    """(label, value) the Grafana sidecar loads dashboard ConfigMaps by."""
    sidecar = values.get("grafana", {}).get("sidecar", {}).get("dashboards", {})
    if not sidecar.get("enabled"):
        raise ValueError("grafana.sidecar.dashboards.enabled must be true to load the dashboards")
    return str(sidecar["label"]), str(sidecar["labelValue"])


@dataclass(frozen=True, kw_only=True)
class MonitoringArgs:
    """Inputs of :class:`Monitoring`."""

    #: The chart's namespace (Grafana's sidecar reads dashboards from it).
    namespace: str
    #: Namespaces whose metrics Services are scraped.
    app_namespaces: Sequence[pulumi.Input[str]]
    #: ``runbookBaseUrl``: every runbook_url is rewritten onto it.
    runbook_base_url: str
    #: Labels the chart's ruleSelector matches (:func:`rule_selector_labels`).
    rule_labels: Mapping[str, str]
    #: (label, value) of the Grafana sidecar (:func:`sidecar_dashboard_label`).
    dashboard_label: tuple[str, str]
    #: The kube-prometheus-stack release: its CRDs must exist first.
    depends_on: Sequence[pulumi.Resource] = field(default_factory=tuple)


class Monitoring(Component[MonitoringArgs]):
    """PrometheusRules, the ServiceMonitor and the dashboards' ConfigMaps of the platform."""

    component_type = "enterprisehub:k8s:Monitoring"

    #: Names of the PrometheusRules and of the dashboards' ConfigMaps.
    rule_names: list[str]
    dashboard_names: list[str]

    def __init__(
        self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        # Read and render before registering: a broken file fails before anything exists.
        specs = {
            path.stem: with_runbook_base(load_rule_file(path), args.runbook_base_url)
            for path in rule_files()
        }
        dashboards = render_dashboards()
        super().__init__(name, args, opts)
        after = pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on))
        self.rule_names = [self._rule(stem, spec, after) for stem, spec in specs.items()]
        self._service_monitor(after)
        self.dashboard_names = [
            self._dashboard(file, text, after) for file, text in dashboards.items()
        ]
        self.register_outputs(
            {"rule_names": self.rule_names, "dashboard_names": self.dashboard_names}
        )

    def _rule(self, stem: str, spec: dict[str, Any], opts: pulumi.ResourceOptions) -> str:
        """One rule file as a PrometheusRule (its ``spec`` is the file); returns its name."""
        rule_name = f"{catalog.PLATFORM}-{stem}"
        k8s.apiextensions.CustomResource(
            f"{self._name}-rules-{stem}",
            api_version=PROMETHEUS_RULE_API,
            kind="PrometheusRule",
            metadata=hardening.platform_metadata(
                rule_name, self._args.namespace, labels=self._args.rule_labels
            ),
            spec=copy.deepcopy(spec),
            opts=opts,
        )
        return rule_name

    def _service_monitor(self, opts: pulumi.ResourceOptions) -> k8s.apiextensions.CustomResource:
        """Every metrics Service of the app namespaces, ``job`` = its ``app.kubernetes.io/name``."""
        return k8s.apiextensions.CustomResource(
            f"{self._name}-service-monitor",
            api_version=PROMETHEUS_RULE_API,
            kind="ServiceMonitor",
            metadata=hardening.platform_metadata(
                f"{catalog.PLATFORM}-services", self._args.namespace
            ),
            spec={
                # The operator's default job is the Service's name; naming the label makes
                # "job = catalog name" a property of the workload, not of how it is named.
                "jobLabel": hardening.NAME_LABEL,
                "selector": {"matchLabels": {hardening.METRICS_LABEL: "true"}},
                "namespaceSelector": {"matchNames": list(self._args.app_namespaces)},
                # A Service without the port an endpoint names is not scraped
                # there: the services' `http`, the dashboards' `metrics`
                # (a metrics port apart; their app port is `app`).
                "endpoints": [
                    {"port": port, "path": METRICS_PATH, "interval": SCRAPE_INTERVAL}
                    for port in (HTTP_PORT, METRICS_PORT)
                ],
            },
            opts=opts,
        )

    def _dashboard(self, file: str, text: str, opts: pulumi.ResourceOptions) -> str:
        """One dashboard's JSON in a ConfigMap the Grafana sidecar picks up; returns its name."""
        stem = re.sub(r"[^a-z0-9-]", "-", file.removesuffix(".json").lower())
        label, value = self._args.dashboard_label
        map_name = f"{catalog.PLATFORM}-dashboard-{stem}"
        k8s.core.v1.ConfigMap(
            f"{self._name}-dashboard-{stem}",
            metadata=hardening.platform_metadata(
                map_name, self._args.namespace, labels={label: value}
            ),
            data={file: text},
            opts=opts,
        )
        return map_name
