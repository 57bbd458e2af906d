"""The series catalog: its rules, and that it and the services' code agree."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from alerts.catalog import rules
from services.churn.metrics import ChurnMetrics
from services.common.claude.metrics import ClaudeMetrics
from services.common.flags.cache import FlagMetrics
from services.common.flags.exposure import ExposureRecorder
from services.common.flags.provider import DecisionMetricsHook
from services.common.lead_model.scorer import ScoreCache
from services.common.metrics import HttpMetrics, build_info, new_registry
from services.common.revocation import Revocations
from services.common.revocation_store import register_revocation_metrics
from services.common.series import CatalogError, load_catalog, parse_catalog, series_catalog
from services.dashboards.metrics import register_dashboards_metrics
from services.ml.inference import InferenceMetrics
from services.realtime.metrics import CLIENT_FAILURES, SERVICE_FAILURES, RealtimeMetrics
from services.rollback.metrics import RollbackMetrics
from services.rollout.schedule import PLANS

REPO = Path(__file__).resolve().parents[3]

VALID: dict[str, Any] = {
    "buckets": {"latency": [0.1, 1, 10]},
    "series": {
        "jobs_total": {"type": "counter", "help": "Jobs.", "labels": ["outcome"]},
        "job_duration_seconds": {"type": "histogram", "help": "Time.", "buckets": "latency"},
        "queue_depth": {"type": "gauge", "help": "Depth."},
    },
}


def broken(path: str, value: Any) -> dict[str, Any]:
    """VALID with the value at ``path`` ("series/jobs_total/type") replaced (None: removed)."""
    document = copy.deepcopy(VALID)
    *parents, last = path.split("/")
    node = document
    for key in parents:
        node = node[key]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return document


def test_a_valid_catalog_resolves_each_histograms_buckets() -> None:
    catalog = parse_catalog(VALID)
    assert catalog["job_duration_seconds"].buckets == (0.1, 1.0, 10.0)
    assert catalog["jobs_total"].registered_name == "jobs"
    assert catalog["jobs_total"].sample_names == {"jobs_total", "jobs_created"}
    assert "job_duration_seconds_bucket" in catalog["job_duration_seconds"].sample_names


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (broken("series/jobs_total/type", "gauge"), "only a counter's, ends in _total"),
        (
            {**VALID, "series": {"jobs": {"type": "counter", "help": "Jobs."}}},
            "only a counter's, ends in _total",
        ),
        (
            {**VALID, "series": {"job_duration_ms": {"type": "gauge", "help": "Time."}}},
            "a duration is in seconds",
        ),
        (broken("series/job_duration_seconds/buckets", None), "only a histogram, names a bucket"),
        (broken("series/job_duration_seconds/buckets", "nope"), "no bucket set is called 'nope'"),
        (broken("buckets/unused", [1, 2]), "bucket sets no series uses: ['unused']"),
        (broken("buckets/latency", [1, 1, 2]), "must be strictly increasing"),
        (broken("buckets/latency", [1, "2"]), "must hold finite numbers only"),
        (broken("buckets/latency", [1, float("nan")]), "must hold finite numbers only"),
        (broken("series/jobs_total/labels", ["outcome", "outcome"]), "repeats a label"),
        (broken("series/jobs_total/labels", ["le"]), "label 'le' is not a valid"),
        (broken("series/jobs_total/labels", ["__name"]), "label '__name' is not a valid"),
        (broken("series/jobs_total/help", " "), "has no help text"),
        (broken("series/jobs_total/type", "summary"), "jobs_total: 1 validation error"),
        (broken("series/jobs_total/unit", "seconds"), "jobs_total: 1 validation error"),
        (broken("series/jobs_total", "Jobs."), "jobs_total: 2 validation errors"),
        ({"series": {}}, "exactly two keys"),
    ],
)
def test_a_catalog_breaking_a_rule_is_refused_naming_the_series(
    document: dict[str, Any], message: str
) -> None:
    with pytest.raises(CatalogError, match=message.replace("(", r"\(").replace("[", r"\[")):
        parse_catalog(document)


def test_a_series_declared_twice_is_refused(tmp_path: Path) -> None:
    """YAML alone would keep the second declaration and drop the first silently."""
    path = tmp_path / "series.yaml"
    path.write_text(
        "buckets: {}\nseries:\n"
        "  jobs_total: {type: counter, help: Jobs.}\n"
        "  jobs_total: {type: counter, help: Other jobs.}\n"
    )
    with pytest.raises(CatalogError, match=r"jobs_total is declared twice \(line 4\)"):
        load_catalog(path)


def test_the_shipped_catalog_keeps_every_rule() -> None:
    assert load_catalog() == series_catalog()


def _quantile_thresholds() -> list[tuple[str, str, float]]:
    """(alert, histogram, threshold) of every alert comparing a recorded quantile."""
    found = []
    for rule in rules():
        if rule.is_alert:
            for metric, threshold in re.findall(
                r"\w+:(\w+):histogram_quantile_rate5m\{[^}]*\}\s*>\s*([0-9.]+)", rule.expr
            ):
                found.append((rule.name, metric, float(threshold)))
    return found


QUANTILE_THRESHOLDS = _quantile_thresholds()


def test_every_quantile_alert_was_found() -> None:
    assert len(QUANTILE_THRESHOLDS) >= 9


@pytest.mark.parametrize(
    ("alert", "histogram", "threshold"), QUANTILE_THRESHOLDS, ids=lambda v: str(v)
)
def test_a_quantile_alerts_threshold_is_a_bucket_bound(
    alert: str, histogram: str, threshold: float
) -> None:
    """Between two bounds histogram_quantile interpolates: with the 0.1 and 0.25 s
    bounds around a 0.2 s trigger, a fifth of deliveries just over 100 ms read as a
    p95 of 212 ms and rolled the feed back."""
    assert threshold in series_catalog()[histogram].buckets


@pytest.mark.parametrize("feature", sorted(PLANS))
def test_a_features_rollout_latencies_are_bucket_bounds(feature: str) -> None:
    """``rollout advance`` reads the same quantiles against the target and the guardrail."""
    plan = PLANS[feature]
    buckets = series_catalog()[plan.latency_histogram].buckets
    assert plan.latency_target_seconds in buckets
    assert plan.guardrails.latency_p95_seconds in buckets


def test_the_connection_failure_help_names_every_reason() -> None:
    """The help text lists the reasons the code counts; a new reason needs both."""
    text = series_catalog()["websocket_connection_failures_total"].help
    for reason in (*CLIENT_FAILURES, *SERVICE_FAILURES):
        assert reason in text


@pytest.mark.parametrize(
    "page",
    [
        "docs/observability.md",
        "alerts/rules/connections.yml",
        "docs/runbooks/WebSocketConnectionFailuresRollback.md",
    ],
)
def test_the_pages_that_sort_the_reasons_name_every_one(page: str) -> None:
    """An on-call engineer reads there which refusals never roll back; a reason
    missing from the list reads as one that does."""
    text = (REPO / page).read_text(encoding="utf-8")
    # The client's list itself (around one of its reasons), not anywhere on the page.
    start = text.index("tenant_limit")
    listed = text[max(0, start - 300) : start + 300]
    for reason in CLIENT_FAILURES:
        assert reason in listed, (page, reason)
    for reason in SERVICE_FAILURES:
        assert reason in text, (page, reason)


def _scorer() -> Any:
    return SimpleNamespace(cache=ScoreCache(capacity=4))


#: Every class that registers series, as each service builds it.
METRICS_CLASSES: dict[str, Callable[[CollectorRegistry], object]] = {
    "http": HttpMetrics,
    "build": lambda registry: build_info(registry, service="test", version="0"),
    "flags": FlagMetrics,
    "exposures": lambda registry: ExposureRecorder(None, registry=registry),  # type: ignore[arg-type]
    "evaluations": DecisionMetricsHook,
    "claude": ClaudeMetrics,
    "realtime": RealtimeMetrics,
    "ml": lambda registry: InferenceMetrics(registry, _scorer()),
    "churn": ChurnMetrics,
    "rollback": RollbackMetrics,
    "revocations": lambda registry: register_revocation_metrics(registry, Revocations()),
    "dashboards": lambda registry: register_dashboards_metrics(
        registry, Revocations(), sessions=lambda: 0
    ),
}


def test_every_catalog_series_is_registered_by_the_services_code() -> None:
    """A series in the catalog that no code registers would let an alert or a
    page read a series that never exists (a name the code uses but the catalog
    lacks fails the factory, in every test that builds the class)."""
    registered: set[str] = set()
    for build in METRICS_CLASSES.values():
        registry = new_registry()
        build(registry)
        registered |= {family.name for family in registry.collect()}
    declared = {series.registered_name for series in series_catalog().values()}
    assert registered == declared


def test_the_catalog_lists_exactly_the_samples_a_scrape_shows() -> None:
    """What alerts and pages may query (``exported_metrics``) is each series'
    sample names: one listed but never shown would let a rule query nothing."""
    catalog = {series.registered_name: series for series in series_catalog().values()}
    shown = 0
    for build in METRICS_CLASSES.values():
        registry = new_registry()
        build(registry)
        # A labelled series shows no sample before its first use.
        for family in (family for family in registry.collect() if family.samples):
            names = {sample.name for sample in family.samples}
            assert names == catalog[family.name].sample_names, family.name
            shown += 1
    assert shown >= 10
