"""What each Claude call cost, in integer micro-dollars, per tenant, feature and model.

Prices are USD per million tokens, which is micro-dollars per token, so a
call's cost is an exact sum of tokens times prices (cache writes at 1.25x
and cache reads at 0.1x the input price, everything at half price through
the Message Batches API), rounded once, half up, to whole micro-dollars.
Rows go to ``claude_cost_ledger`` (row-level security: each tenant sees its
own) so the business-impact report can sum real operating costs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from services.common.claude.config import ModelPrice
from services.common.database import Database

CACHE_WRITE_FACTOR = Decimal("1.25")
CACHE_READ_FACTOR = Decimal("0.1")
BATCH_FACTOR = Decimal("0.5")


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

    def as_dict(self) -> dict[str, int]:
        """Token counts keyed by the ledger's column names."""
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "cache_read_tokens": self.cache_read_tokens,
        }


class UnpricedModel(KeyError):  # noqa: N818 - reads as the condition
    """A call was made with a model that CLAUDE_PRICES does not price."""


class Pricing:
    """Turns usage into micro-dollars with the configured prices."""

    def __init__(self, prices: Mapping[str, ModelPrice]) -> None:
        self._prices = dict(prices)

    def cost_micro_usd(self, model: str, usage: Usage, *, batch: bool = False) -> int:
        """The call's cost in whole micro-dollars (see the module docstring)."""
        price = self._prices.get(model)
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


async def record(db: Database, entry: LedgerEntry) -> None:
    """Append ``entry`` to ``claude_cost_ledger`` in the tenant's scope."""
    async with db.tenant(entry.tenant_id) as conn:
        await conn.execute(
            "INSERT INTO claude_cost_ledger (feature, model, input_tokens, output_tokens, "
            "cache_write_tokens, cache_read_tokens, cost_micro_usd, batch, request_id) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            entry.feature,
            entry.model,
            entry.usage.input_tokens,
            entry.usage.output_tokens,
            entry.usage.cache_write_tokens,
            entry.usage.cache_read_tokens,
            entry.cost_micro_usd,
            entry.batch,
            entry.request_id,
        )


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
