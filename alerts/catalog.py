"""What the monitoring code knows about the rules: files, alerts and the metrics they read.

Shared by ``python -m alerts``, the stack (PrometheusRule objects) and the tests,
so that "every alert", "every expression" and "every metric an alert reads" mean
the same list everywhere.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser
import yaml

from alerts import RULES_DIR
from services.common.series import series_catalog

#: The fixed set of severities: critical pages, warning opens a ticket, info is dropped.
SEVERITIES = ("critical", "warning", "info")


@dataclass(frozen=True, slots=True)
class Rule:
    """One alerting or recording rule, with the file and group it comes from."""

    file: Path
    group: str
    body: dict[str, Any]

    @property
    def is_alert(self) -> bool:
        """Whether this is an alerting rule (else a recording rule)."""
        return "alert" in self.body

    @property
    def name(self) -> str:
        """The alert name or the recorded series name."""
        return str(self.body.get("alert") or self.body["record"])

    @property
    def expr(self) -> str:
        """The PromQL expression."""
        return str(self.body["expr"])


def rule_files(directory: Path = RULES_DIR) -> list[Path]:
    """Every rule file, sorted (the order the stack wraps them in)."""
    return sorted(directory.glob("*.yml"))


def load_rule_file(path: Path) -> dict[str, Any]:
    """One rule file as the stack embeds it in a PrometheusRule ``spec``."""
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


#: Where every ``runbook_url`` of the rule files points, relative to the repository.
RUNBOOK_PREFIX = "docs/runbooks/"


def with_runbook_base(rule_file: dict[str, Any], base_url: str) -> dict[str, Any]:
    """A copy of ``rule_file`` whose ``runbook_url`` annotations are absolute.

    The files link ``docs/runbooks/X.md`` (checked by the tests to exist); a
    deployed alert needs a link an on-call engineer can open, so the stack
    replaces the ``docs/runbooks/`` prefix with ``base_url`` (which ends in ``/``).
    """
    if not base_url.endswith("/"):
        raise ValueError(f"runbook base URL {base_url!r} must end with '/'")
    copied: dict[str, Any] = copy.deepcopy(rule_file)
    for group in copied["groups"]:
        for body in group["rules"]:
            annotations = body.get("annotations", {})
            url = annotations.get("runbook_url")
            if url is None:
                continue
            if not str(url).startswith(RUNBOOK_PREFIX):
                raise ValueError(f"runbook_url {url!r} is not under {RUNBOOK_PREFIX}")
            annotations["runbook_url"] = base_url + str(url).removeprefix(RUNBOOK_PREFIX)
    return copied


def rules(directory: Path = RULES_DIR) -> Iterator[Rule]:
    """Every rule of every file."""
    for path in rule_files(directory):
        for group in load_rule_file(path)["groups"]:
            for body in group["rules"]:
                yield Rule(path, group["name"], body)


def selected_metrics(expr: str) -> set[str]:
    """The metric names an expression reads (vector and range selectors)."""
    names: set[str] = set()

    def visit(node: object) -> bool:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def recorded_series(directory: Path = RULES_DIR) -> set[str]:
    """Every series name a recording rule writes."""
    return {rule.name for rule in rules(directory) if not rule.is_alert}


#: Series Prometheus itself writes for every scrape target.
SCRAPE_SERIES = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})


def exported_metrics() -> set[str]:
    """Every sample name the services can expose: the series catalog's, and the scrape's.

    Read from the catalog (services/common/series.yaml) rather than a running
    ``/metrics``: a labelled series shows no sample until it is first used, and
    a page must be allowed to chart a series that has not moved yet.
    """
    names: set[str] = set(SCRAPE_SERIES)
    for series in series_catalog().values():
        names.update(series.sample_names)
    return names
