"""Grafana dashboards as code (grafana-foundation-sdk, Grafana 11.6 schema).

Each module builds one dashboard; ``DASHBOARDS`` lists them and ``render()`` gives
file name -> JSON. Nothing rendered is committed: the stack renders them into
ConfigMaps for Grafana's sidecar, and ``python -m alerts dashboards --out DIR``
writes the files for a look or an import by hand.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from importlib.metadata import version
from typing import Any

from grafana_foundation_sdk.builders.dashboard import Dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from alerts.dashboards import overview, services, slos, tenants

#: (file name, builder) of every dashboard, in menu order.
DASHBOARDS: tuple[tuple[str, Callable[[], Dashboard]], ...] = (
    ("phase3-overview.json", overview.build),
    ("phase3-services.json", services.build),
    ("phase3-slos.json", slos.build),
    ("phase3-tenants.json", tenants.build),
)


def grafana_version() -> str:
    """The Grafana ``MAJOR.MINOR`` whose schema the installed SDK builds.

    grafana-foundation-sdk versions carry an epoch (``1769699379!11.6.0``); the
    rest is the Grafana release it targets. The stack runs that Grafana
    (``grafana.image.tag`` in charts/kube-prometheus-stack/values.yaml; a test
    keeps the two in step).
    """
    release = version("grafana-foundation-sdk").split("!")[-1]
    match = re.match(r"(\d+)\.(\d+)", release)
    if match is None:
        raise ValueError(f"grafana-foundation-sdk {release!r} names no Grafana version")
    return f"{match[1]}.{match[2]}"


def render() -> dict[str, str]:
    """File name -> dashboard JSON (deterministic: sorted keys, fixed indent)."""
    encoder = JSONEncoder(sort_keys=True, indent=2)
    return {name: encoder.encode(build().build()) + "\n" for name, build in DASHBOARDS}


#: The template variables the dashboards use, as Grafana writes them in a query.
VARIABLES: tuple[str, ...] = ("$job", "$slo", "$tenant")


def queries(dashboard_json: str) -> list[str]:
    """Every PromQL expression of a rendered dashboard: panel targets, then the
    queries behind its ``label_values(SERIES, label)`` variables (``SERIES``)."""
    dashboard: dict[str, Any] = json.loads(dashboard_json)
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", []) if "expr" in t]
    for variable in dashboard.get("templating", {}).get("list", []):
        match = re.fullmatch(r"label_values\((.+), \w+\)", str(variable.get("query", "")))
        if match:
            exprs.append(match.group(1))
    return exprs


def as_promql(expr: str, values: Mapping[str, str], rate_interval: str = "1m") -> str:
    """``expr`` with Grafana's variables replaced as Grafana does before sending it.

    ``values`` maps each of ``VARIABLES`` to the value to put in its place.
    """
    for variable in VARIABLES:
        expr = expr.replace(variable, values[variable])
    return expr.replace("$__rate_interval", rate_interval)
