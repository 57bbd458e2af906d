"""Detection and staging: score a tenant's active leads and stage their interventions.

One tenant at a time, in one tenant transaction:

1. a transaction-level advisory lock per tenant (``pg_try_advisory_xact_lock``)
   claims the tenant for this pass: two schedulers (or replicas) split the
   tenants instead of both scoring each one; a signal-triggered pass over a
   few leads does not take it (the constraints below make it safe anyway);
2. read the active leads' aggregates (no lock), compute the features at the
   pass's clock and score them with the calibrated model; then lock, in
   lead_id order, only the leads this pass may write (those at ``watch`` or
   above, and those whose stage changed), read them again under the lock and
   score them again: a signal committed since the first read (a reply) is
   what they are staged on, and a signal after it waits for this pass and
   then cancels what it staged. A lead below ``watch`` that stays there is
   read and scored but neither locked nor written (no row lock, no new row
   version, no WAL for most of the tenant on every pass); a signal that
   raises its risk queues its own detection. Store the risk state of the
   leads at ``watch`` or above whose probability moved, and of every lead
   whose stage changed;
3. for leads at ``nudge`` or above, insert one ``churn_interventions`` row
   per lead, stage and window unless the window already holds that stage or
   a higher one (``churn_interventions_once`` turns a race into a no-op);
4. for each new intervention, one ``churn_outbox`` row per channel with its
   idempotency key and earliest send time (quiet hours in the lead's zone),
   and, on the same transaction, one delivery job for the intervention's
   rows if they are due together, else one per row (queue.py).

Fairness across tenants: a job's priority is minus its position in its
tenant's queue (the tenant's backlog plus its rank in this pass), and workers
take the highest priority first. The next send of a tenant with ten waiting
therefore goes before the 11th of a tenant with 4,000: tenants are served
round-robin by queue position, whatever their volume.

Without GHL_API_KEY the outbox rows are written ``not_sent`` with reason
``crm_not_configured`` and no job: recorded, never reported as delivered.
"""

from __future__ import annotations

import asyncio
import bisect
import time
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Literal

import numpy as np

from services.churn.contact_rules import InvalidTimeZone, QuietHours
from services.churn.features import LEAD_COLUMNS_SQL, feature_matrix
from services.churn.model import ChurnModel
from services.churn.queue import (
    DeliveryJob,
    GroupDelivery,
    SingleDelivery,
    defer_delivery_jobs,
    pending_backlog,
)
from services.churn.stages import LEAD_CHANNELS, STAGES, THRESHOLDS

Trigger = Literal["schedule", "signal"]
KEY_NAMESPACE: Final = uuid.UUID("8f0c6a52-3a8b-4f55-9f0e-2f5e0c1d7a11")
PASS_LOCK: Final = zlib.crc32(b"churn-detect") - 2**31
STAGE_NAMES: Final = [stage.name for stage in STAGES]
NOT_CONFIGURED: Final = "crm_not_configured"
# Every transaction that writes a lead's rows locks the lead first, in lead_id
# order (signals, passes) or one at a time (deliveries): no lock cycle, no deadlock.
LOCK_IN_ORDER: Final = " ORDER BY lead_id FOR NO KEY UPDATE"
# Built from constants only (no input reaches it).
ACTIVE_LEADS_SQL: Final = (
    f"SELECT {LEAD_COLUMNS_SQL}, timezone, risk_stage, churn_probability::float8 AS p, "  # noqa: S608
    "extract(epoch FROM last_signal_received_at)::float8 AS received "
    "FROM churn_leads WHERE status = 'active'"
)


@dataclass(frozen=True, slots=True)
class DetectionConfig:
    """What a pass needs from the settings."""

    window_days: int
    quiet_hours: QuietHours
    crm_configured: bool


@dataclass
class TenantPass:
    """What one tenant's pass did."""

    tenant_id: str
    claimed: bool = True
    scored: int = 0
    updated: int = 0
    interventions: int = 0
    sends_queued: int = 0
    not_sent: int = 0
    by_stage: dict[str, int] = field(default_factory=dict)
    created: list[tuple[str, str, list[str]]] = field(default_factory=list)
    detection_seconds: list[float] = field(default_factory=list)


def window_start(now: datetime, days: int) -> datetime:
    """The start of the fixed window (epoch-aligned, ``days`` long) holding ``now``."""
    span = days * 86_400
    return datetime.fromtimestamp(int(now.timestamp()) // span * span, UTC)


def idempotency_key(
    tenant_id: str, lead_id: str, stage: str, window: datetime, channel: str
) -> str:
    """The same send always gets the same key, whichever replica stages it."""
    name = f"{tenant_id}|{lead_id}|{stage}|{int(window.timestamp())}|{channel}"
    return f"churn-{uuid.uuid5(KEY_NAMESPACE, name)}"


def _stage_indices(probabilities: np.ndarray) -> np.ndarray:
    # 0 = below watch, 1 = watch, ... 4 = escalate.
    return np.searchsorted(np.asarray(THRESHOLDS), probabilities, side="right")


def _stage_index(probability: float) -> int:
    """`_stage_indices` of one probability."""
    return bisect.bisect_right(THRESHOLDS, probability)


async def detect_tenant(
    db: Any,
    *,
    tenant_id: str,
    model: ChurnModel,
    config: DetectionConfig,
    now: datetime | None = None,
    lead_ids: Sequence[str] | None = None,
    trigger: Trigger = "schedule",
) -> TenantPass:
    """Run steps 1-4 of the module docstring for one tenant; return what was done."""
    started = time.perf_counter()
    result = TenantPass(tenant_id=tenant_id)
    async with db.tenant(tenant_id) as conn:
        now = now or datetime.now(UTC)
        if lead_ids is None:
            claimed = await conn.fetchval(
                "SELECT pg_try_advisory_xact_lock($1, hashtext($2))", PASS_LOCK, tenant_id
            )
            if not claimed:
                result.claimed = False
                return result
            read = await conn.fetch(ACTIVE_LEADS_SQL)
            result.scored = len(read)
            p, _ = await _score(model, read, now)
            first = {
                row["lead_id"]: (row, prob) for row, prob in zip(read, p.tolist(), strict=True)
            }
            writable = [lead_id for lead_id, (row, prob) in first.items() if _may_write(row, prob)]
            rows = await _lock_leads(conn, writable) if writable else []
            p, stage_index = await _rescore(model, rows, now, first)
        else:
            rows = await _lock_leads(conn, lead_ids)
            result.scored = len(rows)
            p, stage_index = await _score(model, rows, now)
        if not rows:
            return result
        await _store_risk(conn, rows, p, stage_index, now, model.version, result)
        await _stage_interventions(
            conn,
            tenant_id=tenant_id,
            rows=rows,
            p=p,
            stage_index=stage_index,
            now=now,
            started=started,
            trigger=trigger,
            model_version=model.version,
            config=config,
            result=result,
        )
    return result


async def _lock_leads(conn: Any, lead_ids: Sequence[str]) -> list[Any]:
    """The active ones of ``lead_ids``, read again under a row lock taken in lead_id order."""
    rows: list[Any] = await conn.fetch(
        ACTIVE_LEADS_SQL + " AND lead_id = ANY($1::text[])" + LOCK_IN_ORDER, list(lead_ids)
    )
    return rows


async def _score(
    model: ChurnModel, rows: Sequence[Any], now: datetime
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (4 decimals, as stored) and stage indices of ``rows`` at ``now``."""
    if not rows:
        return np.empty(0), np.empty(0, dtype=np.int64)
    x = feature_matrix(rows, now=now.timestamp())
    # Scoring thousands of rows takes milliseconds; off the loop all the same.
    p = await asyncio.to_thread(model.predict, x) if len(rows) > 512 else model.predict(x)
    p = np.round(np.clip(p, 0.0, 1.0), 4)
    return p, _stage_indices(p)


def _may_write(row: Any, probability: float) -> bool:
    """Whether this pass may write the lead: at ``watch`` or above, or its stage changed."""
    index = _stage_index(probability)
    return index >= 1 or _risk_changed(row, probability, index)


async def _rescore(
    model: ChurnModel,
    rows: Sequence[Any],
    now: datetime,
    first: dict[str, tuple[Any, float]],
) -> tuple[np.ndarray, np.ndarray]:
    """`_score` of the rows read again under lock, reusing the first read's
    probability of every row that did not change in between (nearly all)."""
    p = np.empty(len(rows), dtype=np.float64)
    changed = []
    for i, row in enumerate(rows):
        before = first.get(row["lead_id"])
        if before is not None and tuple(before[0]) == tuple(row):
            p[i] = before[1]
        else:
            changed.append(i)
    if changed:
        p[changed], _ = await _score(model, [rows[i] for i in changed], now)
    return p, _stage_indices(p)


def _risk_changed(row: Any, probability: float, index: int) -> bool:
    """Whether the stored risk state of ``row`` must change.

    Always when its stage changed; for a lead at ``watch`` or above also when
    its probability moved by half a point. Below ``watch`` the probability is
    not kept up to date: nothing reads it there, and writing it would rewrite
    nearly every lead of the tenant on every pass.
    """
    stage = STAGE_NAMES[index - 1] if index else None
    if row["risk_stage"] != stage:
        return True
    return index >= 1 and (row["p"] is None or abs(row["p"] - probability) >= 0.005)


async def _store_risk(
    conn: Any,
    rows: Sequence[Any],
    p: np.ndarray,
    stage_index: np.ndarray,
    now: datetime,
    version: str,
    result: TenantPass,
) -> None:
    ids: list[str] = []
    probabilities: list[float] = []
    stages: list[str | None] = []
    for row, prob, index in zip(rows, p.tolist(), stage_index.tolist(), strict=True):
        stage = STAGE_NAMES[index - 1] if index else None
        if _risk_changed(row, prob, index):
            ids.append(row["lead_id"])
            probabilities.append(prob)
            stages.append(stage)
    if ids:
        await conn.execute(
            """
            UPDATE churn_leads l SET churn_probability = u.p, risk_stage = u.stage,
                   scored_at = $4, model_version = $5
            FROM unnest($1::text[], $2::float8[], $3::text[]) AS u(lead_id, p, stage)
            WHERE l.lead_id = u.lead_id
            """,
            ids,
            probabilities,
            stages,
            now,
            version,
        )
    result.updated = len(ids)


async def _stage_interventions(
    conn: Any,
    *,
    tenant_id: str,
    rows: Sequence[Any],
    p: np.ndarray,
    stage_index: np.ndarray,
    now: datetime,
    started: float,
    trigger: Trigger,
    model_version: str,
    config: DetectionConfig,
    result: TenantPass,
) -> None:
    at_risk = np.nonzero(stage_index >= 2)[0]
    if not len(at_risk):
        return
    window = window_start(now, config.window_days)
    elapsed = time.perf_counter() - started
    lead_ids, probabilities, stages, ranks, latencies = [], [], [], [], []
    for i in at_risk.tolist():
        row = rows[i]
        lead_ids.append(row["lead_id"])
        probabilities.append(float(p[i]))
        stages.append(STAGE_NAMES[stage_index[i] - 1])
        ranks.append(int(stage_index[i]))
        if trigger == "signal" and row["received"] is not None:
            latencies.append(max(now.timestamp() - row["received"], 0.0) + elapsed)
        else:
            latencies.append(elapsed)
    created = await conn.fetch(
        """
        INSERT INTO churn_interventions (lead_id, churn_probability, intervention_stage,
            channels_used, window_start, status, detected_at, detection_latency_seconds,
            model_version)
        SELECT u.lead_id, u.p, u.stage, '{}', $6, 'pending', $7, u.latency, $8
        FROM unnest($1::text[], $2::float8[], $3::text[], $4::int[], $5::float8[])
             AS u(lead_id, p, stage, rank, latency)
        WHERE NOT EXISTS (
            SELECT 1 FROM churn_interventions i
            WHERE i.lead_id = u.lead_id AND i.window_start = $6
              AND array_position($9::text[], i.intervention_stage::text) >= u.rank)
        ON CONFLICT ON CONSTRAINT churn_interventions_once DO NOTHING
        RETURNING intervention_id, lead_id, intervention_stage
        """,
        lead_ids,
        probabilities,
        stages,
        ranks,
        latencies,
        window,
        now,
        model_version,
        STAGE_NAMES,
    )
    if not created:
        return
    latency_of = dict(zip(lead_ids, latencies, strict=True))
    result.detection_seconds = [latency_of[record["lead_id"]] for record in created]
    zones = {rows[i]["lead_id"]: rows[i]["timezone"] for i in at_risk.tolist()}
    stage_channels = {stage.name: stage.channels for stage in STAGES}
    backlog = await pending_backlog(conn) if config.crm_configured else 0
    outbox: dict[str, list[Any]] = {k: [] for k in ("iid", "lead", "channel", "key", "nb")}
    for record in created:
        stage = record["intervention_stage"]
        result.by_stage[stage] = result.by_stage.get(stage, 0) + 1
        channels: list[str] = list(stage_channels[stage])
        result.created.append((record["lead_id"], stage, channels))
        for channel in channels:
            not_before = now
            if channel in LEAD_CHANNELS:
                try:
                    not_before = config.quiet_hours.next_allowed(now, zones[record["lead_id"]])
                except InvalidTimeZone:
                    not_before = config.quiet_hours.next_allowed(now, "UTC")
            outbox["iid"].append(record["intervention_id"])
            outbox["lead"].append(record["lead_id"])
            outbox["channel"].append(channel)
            outbox["key"].append(
                idempotency_key(tenant_id, record["lead_id"], stage, window, channel)
            )
            outbox["nb"].append(not_before)
    result.interventions = len(created)
    status = "pending" if config.crm_configured else "not_sent"
    reason = None if config.crm_configured else NOT_CONFIGURED
    inserted = await conn.fetch(
        """
        INSERT INTO churn_outbox (intervention_id, lead_id, channel, idempotency_key,
                                  status, reason, not_before)
        SELECT u.iid, u.lead, u.channel, u.key, $6, $7, u.nb
        FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
             AS u(iid, lead, channel, key, nb)
        ON CONFLICT ON CONSTRAINT churn_outbox_once DO NOTHING
        RETURNING outbox_id, intervention_id, not_before
        """,
        outbox["iid"],
        outbox["lead"],
        outbox["channel"],
        outbox["key"],
        outbox["nb"],
        status,
        reason,
    )
    if not config.crm_configured:
        await conn.execute(
            "UPDATE churn_interventions SET status = 'not_sent', reason = $2 "
            "WHERE intervention_id = ANY($1::uuid[])",
            [record["intervention_id"] for record in created],
            NOT_CONFIGURED,
        )
        result.not_sent = len(inserted)
        return
    result.sends_queued = await _defer_sends(conn, tenant_id, inserted, backlog)


async def _defer_sends(conn: Any, tenant_id: str, inserted: Sequence[Any], backlog: int) -> int:
    """One job per intervention whose rows are due together, one per row otherwise.

    Returns the sends queued.
    Priorities count sends (not jobs): a group takes the position of its
    first send, and the tenant's next job the position after its last.
    """
    by_intervention: dict[Any, list[Any]] = {}
    for row in inserted:
        by_intervention.setdefault(row["intervention_id"], []).append(row)
    jobs: list[DeliveryJob] = []
    position = backlog
    for intervention_id, rows in by_intervention.items():
        if len(rows) > 1 and len({row["not_before"] for row in rows}) == 1:
            jobs.append(
                GroupDelivery(
                    intervention_id=intervention_id,
                    outbox_ids=tuple(row["outbox_id"] for row in rows),
                    priority=-(position + 1),
                    not_before=rows[0]["not_before"],
                )
            )
            position += len(rows)
            continue
        for row in rows:
            position += 1
            jobs.append(
                SingleDelivery(
                    outbox_id=row["outbox_id"], priority=-position, not_before=row["not_before"]
                )
            )
    return await defer_delivery_jobs(conn, tenant_id=tenant_id, jobs=jobs)
