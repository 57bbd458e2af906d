"""Turn a feature's flag off once per incident, with its audit rows.

The incident row, the flag audit rows and the flag writes share one Postgres
transaction: the incident row is inserted first with ``ON CONFLICT DO NOTHING``,
so a second copy of the same incident (an Alertmanager retry, a repeat, another
HA peer, even concurrently) waits for the first to commit, finds the row and
changes nothing. If Redis fails, the transaction rolls back and the next copy
tries again. A rollback keeps each flag's percentage, so turning the feature
back on returns to the same rollout step.

When the stack lets the handler undo deployments, the same transaction marks
the undo of the Deployments serving the features whose flag it turned off as
pending; :func:`undo_deployments` then claims it for exactly one copy of the
incident, undoes each rollout and records the outcomes on the incident row
(with the template it restored, so that a later incident never undoes that
undo while no release came in between).
A Deployment whose feature was already off is left alone (an earlier incident
or an operator already acted: undoing again would bring back the template that
failed).

With ``notify``, the Slack message of a rollback that turned a flag off, and of
an undo's outcomes, is queued in the transaction that records it
(``services.rollback.notices``): a crash after the commit cannot lose it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from services.common.database import Database
from services.common.flags import FlagState
from services.common.redis import Redis
from services.rollback.deployments import DeploymentRollbacker, UndoOutcome
from services.rollback.notices import enqueue
from services.rollback.notify import rollback_message, undo_message
from services.rollout.operations import Change, apply_changes, plan_changes
from services.rollout.restore import restore_missing, revert_stale

log = logging.getLogger(__name__)

INSERT_INCIDENT = (
    "INSERT INTO rollback_incidents (incident_key, source, alertname, feature_name, environment, "
    "actor, reason, starts_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
    "ON CONFLICT (incident_key) DO NOTHING RETURNING incident_key"
)
RECORD_CHANGES = (
    "UPDATE rollback_incidents SET flags_changed = $2, deployments_state = $3::varchar, "
    "deployments_planned = $4, deployments_outcome = $5, "
    "deployments_done_at = CASE WHEN $3::varchar = 'done' THEN now() END WHERE incident_key = $1"
)
CLAIM_UNDO = (
    "UPDATE rollback_incidents SET deployments_state = 'claimed', deployments_claimed_at = now() "
    "WHERE incident_key = $1 AND deployments_state = 'pending' RETURNING deployments_planned"
)
#: Only while the claim is open: an operator may have closed it meanwhile
#: (``enterprisehub rollback close-undo``), and that record stands.
RECORD_UNDO = (
    "UPDATE rollback_incidents SET deployments_state = 'done', deployments_done_at = now(), "
    "deployments_outcome = deployments_outcome || $2 "
    "WHERE incident_key = $1 AND deployments_state = 'claimed' RETURNING incident_key"
)
#: The template the last successful automatic undo of a Deployment restored.
LAST_RESTORED = (
    "SELECT undo ->> 'restored_hash' FROM rollback_incidents, "
    "jsonb_array_elements(deployments_outcome) AS undo "
    "WHERE undo ->> 'deployment' = $1 AND (undo ->> 'rolled_back')::boolean "
    "ORDER BY deployments_done_at DESC LIMIT 1"
)
#: Why a Deployment of the incident's feature is not undone when its flag was already off.
ALREADY_OFF = (
    "the feature's flag was already off: an earlier incident or an operator acted, "
    "and undoing again could bring back the template that failed"
)
RESOLVE = (
    "UPDATE rollback_incidents SET resolved_at = now() "
    "WHERE incident_key = $1 AND resolved_at IS NULL RETURNING incident_key"
)


@dataclass(frozen=True, slots=True)
class RollbackRequest:
    """What to roll back, why, and on whose behalf."""

    key: str
    source: str
    alertname: str
    feature: str
    features: tuple[str, ...]
    environment: str
    actor: str
    reason: str
    starts_at: datetime
    #: Feature -> the Deployments serving it, when the stack lets the handler undo
    #: their rollout (``rollback.undoDeployments``); empty: flags only.
    feature_deployments: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RollbackOutcome:
    """What a request did: ``duplicate`` when the incident was already handled;
    ``message``: what to tell people when it turned a flag off."""

    duplicate: bool
    changes: tuple[Change, ...]
    message: str | None = None

    @property
    def changed_features(self) -> list[str]:
        """The features whose flag this request turned off."""
        return [change.feature for change in self.changes]


def _off(state: FlagState | None) -> FlagState:
    return FlagState(enabled=False, rollout_percentage=state.rollout_percentage if state else 0)


async def roll_back(
    *, db: Database, redis: Redis, request: RollbackRequest, notify: bool = False
) -> RollbackOutcome:
    """Flags of ``request.features`` off, once per ``request.key``; with ``notify``,
    the message is queued for Slack in the same transaction."""
    async with db.unscoped() as conn:
        claimed = await conn.fetchval(
            INSERT_INCIDENT,
            request.key,
            request.source,
            request.alertname,
            request.feature,
            request.environment,
            request.actor,
            request.reason,
            request.starts_at,
        )
        if claimed is None:
            return RollbackOutcome(duplicate=True, changes=())
        # Planned under the flag-change lock: another incident of the feature
        # (another alert, another notification) handled at the same moment
        # then finds the flag already off, and changes, tells and undoes nothing.
        # A flag Redis has lost is first put back from its record, so that
        # "off" keeps the percentage it had and a flag a rollback had already
        # turned off is found off (nothing to change, no Deployment undone again),
        # even where a stale copy (a failover that lost the first rollback) has
        # it on again: the copy is reverted to the record first.
        await restore_missing(conn, redis, environment=request.environment, actor=request.actor)
        await revert_stale(conn, redis, environment=request.environment, actor=request.actor)
        planned = await plan_changes(redis, request.features, _off)
        written = await apply_changes(
            redis=redis,
            db=db,
            environment=request.environment,
            changes=planned,
            actor=request.actor,
            reason=request.reason,
            command=f"rollback:{request.source}",
            conn=conn,
        )
        changed = [c.feature for c in written]
        to_undo = _deployments(request.feature_deployments, changed)
        left = [
            name
            for name in _deployments(request.feature_deployments, request.features)
            if name not in to_undo
        ]
        state = "pending" if to_undo else "done" if left else None
        await conn.execute(
            RECORD_CHANGES,
            request.key,
            changed,
            state,
            list(to_undo),
            [UndoOutcome(name, rolled_back=False, reason=ALREADY_OFF).as_record() for name in left],
        )
        message = None
        if changed:
            message = rollback_message(
                environment=request.environment,
                features=changed,
                alertname=request.alertname,
                reason=request.reason,
                actor=request.actor,
            )
            if notify:
                await enqueue(conn, incident_key=request.key, kind="rollback", text=message)
    return RollbackOutcome(duplicate=False, changes=tuple(written), message=message)


def _deployments(
    feature_deployments: Mapping[str, tuple[str, ...]], features: Iterable[str]
) -> tuple[str, ...]:
    names: dict[str, None] = {}
    for feature in features:
        names.update(dict.fromkeys(feature_deployments.get(feature, ())))
    return tuple(names)


async def undo_deployments(
    *,
    db: Database,
    key: str,
    rollbacker: DeploymentRollbacker,
    environment: str,
    alertname: str,
    notify: bool = False,
) -> tuple[UndoOutcome, ...] | None:
    """Undo the incident's pending Deployments once; None when another copy has (or nothing).

    The flags are already off and committed: whatever the Kubernetes API does,
    this only records outcomes (a failure is one of them) and never raises for it.
    With ``notify``, the message about them is queued for Slack with the record.
    """
    async with db.unscoped() as conn:
        planned = await conn.fetchval(CLAIM_UNDO, key)
    if planned is None:
        return None
    outcomes = []
    for name in planned:
        try:
            async with db.unscoped() as conn:
                restored = await conn.fetchval(LAST_RESTORED, name)
            outcomes.append(await rollbacker.undo(name, restored_hash=restored))
        except Exception:
            # Anything unforeseen is still recorded: the claim is taken, so no
            # later copy would retry it, and the incident row must say so.
            log.exception("undoing the rollout of %s failed (incident %s)", name, key)
            outcomes.append(
                UndoOutcome(name, False, "unexpected error (see the handler's log)", failed=True)
            )
    async with db.unscoped() as conn:
        recorded = await conn.fetchval(
            RECORD_UNDO, key, [outcome.as_record() for outcome in outcomes]
        )
        if notify:
            # Told even when an operator closed the claim meanwhile: this is what
            # the handler did to the Deployments.
            text = undo_message(environment=environment, alertname=alertname, outcomes=outcomes)
            await enqueue(conn, incident_key=key, kind="undo", text=text)
    if recorded is None:
        log.warning(
            "the undo of incident %s was closed by an operator meanwhile; not recorded: %s",
            key,
            "; ".join(outcome.describe() for outcome in outcomes),
        )
    return tuple(outcomes)


async def mark_resolved(*, db: Database, key: str) -> bool:
    """Record that the incident's alert resolved (flags stay off: turning a feature
    back on is an operator's decision). False when unknown or already resolved."""
    async with db.unscoped() as conn:
        return await conn.fetchval(RESOLVE, key) is not None
