"""Phase 3 / Services: rate, errors and duration (RED) of one service at a time."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, Row

from alerts.dashboards.panels import graph, job_variable, query, single, thresholds


def build() -> Dashboard:
    """The dashboard builder."""
    return (
        Dashboard("Phase 3 / Services")
        .uid("phase3-services")
        .tags(["phase3", "enterprisehub", "red"])
        .refresh("30s")
        .time("now-3h", "now")
        .with_variable(job_variable())
        .with_row(Row("$job"))
        .with_panel(single("Replicas up", "short", query('sum(up{job="$job"})'), width=8))
        .with_panel(
            single(
                "Requests per second",
                "reqps",
                query('sum(job:http_requests:rate5m{job="$job"})'),
                width=8,
            )
        )
        .with_panel(
            single(
                "Share failing (5xx)",
                "percentunit",
                query('sum(job:http_requests_errors:ratio_rate5m{job="$job"})'),
                width=8,
            ).thresholds(thresholds((None, "green"), (0.01, "yellow"), (0.05, "red")))
        )
        .with_panel(
            graph(
                "Rate by route and status",
                "reqps",
                query(
                    "sum by (route, status) "
                    '(rate(http_requests_total{job="$job"}[$__rate_interval]))',
                    "{{route}} {{status}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Errors (5xx) by route",
                "reqps",
                query(
                    "sum by (route) "
                    '(rate(http_requests_total{job="$job",status=~"5.."}[$__rate_interval]))',
                    "{{route}}",
                ),
            )
        )
        .with_panel(
            graph(
                "Duration p95 by route",
                "s",
                query(
                    "histogram_quantile(0.95, sum by (route, le) "
                    '(rate(http_request_duration_seconds_bucket{job="$job"}[$__rate_interval])))',
                    "{{route}}",
                ),
                width=24,
            )
        )
    )
