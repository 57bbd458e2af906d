"""What each Claude call cost, in integer micro-dollars, per tenant, feature and model.

Prices are USD per million tokens, which is micro-dollars per token, so a
call's cost is an exact sum of tokens times prices (cache writes at 1.25x
and cache reads at 0.1x the input price, everything at half price through
the Message Batches API), rounded once, half up, to whole micro-dollars.
Rows go to ``claude_cost_ledger`` (row-level security: each tenant sees its
own) so the business-impact report can sum real operating costs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

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


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """One billable call."""

    tenant_id: str
    feature: str
    model: str
    usage: Usage
    cost_micro_usd: int
    batch: bool = False
    request_id: str | None = None


#: The ledger's INSERT from nine array parameters, one element per entry; the
#: parameters are numbered from ``{first}`` so that a caller can put it in a
#: ``WITH booked AS (...)`` of its own statement (one round trip for both).
_INSERT = (
    "INSERT INTO claude_cost_ledger (feature, model, input_tokens, output_tokens, "
    "cache_write_tokens, cache_read_tokens, cost_micro_usd, batch, request_id) "
    "SELECT * FROM unnest(${0}::text[], ${1}::text[], ${2}::int[], ${3}::int[], ${4}::int[], "
    "${5}::int[], ${6}::bigint[], ${7}::boolean[], ${8}::text[])"
)


def insert_sql(first: int) -> str:
    """The INSERT of ledger rows whose nine array parameters start at ``$first``.

    Use it alone (``first=1``) or as a data-modifying CTE of the statement
    that stores the result the calls produced, so the result and what it cost
    commit together, in one round trip.
    """
    return _INSERT.format(*range(first, first + 9))


def insert_args(entries: Sequence[LedgerEntry]) -> list[list[Any]]:
    """The nine arrays ``insert_sql`` takes (empty arrays insert nothing)."""
    return [
        [entry.feature for entry in entries],
        [entry.model for entry in entries],
        [entry.usage.input_tokens for entry in entries],
        [entry.usage.output_tokens for entry in entries],
        [entry.usage.cache_write_tokens for entry in entries],
        [entry.usage.cache_read_tokens for entry in entries],
        [entry.cost_micro_usd for entry in entries],
        [entry.batch for entry in entries],
        [entry.request_id for entry in entries],
    ]


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
    """The tenant's spend per feature and model (micro-dollars and tokens)."""
    async with db.tenant(tenant_id) as conn:
        rows = await conn.fetch(
            "SELECT feature, model, count(*) AS calls, "
            "sum(cost_micro_usd)::bigint AS cost_micro_usd, "
            "sum(input_tokens)::bigint AS input_tokens, "
            "sum(output_tokens)::bigint AS output_tokens, "
            "sum(cache_write_tokens)::bigint AS cache_write_tokens, "
            "sum(cache_read_tokens)::bigint AS cache_read_tokens "
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
