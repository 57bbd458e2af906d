"""Deployment undos claimed and never finished, exported for an alert.

An undo is claimed on its incident row before the first Kubernetes API call
and is never retried (``procedure.undo_deployments``): a handler killed after
the claim leaves the row ``claimed`` with no outcome for good. Nothing else
would tell anyone, so each replica reads the age of the oldest such claim from
Postgres every :data:`REFRESH_SECONDS` into
``rollback_deployment_undo_oldest_claim_age_seconds`` (0 when none), and the
alert ``RollbackDeploymentUndoStuck`` fires once that age outgrows any undo
that is still running (alerts/rules/rollback.yml).

An operator then finds out, per Deployment, whether the dead handler's patch
landed (its ``restored-template-hash`` annotation says so) and records it with
:func:`close_claim` (``enterprisehub rollback close-undo``): the row becomes
``done`` with one outcome per planned Deployment, the gauge drops to 0 within a
refresh, and a later incident reads the restored template from it as from any
automatic undo.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from services.common.database import Database
from services.common.tasks import repeat
from services.rollback.deployments import UndoOutcome
from services.rollback.metrics import RollbackMetrics
from services.rollback.notices import enqueue
from services.rollback.notify import closed_undo_message

#: How often the gauge is read again: a small share of the alert's threshold.
REFRESH_SECONDS = 15.0

OLDEST_CLAIM_AGE = (
    "SELECT coalesce(extract(epoch FROM now() - min(deployments_claimed_at)), 0)::float8 "
    "FROM rollback_incidents WHERE deployments_state = 'claimed'"
)

STUCK_CLAIMS = (
    "SELECT incident_key, feature_name, deployments_planned, deployments_claimed_at, "
    "extract(epoch FROM now() - deployments_claimed_at)::float8 AS age_seconds "
    "FROM rollback_incidents WHERE deployments_state = 'claimed' "
    "ORDER BY deployments_claimed_at"
)
#: Locks the row so that two operators closing the same claim do it once.
LOCK_INCIDENT = (
    "SELECT deployments_state, deployments_planned, alertname FROM rollback_incidents "
    "WHERE incident_key = $1 FOR UPDATE"
)
CLOSE_CLAIM = (
    "UPDATE rollback_incidents SET deployments_state = 'done', deployments_done_at = now(), "
    "deployments_outcome = deployments_outcome || $2 "
    "WHERE incident_key = $1 AND deployments_state = 'claimed'"
)
#: A ``pod-template-hash`` as the Deployment controller writes it (a label value
#: of lowercase letters and digits).
TEMPLATE_HASH = re.compile(r"[a-z0-9]{1,63}")


class CloseClaimError(Exception):
    """The claim cannot be closed as asked; the message says why (nothing changed)."""


@dataclass(frozen=True, slots=True)
class ClosedClaim:
    """A claim closed by an operator: the incident's alert, the outcomes recorded
    and the message that tells Slack."""

    alertname: str
    outcomes: tuple[UndoOutcome, ...]
    message: str


@dataclass(frozen=True, slots=True)
class StuckClaim:
    """An undo claimed and never finished."""

    incident_key: str
    feature: str
    planned: tuple[str, ...]
    claimed_at: datetime
    age_seconds: float


async def stuck_claims(db: Database) -> list[StuckClaim]:
    """Every undo still ``claimed``, oldest first."""
    async with db.unscoped() as conn:
        rows = await conn.fetch(STUCK_CLAIMS)
    return [
        StuckClaim(
            incident_key=row["incident_key"],
            feature=row["feature_name"],
            planned=tuple(row["deployments_planned"]),
            claimed_at=row["deployments_claimed_at"],
            age_seconds=row["age_seconds"],
        )
        for row in rows
    ]


async def close_claim(
    db: Database,
    incident_key: str,
    restored: Mapping[str, str | None],
    *,
    actor: str,
    reason: str,
    environment: str,
    notify: bool = False,
) -> ClosedClaim:
    """Record what an operator found for each Deployment of a stuck undo.

    ``restored`` names every Deployment the claim planned, each with the
    ``pod-template-hash`` its undo restored (read from its
    ``rollback.enterprisehub.io/restored-template-hash`` annotation) or None
    when it was not rolled back. A verdict must be given for each planned
    Deployment and for nothing else: a missing one would read later as "never
    undone" and a hash recorded for the wrong Deployment would stop a later
    incident from undoing a release. Raises :class:`CloseClaimError` (and
    changes nothing) when the incident is unknown, not ``claimed`` (finished
    meanwhile or already closed) or the verdicts do not match the plan. With
    ``notify``, the message is queued for Slack with the record
    (``services.rollback.notices``).
    """
    for name, template_hash in restored.items():
        if template_hash is not None and not TEMPLATE_HASH.fullmatch(template_hash):
            raise CloseClaimError(
                f"{template_hash!r} (for {name}) is not a pod-template-hash: "
                "lowercase letters and digits, as in the restored-template-hash annotation"
            )
    async with db.unscoped() as conn, conn.transaction():
        row = await conn.fetchrow(LOCK_INCIDENT, incident_key)
        if row is None:
            raise CloseClaimError(f"no incident {incident_key!r}")
        if row["deployments_state"] != "claimed":
            state = row["deployments_state"] or "nothing to undo"
            raise CloseClaimError(f"incident {incident_key!r} has no open claim (undo: {state})")
        planned = list(row["deployments_planned"])
        missing = [name for name in planned if name not in restored]
        unplanned = sorted(set(restored) - set(planned))
        problems = []
        if missing:
            problems.append(f"say what happened to {', '.join(missing)}")
        if unplanned:
            problems.append(f"{', '.join(unplanned)} was not part of it")
        if problems:
            raise CloseClaimError(f"the claim planned {', '.join(planned)}: {'; '.join(problems)}")
        note = f"closed by hand by {actor}: {reason}"
        outcomes = tuple(
            UndoOutcome(
                name,
                rolled_back=restored[name] is not None,
                reason=note,
                restored_hash=restored[name],
            )
            for name in planned
        )
        await conn.execute(CLOSE_CLAIM, incident_key, [o.as_record() for o in outcomes])
        message = closed_undo_message(
            environment=environment,
            incident_key=incident_key,
            alertname=row["alertname"],
            actor=actor,
            outcomes=outcomes,
        )
        if notify:
            await enqueue(conn, incident_key=incident_key, kind="closed_undo", text=message)
    return ClosedClaim(row["alertname"], outcomes, message)


async def oldest_claim_age_seconds(db: Database) -> float:
    """Seconds since the oldest undo still ``claimed`` (no outcome) was claimed; 0 if none."""
    async with db.unscoped() as conn:
        age: float = await conn.fetchval(OLDEST_CLAIM_AGE)
    return age


async def refresh_undo_claims(db: Database, metrics: RollbackMetrics) -> float:
    """Set the gauge from Postgres and return the age it was set to."""
    age = await oldest_claim_age_seconds(db)
    metrics.oldest_undo_claim_age.set(age)
    return age


async def watch_undo_claims(db: Database, metrics: RollbackMetrics) -> None:
    """Refresh the gauge every :data:`REFRESH_SECONDS` until cancelled.

    While Postgres is unreachable the gauge keeps its last value (the handler
    cannot act without Postgres either, and its readiness says so).
    """
    await repeat(
        lambda: refresh_undo_claims(db, metrics), every=REFRESH_SECONDS, what="undo claims read"
    )
