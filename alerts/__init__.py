"""Monitoring as code: Prometheus rules, SLOs, Alertmanager routing, Grafana dashboards.

``alerts/rules/`` holds plain Prometheus rule files (``slo-*.yml`` are generated from
``alerts/slos.yaml``), ``alerts/tests/`` their promtool unit tests,
``alerts/alertmanager/`` the routing, and ``alerts/dashboards`` the Grafana
dashboards written with grafana-foundation-sdk. ``python -m alerts render``
regenerates what is generated; the stack reads the same files.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parent
RULES_DIR = ROOT / "rules"
TESTS_DIR = ROOT / "tests"
SLO_SPEC = ROOT / "slos.yaml"
ALERTMANAGER_CONFIG = ROOT / "alertmanager" / "alertmanager.yml"
