"""Small builders shared by the dashboards: one look for every panel of one kind."""

from __future__ import annotations

from grafana_foundation_sdk.builders import prometheus, stat, timeseries
from grafana_foundation_sdk.builders.dashboard import QueryVariable, ThresholdsConfig
from grafana_foundation_sdk.models import dashboard as model

#: Grafana's provisioned Prometheus data source in kube-prometheus-stack.
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="prometheus")


def query(expr: str, legend: str = "", ref: str = "A") -> prometheus.Dataquery:
    """A Prometheus range query."""
    return (
        prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(ref).datasource(DATASOURCE)
    )


def thresholds(*steps: tuple[float | None, str]) -> ThresholdsConfig:
    """Absolute thresholds; the first step's value is None (minus infinity)."""
    return (
        ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=value, color=color) for value, color in steps])
    )


def graph(
    title: str, unit: str, *queries: prometheus.Dataquery, width: int = 12
) -> timeseries.Panel:
    """A time series panel."""
    panel = timeseries.Panel().title(title).unit(unit).datasource(DATASOURCE).span(width).height(8)
    for q in queries:
        panel = panel.with_target(q)
    return panel


def single(title: str, unit: str, q: prometheus.Dataquery, width: int = 6) -> stat.Panel:
    """A single-value panel."""
    return (
        stat.Panel()
        .title(title)
        .unit(unit)
        .datasource(DATASOURCE)
        .span(width)
        .height(4)
        .with_target(q)
    )


def job_variable(name: str = "job", *, metric: str = "http_requests_total") -> QueryVariable:
    """A drop-down of the Phase 3 services (Prometheus jobs) that serve HTTP requests.

    Not every job with a build: the dashboards export build info and no request
    series (Streamlit serves them), so their entry drew empty RED panels.
    """
    return (
        QueryVariable(name)
        .label("Service")
        .datasource(DATASOURCE)
        .query(f"label_values({metric}, job)")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .include_all(False)
    )
