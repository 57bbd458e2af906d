"""Grafana dashboards as code (grafana-foundation-sdk, Grafana 11.6 schema).

Each module builds one dashboard; ``DASHBOARDS`` lists them and ``render()`` gives
file name -> JSON. Nothing rendered is committed: the stack renders them into
ConfigMaps for Grafana's sidecar, and ``python -m alerts dashboards --out DIR``
writes the files for a look or an import by hand.
"""

from __future__ import annotations

from collections.abc import Callable

from grafana_foundation_sdk.builders.dashboard import Dashboard
from grafana_foundation_sdk.cog.encoder import JSONEncoder

from alerts.dashboards import overview, services, slos

#: (file name, builder) of every dashboard, in menu order.
DASHBOARDS: tuple[tuple[str, Callable[[], Dashboard]], ...] = (
    ("phase3-overview.json", overview.build),
    ("phase3-services.json", services.build),
    ("phase3-slos.json", slos.build),
)


def render() -> dict[str, str]:
    """File name -> dashboard JSON (deterministic: sorted keys, fixed indent)."""
    encoder = JSONEncoder(sort_keys=True, indent=2)
    return {name: encoder.encode(build().build()) + "\n" for name, build in DASHBOARDS}
