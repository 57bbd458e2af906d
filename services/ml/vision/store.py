"""``property_vision_analyses`` rows: the claim that makes each analysis happen once.

One row per (tenant, image sha256, model, prompt version), enforced by a
unique index. ``claim`` inserts a ``pending`` row; the request that inserted
it calls Claude and ``complete``s it, or ``release``s it on failure so a
later request can try again. A pending row older than the stale limit (its
owner died) can be taken over, once, by compare-and-set on ``claimed_at``.

One photo may be posted for several properties: ``property_vision_links``
holds one row per (tenant, property, analysis), written idempotently by the
statement that completes the analysis, by ``find`` when it answers a
property's upload with a stored analysis, and by ``link``. The listing reads
through it; the analysis row's own ``property_id`` is only the property it
was first claimed for.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.common.claude import Usage
from services.common.claude.ledger import LedgerEntry
from services.common.claude.ledger import insert_args as ledger_insert_args
from services.common.claude.ledger import insert_sql as ledger_insert_sql
from services.common.database import Database

_COLUMN_NAMES = (
    "analysis_id",
    "property_id",
    "image_url",
    "analysis_results",
    "luxury_score",
    "condition_score",
    "analysis_latency_seconds",
    "image_sha256",
    "model",
    "prompt_version",
    "status",
    "claimed_at",
    "source",
    "input_tokens",
    "output_tokens",
    "cache_write_tokens",
    "cache_read_tokens",
    "cost_micro_usd",
    "created_at",
    "photo_missing",
)
COLUMNS = ", ".join(_COLUMN_NAMES)
#: The same columns read through a link ``l`` to its analysis ``a``: the property is the link's.
_LINKED_COLUMNS = ", ".join(
    f"l.{name}" if name == "property_id" else f"a.{name}" for name in _COLUMN_NAMES
)

# Links of a done analysis ($1) to properties ($2, an array): first one wins.
_LINK = (
    "INSERT INTO property_vision_links (property_id, analysis_id) "
    "SELECT DISTINCT unnest({properties}::varchar[]), {analysis}::uuid "
    "ON CONFLICT (tenant_id, property_id, analysis_id) DO NOTHING"
)

# The ledger rows of the calls and the property links go in with the result:
# CTEs of the UPDATE. Only the claim as it was taken is completed: one taken
# over since (it went stale) is the new owner's, whose result must not be
# replaced under the readers of the first one. The calls are booked either way
# (they were billed; the ledger ignores a call it holds already).
_COMPLETE = (
    f"WITH booked AS ({ledger_insert_sql(13)}), "  # noqa: S608 - constant parts only
    "done AS (UPDATE property_vision_analyses SET status = 'done', analysis_results = $2, "
    "luxury_score = $3, condition_score = $4, analysis_latency_seconds = $5, "
    "input_tokens = $6, output_tokens = $7, cache_write_tokens = $8, "
    "cache_read_tokens = $9, cost_micro_usd = $10 "
    "WHERE analysis_id = $1 AND status = 'pending' AND claimed_at = $12 "
    f"RETURNING {COLUMNS}), "
    "linked AS (INSERT INTO property_vision_links (property_id, analysis_id) "
    "SELECT DISTINCT unnest($11::varchar[]), analysis_id FROM done "
    "ON CONFLICT (tenant_id, property_id, analysis_id) DO NOTHING) "
    "SELECT * FROM done"
)


class ClaimLost(Exception):  # noqa: N818 - reads as the condition it names
    """The claim was taken over before its result was stored; nothing was stored."""


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of ``claim``: ours to run, or someone else's row as it is now."""

    analysis_id: uuid.UUID
    owned: bool
    status: str
    claimed_at: datetime | None


_FIND = (
    f"SELECT {COLUMNS} FROM property_vision_analyses "  # noqa: S608 - constant columns
    "WHERE image_sha256 = $1 AND model = $2 AND prompt_version = $3"
)
# The same read, and a done row linked to the property $4 (one statement).
_FIND_AND_LINK = (
    f"WITH hit AS ({_FIND}), "  # noqa: S608 - constant parts only
    "linked AS (INSERT INTO property_vision_links (property_id, analysis_id) "
    "SELECT $4, analysis_id FROM hit WHERE status = 'done' "
    "ON CONFLICT (tenant_id, property_id, analysis_id) DO NOTHING) "
    "SELECT * FROM hit"
)


async def find(
    db: Database,
    tenant_id: str,
    *,
    sha256: str,
    model: str,
    prompt_version: str,
    property_id: str | None = None,
) -> dict[str, Any] | None:
    """The row for the key, pending or done, or None.

    With ``property_id``, a done row is linked to that property in the same
    statement (the photo was posted for it; nothing when already linked).
    """
    args: list[Any] = [sha256, model, prompt_version]
    if property_id is not None:
        args.append(property_id)
    async with db.tenant(tenant_id) as conn:
        row = await conn.fetchrow(_FIND if property_id is None else _FIND_AND_LINK, *args)
    return dict(row) if row is not None else None


async def link(
    db: Database, tenant_id: str, *, analysis_id: uuid.UUID, property_ids: Sequence[str]
) -> None:
    """Link the done analysis ``analysis_id`` to the properties (idempotent)."""
    async with db.tenant(tenant_id) as conn:
        await conn.execute(
            _LINK.format(properties="$2", analysis="$1"), analysis_id, list(property_ids)
        )


async def claim(
    db: Database,
    tenant_id: str,
    *,
    sha256: str,
    model: str,
    prompt_version: str,
    property_id: str,
    image_url: str,
    source: str,
    stale_seconds: float,
) -> Claim:
    """Insert a pending row, or take over a stale one; else report the current row.

    An upload's row starts with ``photo_missing``: its photo is being stored
    meanwhile, and only the upload that stored it clears that. Recording it
    after a failed put instead left the row saying "stored" whenever the upload
    ended first (a pod stopped during the put's retries).
    """
    async with db.tenant(tenant_id) as conn:
        row = await conn.fetchrow(
            "INSERT INTO property_vision_analyses (property_id, image_url, image_sha256, model, "
            "prompt_version, status, claimed_at, source, photo_missing) "
            "VALUES ($1, $2, $3, $4, $5, 'pending', clock_timestamp(), $6, $7) "
            "ON CONFLICT (tenant_id, image_sha256, model, prompt_version) DO NOTHING "
            "RETURNING analysis_id, claimed_at",
            property_id,
            image_url,
            sha256,
            model,
            prompt_version,
            source,
            source == "upload",
        )
        if row is not None:
            return Claim(row["analysis_id"], True, "pending", row["claimed_at"])
        taken = await conn.fetchrow(
            "UPDATE property_vision_analyses SET claimed_at = clock_timestamp() "
            "WHERE image_sha256 = $1 AND model = $2 AND prompt_version = $3 "
            "AND status = 'pending' "
            "AND claimed_at < clock_timestamp() - make_interval(secs => $4) "
            "RETURNING analysis_id, claimed_at",
            sha256,
            model,
            prompt_version,
            stale_seconds,
        )
        if taken is not None:
            return Claim(taken["analysis_id"], True, "pending", taken["claimed_at"])
        current = await conn.fetchrow(
            "SELECT analysis_id, status, claimed_at FROM property_vision_analyses "
            "WHERE image_sha256 = $1 AND model = $2 AND prompt_version = $3",
            sha256,
            model,
            prompt_version,
        )
    if current is None:  # released between our statements: the caller tries again
        return Claim(uuid.UUID(int=0), False, "released", None)
    return Claim(current["analysis_id"], False, current["status"], current["claimed_at"])


async def complete(
    db: Database,
    tenant_id: str,
    *,
    claim: Claim,
    results: dict[str, Any],
    luxury_score: float,
    condition_score: float,
    latency_seconds: float,
    usage: Usage,
    cost_micro_usd: int,
    property_ids: Sequence[str],
    ledger: Sequence[LedgerEntry] = (),
) -> dict[str, Any]:
    """Store the result on the claimed row, with the ``ledger`` rows of its calls, and return it.

    One statement (the ledger INSERT and the links to ``property_ids`` are
    CTEs of the UPDATE): the result, what it cost and where it was posted
    commit together. ``ClaimLost`` when the claim is no longer this one (the
    ledger rows are stored all the same).
    """
    async with db.tenant(tenant_id) as conn:
        row = await conn.fetchrow(
            _COMPLETE,
            claim.analysis_id,
            results,
            luxury_score,
            condition_score,
            latency_seconds,
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_write_tokens,
            usage.cache_read_tokens,
            cost_micro_usd,
            list(property_ids),
            claim.claimed_at,
            *ledger_insert_args(ledger),
        )
    if row is None:
        raise ClaimLost(f"the claim on analysis {claim.analysis_id} was taken over")
    return dict(row)


async def release(db: Database, tenant_id: str, claim: Claim) -> None:
    """Give a claim back after a failure (the next request tries again).

    Only the claim as it was taken: one that another request has taken over
    since (it went stale while this one's call was still running) is that
    request's now, and its result must find the row when it completes.
    """
    async with db.tenant(tenant_id) as conn:
        await conn.execute(
            "DELETE FROM property_vision_analyses "
            "WHERE analysis_id = $1 AND status = 'pending' AND claimed_at = $2",
            claim.analysis_id,
            claim.claimed_at,
        )


async def set_photo_missing(
    db: Database, tenant_id: str, analysis_id: uuid.UUID, *, missing: bool
) -> None:
    """Record whether the uploaded photo of ``analysis_id`` is missing from the bucket."""
    async with db.tenant(tenant_id) as conn:
        await conn.execute(
            "UPDATE property_vision_analyses SET photo_missing = $2 WHERE analysis_id = $1",
            analysis_id,
            missing,
        )


async def list_for_property(
    db: Database, tenant_id: str, property_id: str, *, limit: int = 50
) -> list[dict[str, Any]]:
    """The property's finished analyses, most recently posted for it first.

    Read through the property's links: a photo first analysed for another
    property is listed here too, under this ``property_id``.
    """
    async with db.tenant(tenant_id) as conn:
        rows = await conn.fetch(
            f"SELECT {_LINKED_COLUMNS} FROM property_vision_links l "  # noqa: S608 - constants
            "JOIN property_vision_analyses a "
            "ON a.tenant_id = l.tenant_id AND a.analysis_id = l.analysis_id "
            "WHERE l.property_id = $1 AND a.status = 'done' "
            "ORDER BY l.posted_at DESC, a.created_at DESC LIMIT $2",
            property_id,
            limit,
        )
    return [dict(row) for row in rows]
