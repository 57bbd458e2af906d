"""Grafana dashboards as code (grafana-foundation-sdk, Grafana 11.6 schema).

Each module builds one dashboard; ``DASHBOARDS`` lists them and ``render()`` gives
file name -> JSON. Nothing rendered is committed: the stack renders them into
ConfigMaps for Grafana's sidecar, and ``python -m alerts dashboards --out DIR``
writes the files for a look or an import by hand.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from importlib.metadata import version

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
