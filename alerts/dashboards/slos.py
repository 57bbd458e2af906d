"""Phase 3 / SLOs: error ratios over the alert windows and the budget left."""

from __future__ import annotations

from grafana_foundation_sdk.builders.dashboard import Dashboard, QueryVariable, Row
from grafana_foundation_sdk.models import dashboard as model

from alerts.dashboards.panels import DATASOURCE, graph, query, single, thresholds

SEL = '{slo="$slo"}'


def build() -> Dashboard:
    """The dashboard builder."""
    slo_variable = (
        QueryVariable("slo")
        .label("SLO")
        .datasource(DATASOURCE)
        .query("label_values(slo:objective:ratio, slo)")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
    )
    ratio30d = (
        f"sum_over_time(slo:sli_errors:rate5m{SEL}[30d])"
        f" / sum_over_time(slo:sli_requests:rate5m{SEL}[30d])"
    )
    return (
        Dashboard("Phase 3 / SLOs")
        .uid("phase3-slos")
        .tags(["phase3", "enterprisehub", "slo"])
        .refresh("1m")
        .time("now-7d", "now")
        .with_variable(slo_variable)
        .with_row(Row("$slo"))
        .with_panel(single("Objective", "percentunit", query(f"slo:objective:ratio{SEL}")))
        .with_panel(single("Error ratio, 30 days", "percentunit", query(f"({ratio30d})")))
        .with_panel(
            single(
                "Error budget left, 30 days",
                "percentunit",
                query(f"1 - ({ratio30d}) / (1 - slo:objective:ratio{SEL})"),
            ).thresholds(thresholds((None, "red"), (0.25, "yellow"), (0.5, "green")))
        )
        .with_panel(
            single(
                "Burn rate, 1 hour",
                "short",
                query(f"slo:sli_error:ratio_rate1h{SEL} / (1 - slo:objective:ratio{SEL})"),
            ).thresholds(thresholds((None, "green"), (1, "yellow"), (6, "orange"), (14.4, "red")))
        )
        .with_panel(
            graph(
                "Error ratio over the alert windows",
                "percentunit",
                query(f"slo:sli_error:ratio_rate5m{SEL}", "5m", "A"),
                query(f"slo:sli_error:ratio_rate1h{SEL}", "1h", "B"),
                query(f"slo:sli_error:ratio_rate6h{SEL}", "6h", "C"),
                query(f"slo:sli_error:ratio_rate1d{SEL}", "1d", "D"),
                query(f"slo:sli_error:ratio_rate3d{SEL}", "3d", "E"),
                width=16,
            )
        )
        .with_panel(
            graph(
                "Events per second (bad and all)",
                "short",
                query(f"slo:sli_errors:rate5m{SEL}", "bad", "A"),
                query(f"slo:sli_requests:rate5m{SEL}", "all", "B"),
                query(f"slo:sli_requests:rate1h{SEL}", "all, 1h average", "C"),
                width=8,
            )
        )
        .with_row(Row("Alert windows"))
        .with_panel(
            graph(
                # 5m and 6h are above, with the long windows they pair with.
                "Error ratio over the other short windows (fast: 30m, slow: 2h)",
                "percentunit",
                query(f"slo:sli_error:ratio_rate30m{SEL}", "30m", "A"),
                query(f"slo:sli_error:ratio_rate2h{SEL}", "2h", "B"),
                width=12,
            )
        )
        .with_panel(
            graph(
                # The error SLOs' traffic guard reads these averages. An availability
                # SLO's events are its scrape targets (alerts/slo.py): not requests.
                "Events over the long windows (requests per second; targets for availability)",
                "short",
                query(f"slo:sli_requests:rate6h{SEL}", "6h", "A"),
                query(f"slo:sli_requests:rate1d{SEL}", "1d", "B"),
                query(f"slo:sli_requests:rate3d{SEL}", "3d", "C"),
                width=12,
            )
        )
    )
