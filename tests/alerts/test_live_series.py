"""Every series the rules, SLOs and dashboards read exists in what the running services export.

The source-reading checks (test_rules.py, test_grafana_dashboards.py) know a
metric's name; they cannot know which labels and values a service really
sets, nor whether a name exists only in a comment's sense. Here the platform
runs as ``make run`` runs it, is driven (tests/alerts/live_platform.py), and a
real Prometheus scrapes it: every selector, with its label matchers, must
select scraped or recorded series; a counter is read through ``rate`` or
``increase`` as a counter; every dashboard query runs without error and the
headline panels show data.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass

import promql_parser
import pytest
from prometheus_client.parser import text_string_to_metric_families

from alerts.catalog import SCRAPE_SERIES, recorded_series, rules
from alerts.dashboards import VARIABLES, as_promql, queries, render
from infra.catalog import DASHBOARDS
from localrun.demo import DEMO_FLAG_SEED
from services.common.flags import parse_seed
from tests.alerts.live_platform import ROLLED_BACK_FEATURE, LivePlatform, running_platform

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not all(shutil.which(b) for b in ("prometheus", "prometheus-alertmanager")),
        reason="prometheus and prometheus-alertmanager not installed (make setup)",
    ),
]


#: Series a laptop run cannot produce, and why; each is still required to be
#: declared (its TYPE line) by a running service, and its labels are checked
#: where the event happens (the test named).
NOT_DRIVEN: dict[str, str] = {
    "churn_interventions_total": "needs a CRM delivery (tests/services/churn/test_delivery*.py)",
    "churn_intervention_successes_total": "needs a reported outcome of a delivered intervention",
    "rollback_deployment_undos_total": "needs a Kubernetes API (rollback.undoDeployments)",
    "claude_retries_total": "needs a 429/529 from Anthropic",
    "claude_estimated_cost_dollars_total": (
        "needs a Claude call left without an answer (tests/services/common/test_claude_client.py)"
    ),
}


@dataclass(frozen=True)
class Selector:
    """One vector selector of an expression: a metric name and its label matchers."""

    name: str
    matchers: tuple[tuple[str, str, str], ...]

    def promql(self) -> str:
        """The selector alone, without range or offset."""
        ops = {"MatchOp.Equal": "=", "MatchOp.NotEqual": "!=", "MatchOp.Re": "=~"}
        ops["MatchOp.NotRe"] = "!~"
        inner = ",".join(f'{label}{ops[op]}"{value}"' for label, op, value in self.matchers)
        return f"{self.name}{{{inner}}}"

    def one_matcher_each(self) -> list[Selector]:
        """The name alone, then the name with each matcher on its own."""
        return [Selector(self.name, ()), *(Selector(self.name, (m,)) for m in self.matchers)]


def selectors(expr: str) -> Iterator[tuple[Selector, bool]]:
    """Every selector of ``expr`` and whether it is read by ``rate``/``irate``/``increase``."""
    found: list[tuple[Selector, bool]] = []

    def visit(node: object, rated: bool) -> None:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            matchers = tuple(
                (m.name, str(m.op), m.value) for m in node.matchers.matchers if m.name != "__name__"
            )
            found.append((Selector(node.name, matchers), rated))
            return
        if isinstance(node, promql_parser.Call):
            rated = node.func.name in {"rate", "irate", "increase"}
            for arg in node.args:
                visit(arg, rated)
            return
        for attr in ("expr", "lhs", "rhs", "param", "vector_selector"):
            child = getattr(node, attr, None)
            if child is not None and not isinstance(child, str | int | float):
                visit(child, rated)

    visit(promql_parser.parse(expr), False)
    yield from found


@pytest.fixture(scope="module")
def platform() -> Iterator[LivePlatform]:
    with running_platform() as running:
        yield running


@pytest.fixture(scope="module")
def families(platform: LivePlatform) -> dict[str, tuple[str, set[str]]]:
    """Sample name -> (its family's type, the jobs exporting it), from every service."""
    found: dict[str, tuple[str, set[str]]] = {}
    for job in platform.services:
        for family in text_string_to_metric_families(platform.scrape(job)):
            names = {f"{family.name}{suffix}" for suffix in _SUFFIXES.get(family.type, ("",))}
            for name in names:
                found.setdefault(name, (family.type, set()))[1].add(job)
    return found


_SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "gauge": ("",),
    "info": ("_info",),
    "summary": ("", "_count", "_sum"),
}


@pytest.fixture(scope="module")
def grafana_values(platform: LivePlatform) -> dict[str, str]:
    """A real value of each dashboard variable, from the variable's own query."""
    values = {}
    for variable, series, label in (
        ("$job", "enterprisehub_build_info", "job"),
        ("$slo", "slo:objective:ratio", "slo"),
        ("$tenant", "http_tenant_requests_total", "tenant"),
    ):
        result = platform.query(series)["data"]["result"]
        assert result, f"{series} (the {variable} drop-down) has no series"
        values[variable] = sorted(r["metric"][label] for r in result)[0]
    assert set(values) == set(VARIABLES)
    return values


def _expressions(grafana_values: dict[str, str]) -> list[tuple[str, str]]:
    """(where, PromQL) of every rule and every dashboard query."""
    found = [(f"{rule.file.name}:{rule.name}", rule.expr) for rule in rules()]
    for name, text in render().items():
        found += [(name, as_promql(q, grafana_values)) for q in queries(text)]
    return found


def test_every_series_read_is_exported_with_the_type_its_reader_expects(
    families: dict[str, tuple[str, set[str]]], grafana_values: dict[str, str]
) -> None:
    """``x_total`` is a counter, ``x_bucket`` a histogram; rate() reads only those."""
    recorded = recorded_series()
    problems = set()
    for where, expr in _expressions(grafana_values):
        for selector, rated in selectors(expr):
            if selector.name in recorded or selector.name in SCRAPE_SERIES:
                continue
            exported = families.get(selector.name)
            if exported is None:
                problems.add(f"{where}: no running service exports {selector.name}")
                continue
            kind = exported[0]
            if rated and kind not in {"counter", "histogram"}:
                problems.add(f"{where}: rate/increase over {selector.name}, a {kind}")
    assert not problems, "\n".join(sorted(problems))


def test_every_selector_selects_a_live_series(
    platform: LivePlatform, grafana_values: dict[str, str]
) -> None:
    """Each label matcher on its own selects series: a label nobody sets selects nothing.

    Matchers are checked one by one (``job="x"`` and ``status=~"5.."`` each
    match, though not every job has failed), so that one 5xx suffices.
    """
    empty = set()
    checked: dict[str, bool] = {}
    for where, expr in _expressions(grafana_values):
        for selector, _ in selectors(expr):
            if selector.name in NOT_DRIVEN:
                continue
            for alone in selector.one_matcher_each():
                query = f"count({alone.promql()})"
                if query not in checked:
                    answer = platform.query(query)
                    assert answer["status"] == "success", (where, query, answer)
                    checked[query] = bool(answer["data"]["result"])
                if not checked[query]:
                    empty.add(f"{where}: {alone.promql()}")
    assert not empty, "selectors matching no series the platform exports:\n" + "\n".join(
        sorted(empty)
    )


def test_series_not_driven_here_are_still_declared(
    families: dict[str, tuple[str, set[str]]],
) -> None:
    missing = sorted(name for name in NOT_DRIVEN if name not in families)
    assert not missing, f"declared by no running service: {missing}"


def test_every_dashboard_query_runs_cleanly_on_live_data(
    platform: LivePlatform, grafana_values: dict[str, str]
) -> None:
    failures = []
    for name, text in render().items():
        for query in queries(text):
            answer = platform.query(as_promql(query, grafana_values))
            if answer["status"] != "success" or answer.get("warnings"):
                failures.append(f"{name}: {query}: {answer}")
    assert not failures, "\n".join(failures)


#: The seed's headline targets and the overview panel that shows each (title prefix).
HEADLINE_PANELS = {
    "WebSocket latency": "Feed delivery latency",
    "lead scoring latency": "Model latency p95",
    "Claude features latency": "Claude features p95",
    "error rate": "Share of requests failing (5xx)",
    "Claude cost": "Claude cost per hour",
    "churn interventions": "Interventions per minute",
    "rollout state": "Rollout state",
}


def test_every_headline_target_has_a_panel_showing_live_data(
    platform: LivePlatform, grafana_values: dict[str, str]
) -> None:
    panels = json.loads(render()["phase3-overview.json"])["panels"]
    blank = []
    for target, title in HEADLINE_PANELS.items():
        matching = [p for p in panels if p.get("title", "").startswith(title)]
        assert len(matching) == 1, f"{target}: one overview panel titled {title!r}..."
        exprs = [as_promql(t["expr"], grafana_values) for t in matching[0]["targets"]]
        if any(name in e for e in exprs for name in NOT_DRIVEN):
            continue
        if not any(platform.query(e)["data"]["result"] for e in exprs):
            blank.append(f"{target} ({title}): {exprs}")
    assert not blank, "headline panels empty on a driven platform:\n" + "\n".join(blank)


def _by_feature(platform: LivePlatform, expr: str) -> dict[str, float]:
    answer = platform.query(expr)
    assert answer["status"] == "success", (expr, answer)
    return {r["metric"]["feature"]: float(r["value"][1]) for r in answer["data"]["result"]}


def test_rollout_state_panel_shows_the_flags_the_services_hold(
    platform: LivePlatform, grafana_values: dict[str, str]
) -> None:
    """make run's seed (on for all, 50%, 75%, 50%) with the drive's rollback of one
    feature: the panel reads each share, the switched-off one with its share kept,
    and no replica disagreeing."""
    panels = json.loads(render()["phase3-overview.json"])["panels"]
    title = HEADLINE_PANELS["rollout state"]
    (panel,) = [p for p in panels if p.get("title", "").startswith(title)]
    share, kept, disagreement = (as_promql(t["expr"], grafana_values) for t in panel["targets"])
    seed = parse_seed(DEMO_FLAG_SEED)
    expected_share = {
        feature: 0.0 if feature == ROLLED_BACK_FEATURE else state.rollout_percentage / 100
        for feature, state in seed.items()
    }
    deadline = time.monotonic() + 15
    # The rollback reached Redis before drive() returned; a scrape or two later
    # every replica's gauges say so.
    while _by_feature(platform, share) != expected_share and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _by_feature(platform, share) == expected_share
    assert _by_feature(platform, kept) == {
        ROLLED_BACK_FEATURE: seed[ROLLED_BACK_FEATURE].rollout_percentage / 100
    }
    assert _by_feature(platform, disagreement) == dict.fromkeys(seed, 0.0)
    replicas = platform.query("count by (feature) (feature_flag_rollout_ratio)")["data"]["result"]
    # The dashboards decide no flag: every other scraped service holds a copy.
    deciding = [job for job in platform.services if job != DASHBOARDS.name]
    assert {r["metric"]["feature"]: int(r["value"][1]) for r in replicas} == dict.fromkeys(
        seed, len(deciding)
    ), "every scraped service exports every feature's state"


def test_a_tenant_that_never_failed_shows_zero_not_no_data(
    platform: LivePlatform, grafana_values: dict[str, str]
) -> None:
    panels = json.loads(render()["phase3-tenants.json"])["panels"]
    (panel,) = [p for p in panels if p.get("title", "").startswith("Share failing (5xx)")]
    (target,) = panel["targets"]
    served = {
        r["metric"]["tenant"]
        for r in platform.query("http_tenant_requests_total")["data"]["result"]
    }
    failed = {
        r["metric"]["tenant"]
        for r in platform.query('http_tenant_requests_total{status_class="5xx"}')["data"]["result"]
    }
    never_failed = sorted(served - failed)
    assert never_failed, "the drive serves a tenant without a 5xx"
    expr = as_promql(target["expr"], {**grafana_values, "$tenant": never_failed[0]})
    [result] = platform.query(expr)["data"]["result"]
    assert float(result["value"][1]) == 0
