"""What ``rollout advance`` measures: Prometheus, stored experiment results, the audit.

Prometheus answers through its HTTP API (``/api/v1/query``) with the
services' own metrics, each feature's as its plan names them
(``schedule.PLANS``): the p95 of its latency histogram (from the buckets summed
by ``le``) and the share of 5xx among its routes' ``http_requests_total``; at
0 %, where the feature has no traffic of its own, the service's instead:
``min(up)`` of its targets and the 5xx share of all its answers. An
empty vector or NaN is "no data", which ``decide`` turns into a hold. The
experiment numbers come from the newest ``experiment_results`` row of the
feature's primary metric (``PRIMARY_METRICS``, which also prices it in the
reports) computed since the stage began (an older one described another
stage; another metric, stored later, is not the one the stage is judged on).
At 100 % (``Stage.adoption_source`` "rows") adoption and daily active usage
come from the stored daily rows instead (``services/impact/usage.py``), over
the whole days since the stage began up to yesterday (the day the stage began
is partial, today is not aggregated yet).

The sample-ratio check is recomputed here from the stored arm sizes against
the stage's treatment share (its percentage / 100: 0.10 at 10 %), never taken
from the stored ``srm_p_value``: that one was computed against whatever
``--expected-split`` the analysis was given, so an analysis run with 0.5 at a
10 % stage held every honest result forever, and a wrong explicit value hid a
real mismatch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from services.common.database import Database
from services.common.flags import FlagState
from services.impact.assumptions import PRIMARY_METRICS, benefit
from services.impact.stats import srm_p_value
from services.impact.usage import usage_rates
from services.rollout.operations import stage_started_at
from services.rollout.schedule import FeaturePlan, Observations, Stage


class PrometheusError(RuntimeError):
    """Prometheus could not answer a query."""


class PrometheusQueryRefused(PrometheusError):  # noqa: N818 - reads as the condition it names
    """Prometheus answered that the query itself is wrong (``bad_data``): a mistyped
    ``--selector`` or ``--window``, which no later run would answer either."""


def latency_query(histogram: str, selector: str, window: str) -> str:
    """p95 of ``histogram`` over ``window`` for the series matching ``selector``."""
    return (
        f"histogram_quantile(0.95, sum by (le) (rate({histogram}_bucket{{{selector}}}[{window}])))"
    )


def error_rate_query(selector: str, window: str) -> str:
    """Share of 5xx answers over ``window``."""
    # No 5xx series at all is a rate of 0, not "no data"; no requests at all
    # still gives an empty result (0 / nothing), which is "no data".
    return (
        f'(sum(rate(http_requests_total{{{selector},status=~"5.."}}[{window}])) or vector(0)) / '
        f"sum(rate(http_requests_total{{{selector}}}[{window}]))"
    )


def service_up_query(selector: str) -> str:
    """1 when every scrape target matching ``selector`` is up, 0 when one is down."""
    return f"min(up{{{selector}}})"


async def query_scalar(client: httpx.AsyncClient, base_url: str, promql: str) -> float | None:
    """The single value of an instant query; None when the result is empty.

    Raises ``PrometheusError`` when Prometheus is unreachable or refuses the query.
    """
    try:
        response = await client.get(
            f"{base_url.rstrip('/')}/api/v1/query", params={"query": promql}
        )
    except httpx.HTTPError as exc:
        raise PrometheusError(f"prometheus unreachable at {base_url}: {exc}") from None
    try:
        body = response.json()
    except ValueError:
        raise PrometheusError(f"prometheus answered {response.status_code} without JSON") from None
    if response.status_code != 200 or body.get("status") != "success":
        message = f"prometheus refused the query: {body.get('error', response.text)}"
        if body.get("errorType") == "bad_data":
            raise PrometheusQueryRefused(f"{message} ({promql})")
        raise PrometheusError(message)
    result = body["data"]["result"]
    if body["data"]["resultType"] == "scalar":
        return float(result[1])
    if not result:
        return None
    if len(result) > 1:
        raise PrometheusError(f"expected one series, got {len(result)}: {promql}")
    return float(result[0]["value"][1])


@dataclass
class Gathered:
    """Observations plus where each came from (recorded with the decision)."""

    observations: Observations
    sources: dict[str, Any] = field(default_factory=dict)


async def gather(
    *,
    db: Database,
    environment: str,
    feature: str,
    state: FlagState,
    plan: FeaturePlan,
    stage: Stage,
    prometheus_url: str | None,
    selector: str | None = None,
    window: str = "1d",
    now: datetime | None = None,
    client: httpx.AsyncClient | None = None,
) -> Gathered:
    """Everything ``decide`` needs for ``feature``; failures leave fields None.

    Raises ``PrometheusQueryRefused`` for a query Prometheus calls malformed.

    The sample ratio is tested against the treatment share ``stage`` assigns
    (its percentage / 100).
    """
    now = now or datetime.now(UTC)
    sources: dict[str, Any] = {}
    values: dict[str, float | None] = {}
    started = await stage_started_at(db, environment, feature, state)
    sources["stage_started_at"] = started.isoformat() if started else None
    values["days_in_stage"] = (now - started).total_seconds() / 86400 if started else None

    if prometheus_url is None:
        sources["prometheus"] = "PROMETHEUS_URL not set"
    else:
        # ``selector`` replaces the plan's matchers of both (another labelling).
        if stage.feature_traffic:
            queries = {
                "latency_p95_seconds": latency_query(
                    plan.latency_histogram, selector or plan.latency_selector(), window
                ),
                "error_rate": error_rate_query(selector or plan.request_selector(), window),
            }
        else:
            service = selector or plan.service_selector()
            queries = {
                "service_up": service_up_query(service),
                "error_rate": error_rate_query(service, window),
            }
        sources["prometheus"] = {"url": prometheus_url, "queries": queries}
        owned = client is None
        http = client or httpx.AsyncClient(timeout=10.0)
        try:
            for name, promql in queries.items():
                try:
                    values[name] = await query_scalar(http, prometheus_url, promql)
                except PrometheusQueryRefused:
                    # Not "no data": recorded as a hold, a mistyped selector held the
                    # rollout at every run, exit 0, the cause only in the inputs.
                    raise
                except PrometheusError as exc:
                    sources[f"{name}_error"] = str(exc)
        finally:
            if owned:
                await http.aclose()

    metric = PRIMARY_METRICS[feature]
    sources["experiment_metric"] = metric
    result = await latest_result(db, feature, metric=metric, since=started)
    sources["experiment_result"] = result and {
        k: result[k] for k in ("result_id", "computed_at", "metric")
    }
    if result is not None:
        # The lift as the feature's benefit (churn's falling churn rate, positive).
        body = benefit(metric, result["result"])
        for name, key in (
            ("n_control", "n_control"),
            ("n_treatment", "n_treatment"),
            ("lift", "lift"),
            ("lift_ci_low", "seq_lift_ci_low"),
            ("adoption", "adoption"),
        ):
            raw = body.get(key)
            values[name] = float(raw) if isinstance(raw, int | float) else None
        expected_share = stage.percentage / 100
        values["srm_p_value"] = _srm(values["n_control"], values["n_treatment"], expected_share)
        sources["srm"] = {
            "expected_split": expected_share,
            "stored_expected_split": body.get("expected_split"),
            "stored_srm_p_value": body.get("srm_p_value"),
        }
    if stage.adoption_source == "rows":
        values["adoption"] = values["daily_active_usage"] = None
        rates = None
        if started is not None:
            first, last = started.date() + timedelta(days=1), now.date() - timedelta(days=1)
            rates = await usage_rates(db, feature, first, last)
            sources["usage"] = {"start": first.isoformat(), "end": last.isoformat()}
        if rates is not None:
            values["adoption"] = rates.adoption
            values["daily_active_usage"] = rates.daily_active
            sources["usage"] |= {"tenants": rates.tenants, "days": rates.days}
    clean = {k: (v if v is None or math.isfinite(v) else math.nan) for k, v in values.items()}
    return Gathered(Observations(**clean), sources)


def _srm(n_control: float | None, n_treatment: float | None, share: float) -> float | None:
    """The SRM p-value of the stored arm sizes against ``share``; None when undefined.

    At 0 % and 100 % one arm is empty by design (no SRM test; those stages need
    none), and counts that are missing, negative or all zero test nothing.
    """
    if n_control is None or n_treatment is None or not 0 < share < 1:
        return None
    if not (math.isfinite(n_control) and math.isfinite(n_treatment)):
        return None
    if n_control < 0 or n_treatment < 0 or n_control + n_treatment == 0:
        return None
    return srm_p_value(n_control, n_treatment, share)


async def latest_result(
    db: Database, feature: str, *, metric: str, since: datetime | None
) -> dict[str, Any] | None:
    """The newest stored result of ``feature``'s ``metric`` computed after ``since``."""
    async with db.unscoped() as conn:
        row = await conn.fetchrow(
            "SELECT result_id, computed_at, metric, result FROM experiment_results "
            "WHERE feature_name = $1 AND metric = $2 "
            "AND ($3::timestamptz IS NULL OR computed_at >= $3) "
            "ORDER BY computed_at DESC, result_id DESC LIMIT 1",
            feature,
            metric,
            since,
        )
    if row is None:
        return None
    out = dict(row)
    out["computed_at"] = out["computed_at"].isoformat()
    return out
