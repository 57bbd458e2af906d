"""Phase 3 / Tenants: one tenant's traffic and failures on every service, and the busiest.

Reads ``http_tenant_requests_total{tenant, status_class}`` (every authenticated
request, counted by ``services.common.metrics``): no route and no latency per
tenant, so the series stay tenants x status classes per service.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, QueryVariable, Row
from grafana_foundation_sdk.models import dashboard as model

from alerts.dashboards.panels import DATASOURCE, graph, query, single, thresholds

TENANT = 'tenant="$tenant"'
RATE = "rate(http_tenant_requests_total{%s}[$__rate_interval])"


def build() -> Dashboard:
    """The dashboard builder."""
    tenant_variable = (
        QueryVariable("tenant")
        .label("Tenant")
        .datasource(DATASOURCE)
        .query("label_values(http_tenant_requests_total, tenant)")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .include_all(False)
    )
    failing = f'sum(rate(http_tenant_requests_total{{{TENANT},status_class="5xx"}}[1h]))'
    total = f"sum(rate(http_tenant_requests_total{{{TENANT}}}[1h]))"
    return (
        Dashboard("Phase 3 / Tenants")
        .uid("phase3-tenants")
        .tags(["phase3", "enterprisehub", "tenants"])
        .refresh("1m")
        .time("now-24h", "now")
        .with_variable(tenant_variable)
        .with_row(Row("$tenant"))
        .with_panel(single("Requests per second, 1 hour", "reqps", query(total), width=8))
        .with_panel(
            single(
                "Share failing (5xx), 1 hour",
                "percentunit",
                # No 5xx series yet is 0%, not "No data" (a tenant that never failed).
                query(f"({failing} or vector(0)) / {total}"),
                width=8,
            ).thresholds(thresholds((None, "green"), (0.01, "yellow"), (0.05, "red")))
        )
        .with_panel(
            single(
                "Share refused (4xx: limits, flags, input), 1 hour",
                "percentunit",
                query(
                    f'sum(rate(http_tenant_requests_total{{{TENANT},status_class="4xx"}}[1h]))'
                    f" / {total}"
                ),
                width=8,
            )
        )
        .with_panel(
            graph(
                "Requests per second by service",
                "reqps",
                query(f"sum by (job) ({RATE % TENANT})", "{{job}}"),
            )
        )
        .with_panel(
            graph(
                "Requests per second by status class",
                "reqps",
                query(f"sum by (status_class) ({RATE % TENANT})", "{{status_class}}"),
            )
        )
        .with_row(Row("Every tenant"))
        .with_panel(
            graph(
                "Busiest tenants (requests per second, top 10)",
                "reqps",
                query(
                    "topk(10, sum by (tenant) "
                    "(rate(http_tenant_requests_total[$__rate_interval])))",
                    "{{tenant}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Tenants with the most failing requests (5xx per second, top 10)",
                "reqps",
                query(
                    "topk(10, sum by (tenant) "
                    '(rate(http_tenant_requests_total{status_class="5xx"}[$__rate_interval])))',
                    "{{tenant}}",
                ),
            )
        )
    )
