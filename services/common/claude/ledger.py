"""What each Claude call cost, in integer micro-dollars, per tenant, feature and model.

Prices are USD per million tokens, which is micro-dollars per token, so a
call's cost is an exact sum of tokens times prices (cache writes at 1.25x
and cache reads at 0.1x the input price, everything at half price through
the Message Batches API), rounded once, half up, to whole micro-dollars.
Rows go to ``claude_cost_ledger`` (row-level security: each tenant sees its
own) so the business-impact report can sum real operating costs.

A call that got no answer (a read timeout, or its caller stopped waiting
while it was in flight) may have been billed, but no ``usage`` says for what:
it is booked with ``outcome`` ``timeout``, ``cancelled`` or ``dropped``, NULL token counts
and an upper-bound cost (``estimate.py``), so spend figures can say how much
of the cost is billed and how much estimated. Each row carries the client's
``call_id`` (unique per tenant): booking the same call again inserts nothing.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from services.common.claude.config import ModelPrice
from services.common.database import Database

CACHE_WRITE_FACTOR = Decimal("1.25")
CACHE_READ_FACTOR = Decimal("0.1")
BATCH_FACTOR = Decimal("0.5")
#: A snapshot's date suffix: ``claude-sonnet-4-5-20250929`` (API), ``...@20250929`` (Vertex).
_SNAPSHOT_DATE = re.compile(r"[-@]\d{8}\Z")


def model_alias(model: str) -> str:
    """``model`` without a snapshot date: the alias the dated snapshot belongs to.

    The Claude API answers a request for an alias (``claude-sonnet-4-5``) with
    the dated snapshot it resolved to (``claude-sonnet-4-5-20250929``) in the
    message's ``model``; a snapshot costs what its alias costs.
    """
    return _SNAPSHOT_DATE.sub("", model)


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens of one call by kind (the API's ``usage`` object)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0

    @classmethod
    def from_api(cls, usage: Mapping[str, Any] | None) -> Usage:
        """From the JSON ``usage`` of a message (absent counts are zero)."""
        usage = usage or {}
        return cls(
            input_tokens=int(usage.get("input_tokens") or 0),
            output_tokens=int(usage.get("output_tokens") or 0),
            cache_write_tokens=int(usage.get("cache_creation_input_tokens") or 0),
            cache_read_tokens=int(usage.get("cache_read_input_tokens") or 0),
        )

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
        )


class UnpricedModel(KeyError):  # noqa: N818 - reads as the condition
    """A call was made with a model that CLAUDE_PRICES does not price."""


class Pricing:
    """Turns usage into micro-dollars with the configured prices."""

    def __init__(self, prices: Mapping[str, ModelPrice]) -> None:
        self._prices = dict(prices)

    def cost_micro_usd(self, model: str, usage: Usage, *, batch: bool = False) -> int:
        """The call's cost in whole micro-dollars (see the module docstring).

        ``model`` is priced as configured, else as its alias (a dated snapshot
        the API reports for an alias the call asked for).
        """
        price = self._prices.get(model) or self._prices.get(model_alias(model))
        if price is None:
            raise UnpricedModel(model)
        total = (
            usage.input_tokens * price.input
            + usage.cache_write_tokens * price.input * CACHE_WRITE_FACTOR
            + usage.cache_read_tokens * price.input * CACHE_READ_FACTOR
            + usage.output_tokens * price.output
        )
        if batch:
            total *= BATCH_FACTOR
        return int(total.quantize(Decimal(1), rounding=ROUND_HALF_UP))


#: What became of a call: ``answered`` (its usage is what was billed), or no answer
#: came back after the request was sent: ``timeout`` (CLAUDE_TIMEOUT_SECONDS),
#: ``cancelled`` (the caller stopped waiting) or ``dropped`` (the connection was
#: lost before the answer was read whole).
Outcome = Literal["answered", "timeout", "cancelled", "dropped"]


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One call that was, or may have been, billed.

    ``usage`` is what the API billed for an answered call; for an unanswered
    one it holds the upper bounds its estimated ``cost_micro_usd`` was priced
    from, and the row stores them as ``input_tokens_bound`` and
    ``output_tokens_bound`` with the token columns NULL (unknown).
    """

    tenant_id: str
    feature: str
    model: str
    usage: Usage
    cost_micro_usd: int
    batch: bool = False
    request_id: str | None = None
    outcome: Outcome = "answered"
    #: Unique per tenant in the ledger: a second booking of the call inserts nothing.
    call_id: uuid.UUID = field(default_factory=uuid.uuid4)

    @property
    def estimated(self) -> bool:
        """Whether the cost is an upper-bound estimate (no answer said what was billed)."""
        return self.outcome != "answered"


#: The ledger's INSERT from thirteen array parameters, one element per entry; the
#: parameters are numbered from ``{first}`` so that a caller can put it in a
#: ``WITH booked AS (...)`` of its own statement (one round trip for both).
#: A call already booked is skipped (its ``call_id``), not booked twice.
_INSERT = (
    "INSERT INTO claude_cost_ledger (feature, model, input_tokens, output_tokens, "
    "cache_write_tokens, cache_read_tokens, cost_micro_usd, batch, request_id, outcome, "
    "input_tokens_bound, output_tokens_bound, call_id) "
    "SELECT * FROM unnest(${0}::text[], ${1}::text[], ${2}::int[], ${3}::int[], ${4}::int[], "
    "${5}::int[], ${6}::bigint[], ${7}::boolean[], ${8}::text[], ${9}::text[], ${10}::int[], "
    "${11}::int[], ${12}::uuid[]) "
    "ON CONFLICT (tenant_id, call_id) DO NOTHING"
)
INSERT_PARAMETERS = 13


def insert_sql(first: int) -> str:
    """The INSERT of ledger rows whose ``INSERT_PARAMETERS`` array parameters start at ``$first``.

    Use it alone (``first=1``) or as a data-modifying CTE of the statement
    that stores the result the calls produced, so the result and what it cost
    commit together, in one round trip.
    """
    return _INSERT.format(*range(first, first + INSERT_PARAMETERS))


def _row(entry: LedgerEntry) -> tuple[Any, ...]:
    """``entry`` in the order of the INSERT's columns."""
    usage = entry.usage
    if entry.estimated:
        tokens: tuple[int | None, ...] = (None, None, None, None)
        input_bound = usage.input_tokens + usage.cache_write_tokens + usage.cache_read_tokens
        bounds: tuple[int | None, ...] = (input_bound, usage.output_tokens)
    else:
        tokens = (
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_write_tokens,
            usage.cache_read_tokens,
        )
        bounds = (None, None)
    return (
        entry.feature,
        entry.model,
        *tokens,
        entry.cost_micro_usd,
        entry.batch,
        entry.request_id,
        entry.outcome,
        *bounds,
        entry.call_id,
    )


def insert_args(entries: Sequence[LedgerEntry]) -> list[list[Any]]:
    """The ``INSERT_PARAMETERS`` arrays ``insert_sql`` takes (empty arrays insert nothing)."""
    rows = [_row(entry) for entry in entries]
    return [[row[column] for row in rows] for column in range(INSERT_PARAMETERS)]


async def record(db: Database, *entries: LedgerEntry) -> None:
    """Append ``entries`` (of one tenant) to ``claude_cost_ledger`` in one statement."""
    if not entries:
        return
    tenants = {entry.tenant_id for entry in entries}
    if len(tenants) != 1:
        raise ValueError(f"ledger entries of one tenant at a time, got {sorted(tenants)}")
    async with db.tenant(entries[0].tenant_id) as conn:
        await conn.execute(insert_sql(1), *insert_args(entries))


async def totals(db: Database, tenant_id: str) -> list[dict[str, Any]]:
    """The tenant's spend per feature and model: micro-dollars (all, and the estimated
    part: calls that got no answer), calls (all, and unanswered) and billed tokens."""
    async with db.tenant(tenant_id) as conn:
        rows = await conn.fetch(
            "SELECT feature, model, count(*) AS calls, "
            "count(*) FILTER (WHERE outcome <> 'answered') AS unanswered_calls, "
            "sum(cost_micro_usd)::bigint AS cost_micro_usd, "
            "coalesce(sum(cost_micro_usd) FILTER (WHERE outcome <> 'answered'), 0)::bigint "
            "AS estimated_cost_micro_usd, "
            "coalesce(sum(input_tokens), 0)::bigint AS input_tokens, "
            "coalesce(sum(output_tokens), 0)::bigint AS output_tokens, "
            "coalesce(sum(cache_write_tokens), 0)::bigint AS cache_write_tokens, "
            "coalesce(sum(cache_read_tokens), 0)::bigint AS cache_read_tokens "
            "FROM claude_cost_ledger GROUP BY feature, model ORDER BY feature, model"
        )
    return [dict(row) for row in rows]


def stored_call_cost(row: Mapping[str, Any]) -> dict[str, Any]:
    """The public ``latency_seconds``, ``input_tokens``, ``output_tokens`` and
    ``cost_micro_usd`` of a result row of a Claude feature's table (the columns
    each such table keeps next to its result: ``analysis_latency_seconds`` and
    the call's tokens and cost)."""
    return {
        "latency_seconds": row["analysis_latency_seconds"],
        "input_tokens": row["input_tokens"],
        "output_tokens": row["output_tokens"],
        "cost_micro_usd": row["cost_micro_usd"],
    }
