"""Phase 3 / Overview: the seed's production dashboard with valid queries.

The seed's panels read ``histogram_quantile(0.95, websocket_latency_ms)``, which is
not a query over a histogram; these read the recorded quantiles (rate of the
buckets summed by ``le``) in seconds, with the seed's 50/100/200 ms thresholds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

from grafana_foundation_sdk.builders import timeseries
from grafana_foundation_sdk.builders.common import GraphThresholdsStyleConfig
from grafana_foundation_sdk.builders.dashboard import Dashboard, Row
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.common import GraphThresholdsStyleMode

from alerts.dashboards.panels import graph, query, thresholds
from services.churn.success import SUCCESS_RATE_TARGET

WS = "job_quantile:websocket_message_latency_seconds:histogram_quantile_rate5m"
ML = "job_quantile:ml_inference_duration_seconds:histogram_quantile_rate5m"
FEATURE_P95 = (
    'feature_quantile:http_request_duration_seconds:histogram_quantile_rate5m{feature="%s"}'
)
CONVERSION = "job:realtime_lead_conversions:ratio_increase6h"
#: The seed's "Success Rate" (``sum(churn_interventions_successful) /
#: sum(churn_interventions_total)``, 65% target) as this project reads it:
#: delivered interventions the lead answered (responded or re-engaged, reported
#: later) over delivered interventions, not over every intervention staged
#: (why: services/churn/success.py), each counted over a day. Both sides count
#: interventions, once each: the success counter counts a delivered
#: intervention when it first becomes a success (services/churn/success.py;
#: the outcome counter would count "responded" and then "re_engaged" twice),
#: and the latency histogram observes each intervention once, at its first
#: delivery; ``outcome="delivered"`` counts sends, one per channel, so it would
#: divide by up to three per intervention.
CHURN_SUCCESS_RATE = (
    "sum(increase(churn_intervention_successes_total[1d]))"
    " / sum(increase(churn_intervention_latency_seconds_count[1d]))"
)
#: Sends that reached the CRM over sends that ended (delivered or dead-lettered).
CHURN_DELIVERY_RATE = (
    'sum(increase(churn_interventions_total{outcome="delivered"}[1d]))'
    ' / sum(increase(churn_interventions_total{outcome=~"delivered|dead_letter"}[1d]))'
)
#: Read from Postgres by every replica (services/rollback/undo_claims.py): max, not sum.
UNDO_CLAIM_AGE = "rollback_deployment_undo_oldest_claim_age_seconds"
#: Likewise read from Postgres (services/rollback/notices.py).
UNSENT_NOTICE_AGE = "rollback_notice_oldest_unsent_age_seconds"
#: Per replica, the share of tenants a feature reaches as that replica decides
#: (services/common/flags/cache.py: the kill switch times the rollout share).
#: Every replica of every service reads the same Redis keys, so the max across
#: replicas is the rollout state and max - min says whether a replica lags.
ROLLOUT_SHARE = "feature_flag_enabled * feature_flag_rollout_ratio"
CHURN_P95 = (
    'job_quantile:churn_intervention_latency_seconds:histogram_quantile_rate5m{quantile="0.95"}'
)
#: Field overrides for a count charted beside durations: its own unit and axis.
COUNT_ON_RIGHT_AXIS: Final = [
    model.DynamicConfigValue(id_val="unit", value="short"),
    model.DynamicConfigValue(id_val="custom.axisPlacement", value="right"),
]


def build() -> Dashboard:
    """The dashboard builder: one function per row, in the order the rows appear."""
    dashboard = (
        Dashboard("Phase 3 / Overview")
        .uid("phase3-overview")
        .tags(["phase3", "enterprisehub"])
        .refresh("30s")
        .time("now-6h", "now")
    )
    for title, row in ROWS:
        dashboard = dashboard.with_row(Row(title))
        for panel in row():
            dashboard = dashboard.with_panel(panel)
    return dashboard


def _websocket_row() -> list[timeseries.Panel]:
    """The "WebSocket performance" row."""
    latency_thresholds = thresholds(
        (None, "green"), (0.05, "yellow"), (0.1, "orange"), (0.2, "red")
    )
    return [
        graph(
            "Feed delivery latency (accepted to sent)",
            "s",
            query(f'max({WS}{{quantile="0.5"}})', "p50", "A"),
            query(f'max({WS}{{quantile="0.95"}})', "p95", "B"),
            query(f'max({WS}{{quantile="0.99"}})', "p99", "C"),
            width=16,
        ).thresholds(latency_thresholds),
        graph(
            "Live deliveries per second and open sockets",
            "short",
            query("sum(job:websocket_message_latency_seconds_count:rate5m)", "deliveries/s", "A"),
            query("sum(websocket_connections_active)", "open sockets", "B"),
            width=8,
        ),
        graph(
            "Feed handshakes per second: attempts and failures by reason",
            "reqps",
            query("sum(job:websocket_connection_attempts:rate5m)", "attempts", "A"),
            query(
                "sum by (reason) (job_reason:websocket_connection_failures:rate5m)",
                "failed: {{reason}}",
                "B",
            ),
        ),
        graph(
            "Share of handshakes failing by the service's doing (rollback at 25%)",
            "percentunit",
            query(
                "max(job:websocket_connection_service_failures:ratio_rate5m)",
                "redis, postgres or internal error",
            ),
        ).thresholds(thresholds((None, "green"), (0.05, "yellow"), (0.25, "red"))),
    ]


def _ml_inference_row() -> list[timeseries.Panel]:
    """The "ML inference" row."""
    return [
        graph(
            "Model latency p95",
            "s",
            query(f'max({ML}{{quantile="0.95"}})', "Lead intelligence", "A"),
        ).thresholds(
            thresholds((None, "green"), (0.035, "yellow"), (0.05, "orange"), (0.1, "red"))
        ),
        graph(
            "Claude features p95 (what callers wait)",
            "s",
            query("max(" + FEATURE_P95 % "property_vision" + ")", "Property vision", "A"),
            query("max(" + FEATURE_P95 % "ai_coaching" + ")", "Coaching analysis", "B"),
        ).thresholds(thresholds((None, "green"), (1.5, "yellow"), (2, "orange"), (3, "red"))),
        # Their traffic on a panel of its own: requests per second on the seconds
        # axis above would read as latency.
        graph(
            "Claude feature requests per second",
            "reqps",
            query("sum by (feature) (feature:http_requests:rate5m)", "{{feature}}", "A"),
        ),
        graph(
            "Leads scored per second",
            # Operations, not requests: one batch request scores many leads.
            "ops",
            query("sum by (kind) (rate(ml_predictions_total[$__rate_interval]))", "{{kind}}", "A"),
            query("sum(job:ml_inference_duration_seconds_count:rate5m)", "model calls", "B"),
        ),
    ]


def _claude_row() -> list[timeseries.Panel]:
    """The "Claude" row."""
    return [
        graph(
            "Claude cost per hour by feature",
            "currencyUSD",
            query("sum by (feature) (rate(claude_cost_dollars_total[1h])) * 3600", "{{feature}}"),
            # Calls that got no answer may have been billed: drawn apart, at their upper bound.
            query(
                "sum by (feature) (rate(claude_estimated_cost_dollars_total[1h])) * 3600",
                "{{feature}} (estimated, no answer)",
                "B",
            ),
            width=8,
        ),
        graph(
            "Claude retries per second by reason",
            "short",
            query("sum by (reason) (rate(claude_retries_total[$__rate_interval]))", "{{reason}}"),
            width=8,
        ),
        graph(
            "Claude circuit breaker open",
            "short",
            query('max by (job) (claude_circuit_state{state="open"})', "{{job}}"),
            width=8,
        ),
    ]


def _churn_row() -> list[timeseries.Panel]:
    """The "Churn prevention" row."""
    return [
        graph(
            "Interventions per minute by outcome",
            "short",
            query(
                "sum by (outcome) (rate(churn_interventions_total[$__rate_interval])) * 60",
                "{{outcome}}",
            ),
            width=8,
        ),
        graph(
            "Detection to intervention p95",
            "s",
            query(f"max({CHURN_P95})", "p95", "A"),
            query(
                "sum(job:churn_intervention_latency_seconds_count:increase30m)",
                "interventions in 30 m",
                "B",
            ),
            # Grows while no worker takes the queue, when the p95 has no samples.
            query("max(churn_queue_oldest_due_seconds)", "oldest due send waited", "C"),
            width=8,
        )
        .thresholds(thresholds((None, "green"), (30, "red")))
        # B counts interventions (the alerts' guard: a p95 of fewer than 5 means
        # little): in the panel's seconds, 300 of them read as "5 min".
        .override_by_query("B", COUNT_ON_RIGHT_AXIS),
        graph(
            "Queue depth and dead letters",
            "short",
            # Every replica reads the same queue: max, a sum would count it once per pod.
            query("max(churn_queue_depth)", "queued", "A"),
            query("sum(increase(churn_dead_letters_total[15m]))", "dead letters in 15 m", "B"),
            width=8,
        ),
        graph(
            "Intervention success rate over a day (responded or re-engaged / delivered; "
            f"target {SUCCESS_RATE_TARGET:.0%})",
            "percentunit",
            query(CHURN_SUCCESS_RATE, "success rate", "A"),
            query(CHURN_DELIVERY_RATE, "delivered / sends that ended", "B"),
            width=24,
        )
        # The seed's 65% as a line across the panel: red below it, green at or above.
        .thresholds(thresholds((None, "red"), (SUCCESS_RATE_TARGET, "green")))
        .thresholds_style(GraphThresholdsStyleConfig().mode(GraphThresholdsStyleMode.LINE)),
    ]


def _requests_row() -> list[timeseries.Panel]:
    """The "Requests" row."""
    return [
        graph(
            "Requests per second by service",
            "reqps",
            query("sum by (job) (job:http_requests:rate5m)", "{{job}}"),
        ),
        graph(
            "Failing requests (5xx) per second by service",
            "reqps",
            query("sum by (job) (job:http_requests_errors:rate5m)", "{{job}}"),
        ),
        graph(
            "Share of requests failing (5xx) by service",
            "percentunit",
            query("job:http_requests_errors:ratio_rate5m", "{{job}}"),
        ).thresholds(thresholds((None, "green"), (0.01, "yellow"), (0.05, "red"))),
        graph(
            "Successful requests per second, now and a day ago",
            "reqps",
            query("sum by (feature) (feature:http_requests_ok:rate1h)", "{{feature}} now", "A"),
            query(
                "sum by (feature) (feature:http_requests_ok:rate1h offset 1d)",
                "{{feature}} a day ago",
                "B",
            ),
            width=24,
        ),
    ]


def _feature_rollout_row() -> list[timeseries.Panel]:
    """The "Feature rollout" row."""
    return [
        graph(
            "Rollout state: share of tenants each feature reaches (max across replicas; "
            "a replica disagreeing missed a change)",
            "percentunit",
            query(f"max by (feature) ({ROLLOUT_SHARE})", "{{feature}}", "A"),
            query(
                "max by (feature) (feature_flag_rollout_ratio * (1 - feature_flag_enabled)) > 0",
                "{{feature}} switched off (share kept)",
                "B",
            ),
            query(
                f"max by (feature) ({ROLLOUT_SHARE}) - min by (feature) ({ROLLOUT_SHARE})",
                "{{feature}} replicas disagree by",
                "C",
            ),
        ),
        graph(
            "Flag decisions per second by feature and reason (TARGETING_MATCH on for all, "
            "SPLIT part of the tenants, DEFAULT off, ERROR never read: off)",
            "ops",
            query(
                "sum by (feature, reason) (rate(feature_flag_evaluations_total[$__rate_interval]))",
                "{{feature}} {{reason}}",
            ),
        ),
        graph(
            "Replicas deciding on a flag copy they cannot refresh from Redis "
            "(a rollback does not reach them; alert after 5 min)",
            "short",
            query("sum by (job) (feature_flags_stale)", "{{job}}"),
            width=12,
        ).thresholds(thresholds((None, "green"), (1, "red"))),
        graph(
            "Replicas finding a flag missing from Redis (off for every tenant; the rollback "
            "handler restores it from Postgres, alert after 2 min) and flags it restored",
            "short",
            query("sum by (feature) (feature_flag_missing)", "missing {{feature}}"),
            query(
                "sum by (feature) (increase(feature_flags_restored_total[1h]))",
                "restored {{feature}}",
                "B",
            ),
            width=12,
        ).thresholds(thresholds((None, "green"), (1, "red"))),
        graph(
            "Flags in Redis in a state no recorded change wrote (a stale copy after a failover): "
            "reverted to the record by the handler, or left behind it for an operator (alert "
            "after 10 min)",
            "short",
            query(
                "sum by (feature) (increase(feature_flags_reverted_total[1h]))",
                "reverted {{feature}}",
            ),
            query("max by (feature) (feature_flag_behind_record)", "behind {{feature}}", "B"),
            width=12,
        ).thresholds(thresholds((None, "green"), (1, "red"))),
        graph(
            "Oldest token revocation list a replica refuses from (a token revoked since works "
            "on it; read every AUTH_REVOCATION_REFRESH_SECONDS, alert over 2 min for 3 min)",
            "s",
            query("max by (job) (auth_revocations_age_seconds)", "{{job}}"),
            width=12,
        ).thresholds(thresholds((None, "green"), (120, "red"))),
    ]


def _rollbacks_row() -> list[timeseries.Panel]:
    """The "Automatic rollbacks" row."""
    return [
        graph(
            "Rollback triggers received by rollback-handler, by feature and outcome",
            "short",
            query(
                "sum by (feature, outcome) (increase(rollback_incidents_total[1h]))",
                "{{feature}} {{outcome}}",
            ),
            width=24,
        ),
        graph(
            "Deployment rollouts undone by rollback-handler (rollback.undoDeployments), "
            "by deployment and outcome",
            "short",
            query(
                "sum by (deployment, outcome) (increase(rollback_deployment_undos_total[1h]))",
                "{{deployment}} {{outcome}}",
            ),
            width=24,
        ),
        graph(
            "Oldest deployment undo claimed without an outcome "
            "(a handler died mid-undo; alert above 15 min)",
            "s",
            query(f"max by (job) ({UNDO_CLAIM_AGE})", "{{job}}"),
            width=24,
        ).thresholds(thresholds((None, "green"), (900, "red"))),
        graph(
            "Oldest rollback notice Slack has not taken (retried; alert above 15 min)",
            "s",
            query(f"max by (job) ({UNSENT_NOTICE_AGE})", "{{job}}"),
            width=24,
        ).thresholds(thresholds((None, "green"), (900, "red"))),
    ]


def _business_impact_row() -> list[timeseries.Panel]:
    """The "Business impact" row."""
    return [
        graph(
            "Lead conversion rate over 6 h, now and a week ago (alert below 85%)",
            "percentunit",
            query(f"max({CONVERSION})", "now", "A"),
            query(f"max({CONVERSION} offset 1w)", "a week ago", "B"),
        ),
        graph(
            "New leads and conversions per hour",
            "short",
            query(
                "sum by (stage) (rate(realtime_lead_stage_changes_total[$__rate_interval])) * 3600",
                "{{stage}}",
                "A",
            ),
            query(
                "sum by (stage) (job_stage:realtime_lead_stage_changes:increase6h) / 6",
                "{{stage}} (6 h average)",
                "B",
            ),
        ),
        graph(
            "Leads saved from churn per day (re-engaged after an intervention)",
            "short",
            query(
                'sum(increase(churn_interventions_total{outcome="re_engaged"}[1d]))',
                "re-engaged",
                "A",
            ),
            query(
                'sum(increase(churn_interventions_total{outcome="churned"}[1d]))',
                "churned anyway",
                "B",
            ),
            width=24,
        ),
    ]


#: (title, panels) of each row, top to bottom.
ROWS: Final[Sequence[tuple[str, Callable[[], list[timeseries.Panel]]]]] = (
    ("WebSocket performance", _websocket_row),
    ("ML inference", _ml_inference_row),
    ("Claude", _claude_row),
    ("Churn prevention", _churn_row),
    ("Requests", _requests_row),
    ("Feature rollout", _feature_rollout_row),
    ("Automatic rollbacks", _rollbacks_row),
    ("Business impact", _business_impact_row),
)
