"""``GET /health/churn``: the seed's fields, live.

``avg_intervention_latency_s`` (detection to the CRM accepting the first
send), ``interventions_24h`` and ``success_rate`` (delivered interventions
whose lead responded or re-engaged, over those delivered: this project's
reading of the seed's rate, whose reasons are in services/churn/success.py)
are fleet-wide values of the last 24 hours, aggregated from
``churn_interventions`` by the last detection pass; ``target_latency_s`` is
CHURN_INTERVENTION_TARGET_S, ``success_rate_target`` the seed's 65%
(``success_rate_met``: the rate is at least that, None without deliveries). The status follows
the seed: degraded when the average latency is 60 s or more (the
ChurnInterventionLatencyHigh alert), unhealthy when the model is not loaded.

Redis holds only the feature flags, whose in-process copy keeps the last known
state through an outage (services/common/flags/cache.py): detection, delivery
and the signal routes go on with Postgres alone, so a Redis outage makes the
service ``degraded`` (flag changes, the kill switch included, wait for Redis),
not unhealthy; its pods stay in the Service. Only a replica that has never
read the flags is unhealthy: for it every tenant is outside the rollout, so it
would refuse every signal (503 keeps traffic on the replicas that know them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from fastapi import FastAPI

from services.churn.runtime import ChurnRuntime
from services.churn.success import SUCCESS_RATE_TARGET
from services.common.health import FeatureHealth

DEGRADED_LATENCY_S: Final = 60.0


async def churn_health(app: FastAPI) -> Mapping[str, Any]:
    """Live values for /health/churn (see the module docstring)."""
    target = float(app.state.settings.churn_intervention_target_s)
    runtime: ChurnRuntime | None = getattr(app.state, "churn", None)
    if runtime is None:
        return {"status": "unhealthy", "model_loaded": False, "target_latency_s": target}
    snap = runtime.health
    average = snap.latency_sum / snap.latency_count if snap.latency_count else None
    success = snap.succeeded_24h / snap.delivered_24h if snap.delivered_24h else None
    slow = average is not None and average >= DEGRADED_LATENCY_S
    flags = runtime.flags
    status = "degraded" if slow or flags.stale else "healthy"
    if not flags.synced:
        status = "unhealthy"
    return {
        "status": status,
        "feature_flags": {"synced": flags.synced, "stale": flags.stale},
        "avg_intervention_latency_s": None if average is None else round(average, 3),
        "target_latency_s": target,
        "interventions_24h": snap.interventions_24h,
        "delivered_24h": snap.delivered_24h,
        "success_rate": None if success is None else round(success, 4),
        "success_rate_target": SUCCESS_RATE_TARGET,
        "success_rate_met": None if success is None else success >= SUCCESS_RATE_TARGET,
        "model_loaded": True,
        "model_version": runtime.model.version,
        "crm_configured": runtime.crm is not None,
        "last_pass_at": None if snap.last_pass_at is None else snap.last_pass_at.isoformat(),
        "last_pass_seconds": snap.last_pass_seconds,
        "queue_depth": runtime.last_queue_depth,
    }


#: Postgres only: a Redis outage is reported, and degrades, but never takes the pods
#: out of the Service (see the module docstring).
CHURN_FEATURE_HEALTH: Final = FeatureHealth(
    path="/health/churn", check=churn_health, requires=frozenset({"postgres"})
)
