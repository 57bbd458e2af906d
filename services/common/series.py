"""The series catalog: every Prometheus series the services export, in ``series.yaml``.

A series is declared once, as data: its name, type, help, labels and (for a
histogram) its bucket bounds. Code registers it by name,
``MetricFactory(registry).counter("churn_dead_letters_total")``, and gets the
rest from here, so the name grepped in an alert rule leads to the line that
counts it. The alert rules, the Grafana dashboards and the docs are checked
against this catalog (``alerts.catalog.exported_metrics``): reading a file
rather than the services' source means a labelled series that has not moved
yet still counts as one a page may chart.

The rules of the project's conventions are checked when the file is loaded:
counters end in ``_total``, durations are in seconds, a histogram names a
bucket set and nothing else does, label names are valid and not reserved.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Any, Final, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

#: The catalog shipped with the services (in the image, beside this module).
CATALOG_FILE: Final = Path(__file__).with_name("series.yaml")

Kind = Literal["counter", "gauge", "histogram"]

#: The sample names prometheus_client exposes for each kind of series, after
#: the name it registers (``Series.registered_name``).
SAMPLE_SUFFIXES: Final[Mapping[Kind, tuple[str, ...]]] = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
}

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
# prometheus_client sets ``le`` on buckets itself; ``__``-names are Prometheus's.
_RESERVED_LABELS = frozenset({"le", "quantile"})


class CatalogError(ValueError):
    """The series catalog breaks one of its rules (the message names the series)."""


class Series(BaseModel):
    """One series as the catalog declares it (``buckets`` resolved to bounds)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    type: Kind
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()

    @property
    def registered_name(self) -> str:
        """The name prometheus_client takes: a counter's without ``_total`` (it appends it)."""
        return self.name.removesuffix("_total") if self.type == "counter" else self.name

    @property
    def sample_names(self) -> frozenset[str]:
        """Every sample name a scrape can show for this series."""
        return frozenset(self.registered_name + suffix for suffix in SAMPLE_SUFFIXES[self.type])


def _problems(series: Series) -> list[str]:
    """What is wrong with one declaration, by the project's naming rules."""
    problems: list[str] = []
    if not _NAME.fullmatch(series.name):
        problems.append("is not a valid metric name")
    if (series.type == "counter") != series.name.endswith("_total"):
        problems.append("a counter's name, and only a counter's, ends in _total")
    if ("duration" in series.name or "latency" in series.name) and not series.name.endswith(
        "_seconds"
    ):
        problems.append("a duration is in seconds: the name ends in _seconds")
    if not series.help.strip():
        problems.append("has no help text")
    if len(set(series.labels)) != len(series.labels):
        problems.append("repeats a label")
    for label in series.labels:
        if not _LABEL.fullmatch(label) or label.startswith("__") or label in _RESERVED_LABELS:
            problems.append(f"label {label!r} is not a valid, unreserved label name")
    if (series.type == "histogram") != bool(series.buckets):
        problems.append("a histogram, and only a histogram, names a bucket set")
    return problems


def _bucket_sets(raw: Any) -> dict[str, tuple[float, ...]]:
    if not isinstance(raw, dict):
        raise CatalogError("'buckets' must map a set's name to its list of bounds")
    sets: dict[str, tuple[float, ...]] = {}
    for name, bounds in raw.items():
        if not isinstance(bounds, list) or not bounds:
            raise CatalogError(f"bucket set {name!r} must be a non-empty list of bounds")
        if not all(
            isinstance(b, int | float) and not isinstance(b, bool) and math.isfinite(b)
            for b in bounds
        ):
            raise CatalogError(f"bucket set {name!r} must hold finite numbers only")
        values = tuple(float(b) for b in bounds)
        if any(low >= high for low, high in pairwise(values)):
            raise CatalogError(f"bucket set {name!r} must be strictly increasing")
        sets[str(name)] = values
    return sets


def parse_catalog(document: Any) -> dict[str, Series]:
    """The catalog from its YAML document, every rule checked (``CatalogError`` if not)."""
    if not isinstance(document, dict) or set(document) != {"buckets", "series"}:
        raise CatalogError("the catalog has exactly two keys: 'buckets' and 'series'")
    bucket_sets = _bucket_sets(document["buckets"])
    if not isinstance(document["series"], dict):
        raise CatalogError("'series' must map each series name to its declaration")
    catalog: dict[str, Series] = {}
    used: set[str] = set()
    for name, body in document["series"].items():
        fields = dict(body) if isinstance(body, dict) else {}
        set_name = fields.pop("buckets", None)
        if set_name is not None:
            if set_name not in bucket_sets:
                raise CatalogError(f"{name}: no bucket set is called {set_name!r}")
            used.add(set_name)
            fields["buckets"] = bucket_sets[set_name]
        try:
            series = Series(name=name, **fields)
        except (ValidationError, TypeError) as exc:
            raise CatalogError(f"{name}: {exc}") from None
        problems = _problems(series)
        if problems:
            raise CatalogError(f"{name}: " + "; ".join(problems))
        catalog[series.name] = series
    unused = set(bucket_sets) - used
    if unused:
        raise CatalogError(f"bucket sets no series uses: {sorted(unused)}")
    return catalog


class _UniqueKeyLoader(yaml.SafeLoader):
    """``SafeLoader`` refusing a key given twice in one mapping.

    PyYAML keeps the last of two equal keys without a word: a series declared
    twice would lose its first declaration silently.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, str | int | float | bool):
                raise CatalogError(f"line {key_node.start_mark.line + 1}: a key must be a name")
            if key in seen:
                raise CatalogError(f"{key} is declared twice (line {key_node.start_mark.line + 1})")
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_catalog(path: Path = CATALOG_FILE) -> dict[str, Series]:
    """The catalog in ``path`` (``CatalogError`` if it breaks a rule or repeats a key)."""
    # S506 reads any Loader as unsafe; this one is a SafeLoader.
    return parse_catalog(yaml.load(path.read_text(), Loader=_UniqueKeyLoader))  # noqa: S506


@cache
def series_catalog() -> Mapping[str, Series]:
    """The services' catalog, read once per process."""
    return load_catalog()
