"""Token revocations in Postgres: write and list one tenant's, read every tenant's active ones.

The table is ``auth_token_revocations`` (revision 0024). ``revoke`` and
``list_active`` work in the tenant's row-level-security transaction
(``Database.tenant``), so an operator's command for tenant A can neither
write nor see tenant B's rows. ``read_active`` is the services' read of every
tenant's active revocations, through ``token_revocations_active()``, which
returns what a verifier compares and never who revoked or why.

``serve_revocations`` is the part of every service's lifespan that keeps its
verifier's `Revocations` current: one read before the app serves, then one
every AUTH_REVOCATION_REFRESH_SECONDS. A read that fails (Postgres down, a
timeout) keeps the list last read, logs a warning naming the error's class
only (never the DSN), and shows in ``auth_revocations_age_seconds``.

Before the first successful read the list is empty: a process that starts
during a Postgres outage accepts every token that verifies. Failing closed
instead would refuse every request of every tenant for as long as Postgres is
down, including the routes that must serve through that outage (lead scoring
reads neither store; the ingest answers 503 by itself while it cannot store),
to protect against the rare leaked token that was also revoked. The outage
shows in the gauge (and the TokenRevocationsStale alert), and the replicas
already running keep refusing what they read before it.

Every statement is a constant with bound parameters.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from prometheus_client import CollectorRegistry

from services.common.database import Database, DatabaseUnavailable
from services.common.metrics import MetricFactory
from services.common.revocation import RevocationList, Revocations
from services.common.tasks import BackgroundTask

log = logging.getLogger(__name__)

TABLE: Final = "auth_token_revocations"

_COLUMNS: Final = "tenant_id, jti, subject, revoked_at, keep_until, actor, reason"
_REVOKE_TOKEN: Final = (
    f"INSERT INTO {TABLE} (jti, keep_until, actor, reason) "  # noqa: S608 - constants
    "VALUES ($1, now() + make_interval(secs => $2), $3, $4) "
    "ON CONFLICT (tenant_id, jti) WHERE jti IS NOT NULL DO NOTHING "
    f"RETURNING {_COLUMNS}"
)
_EXISTING_TOKEN: Final = f"SELECT {_COLUMNS} FROM {TABLE} WHERE jti = $1"  # noqa: S608
# A second "sign out everywhere" moves the time forward (the tokens the agent got
# since are signed out too) and never back; the row names who revoked last.
# xmax is set on a row version an upsert updated, and 0 on one it inserted.
_REVOKE_SUBJECT: Final = (
    f"INSERT INTO {TABLE} AS r (subject, keep_until, actor, reason) "  # noqa: S608
    "VALUES ($1, now() + make_interval(secs => $2), $3, $4) "
    "ON CONFLICT (tenant_id, subject) WHERE subject IS NOT NULL DO UPDATE SET "
    "revoked_at = greatest(r.revoked_at, excluded.revoked_at), "
    "keep_until = greatest(r.keep_until, excluded.keep_until), "
    "actor = excluded.actor, reason = excluded.reason "
    f"RETURNING {_COLUMNS}, r.xmax <> 0 AS existed"
)
_LIST_ACTIVE: Final = (
    f"SELECT {_COLUMNS} FROM {TABLE} WHERE keep_until > now() "  # noqa: S608
    "ORDER BY revoked_at, revocation_id"
)
_READ_ACTIVE: Final = "SELECT tenant_id, jti, subject, revoked_at FROM token_revocations_active()"
_TENANTS: Final = "SELECT token_revocation_tenants() AS tenant_id"


@dataclass(frozen=True, slots=True)
class Revocation:
    """One stored revocation: of one token (``jti``) or of a subject's tokens."""

    tenant_id: str
    jti: str | None
    subject: str | None
    revoked_at: datetime
    keep_until: datetime
    actor: str
    reason: str

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Revocation:
        """From a row of ``auth_token_revocations``."""
        return cls(**{name: row[name] for name in _COLUMNS.split(", ")})

    def line(self) -> str:
        """What ``enterprisehub token revocations`` prints for it: one line."""
        what = f"jti {self.jti}" if self.jti is not None else f"subject {self.subject}"
        return (
            f"{self.revoked_at.isoformat(timespec='seconds')} {what} by {self.actor} "
            f"(kept until {self.keep_until.isoformat(timespec='seconds')}): {self.reason}"
        )


async def revoke(
    db: Database,
    tenant_id: str,
    *,
    jti: str | None = None,
    subject: str | None = None,
    actor: str,
    reason: str,
    keep_seconds: float,
) -> tuple[Revocation, bool]:
    """Revoke one token (``jti``) or every token of ``subject`` issued until now.

    Returns the stored revocation and whether one existed already: the same
    token twice is the first row unchanged; the same subject twice moves its
    time to now. ``keep_seconds``: how long a token it names could still
    verify (``TokenLifetimeSettings.revocation_keep_seconds``).
    """
    if (jti is None) == (subject is None):
        raise ValueError("revoke one token (jti) or one subject, not both or neither")
    async with db.tenant(tenant_id) as conn:
        if jti is not None:
            row = await conn.fetchrow(_REVOKE_TOKEN, jti, keep_seconds, actor, reason)
            if row is not None:
                return Revocation.of(row), False
            return Revocation.of(await conn.fetchrow(_EXISTING_TOKEN, jti)), True
        row = await conn.fetchrow(_REVOKE_SUBJECT, subject, keep_seconds, actor, reason)
        return Revocation.of(row), bool(row["existed"])


async def list_active(db: Database, tenant_id: str) -> list[Revocation]:
    """The tenant's revocations that can still refuse a token, oldest first."""
    async with db.tenant(tenant_id) as conn:
        rows = await conn.fetch(_LIST_ACTIVE)
    return [Revocation.of(row) for row in rows]


async def read_active(db: Database) -> RevocationList:
    """Every tenant's active revocations, as the verifiers hold them.

    Raises ``DatabaseUnavailable`` when Postgres cannot be reached, and
    whatever asyncpg raises for a read that fails otherwise.
    """
    async with db.unscoped() as conn:
        rows = await conn.fetch(_READ_ACTIVE)
    return RevocationList.of(
        (row["tenant_id"], row["jti"], row["subject"], row["revoked_at"].timestamp())
        for row in rows
    )


async def revocation_tenants(db: Database) -> list[str]:
    """The tenants with revocation rows, active or not (ids only): the prune's list."""
    async with db.unscoped() as conn:
        rows = await conn.fetch(_TENANTS)
    return [row["tenant_id"] for row in rows]


#: Longest wait for one read: a blackholed Postgres must not hold the start-up
#: (the first read) or let a refresh overlap the next.
READ_TIMEOUT_SECONDS: Final = 5.0


def register_revocation_metrics(registry: CollectorRegistry, revocations: Revocations) -> None:
    """``auth_revocations_age_seconds``, computed from ``revocations`` at each scrape."""
    MetricFactory(registry).gauge("auth_revocations_age_seconds").set_function(
        revocations.age_seconds
    )


class RevocationRefresher:
    """Reads every tenant's active revocations into a `Revocations`, now and periodically."""

    def __init__(self, revocations: Revocations, db: Database, *, interval: float) -> None:
        self._revocations = revocations
        self._db = db
        self._interval = interval
        self._timeout = min(READ_TIMEOUT_SECONDS, max(interval, 1.0))
        self._task = BackgroundTask("token-revocations")

    async def refresh(self) -> bool:
        """Read the list once; on failure keep the old one and log why. True if read."""
        try:
            async with asyncio.timeout(self._timeout):
                fresh = await read_active(self._db)
        except DatabaseUnavailable as exc:
            self._stale(exc.reason)
            return False
        except Exception as exc:
            # The class only: a driver's message may quote the connection's parameters.
            self._stale(type(exc).__name__)
            return False
        self._revocations.replace(fresh)
        return True

    def _stale(self, why: str) -> None:
        age = self._revocations.age_seconds()
        if self._revocations.loaded:
            log.warning(
                "token revocations not refreshed (%s); still refusing the list read %.0f s ago",
                why,
                age,
            )
        else:
            log.warning(
                "token revocations not read yet (%s); no token is refused as revoked "
                "until the first read",
                why,
            )

    def start(self) -> None:
        """Refresh every interval in the background, the first an interval from now."""
        self._task.start(self._run)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            await self.refresh()

    async def stop(self) -> None:
        """Stop refreshing."""
        await self._task.stop()


@asynccontextmanager
async def serve_revocations(
    revocations: Revocations, db: Database, *, interval: float
) -> AsyncIterator[RevocationRefresher]:
    """Read the revocations before serving, then keep them current until the block exits."""
    refresher = RevocationRefresher(revocations, db, interval=interval)
    await refresher.refresh()
    refresher.start()
    try:
        yield refresher
    finally:
        await refresher.stop()
