"""Settings of the shared Claude client, read from the environment.

A service's settings class inherits ``ClaudeSettings`` next to
``CommonSettings``. Prices are US dollars per million tokens (Anthropic's
price list unit), which is also micro-dollars per token: the ledger's
integer micro-dollars follow without any floating point.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import NoDecode

from services.common.settings import EnvSettings

#: List prices (USD per million tokens) of the models the services use.
#: Override with CLAUDE_PRICES when Anthropic's price list changes.
DEFAULT_PRICES: dict[str, dict[str, str]] = {
    "claude-sonnet-4-5": {"input": "3", "output": "15"},
    "claude-haiku-4-5": {"input": "1", "output": "5"},
    "claude-opus-4-5": {"input": "5", "output": "25"},
}


class ModelPrice(BaseModel):
    """One model's base prices in USD per million tokens."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    input: Decimal = Field(ge=0)
    output: Decimal = Field(ge=0)


class ClaudeSettings(EnvSettings):
    """ANTHROPIC_* and CLAUDE_* variables; without a key Claude routes answer 503."""

    anthropic_api_key: SecretStr | None = Field(
        default=None, description="API key; unset disables every Claude-backed route (503)."
    )
    anthropic_base_url: str | None = Field(
        default=None, description="Messages API base URL; unset means Anthropic's own."
    )
    claude_model: str = Field(default="claude-sonnet-4-5", min_length=1, max_length=100)
    claude_timeout_seconds: float = Field(
        default=30.0, gt=0, le=600, description="Bound on one API call (read timeout)."
    )
    claude_connect_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    claude_max_attempts: int = Field(
        default=3, ge=1, le=10, description="Attempts per call, first one included."
    )
    claude_max_retry_wait_seconds: float = Field(
        default=5.0,
        ge=0,
        le=120,
        description="Longest wait for a 429's retry-after or the local limiter; longer is a 503.",
    )
    claude_backoff_base_seconds: float = Field(default=0.5, gt=0, le=60)
    claude_backoff_max_seconds: float = Field(default=8.0, gt=0, le=600)
    claude_breaker_failures: int = Field(
        default=5, ge=1, le=1000, description="Consecutive failures that open the circuit."
    )
    claude_breaker_open_seconds: float = Field(default=30.0, gt=0, le=3600)
    claude_spend_limit_open_seconds: float = Field(
        default=900.0, gt=0, le=86400, description="Circuit open time after a spend-limit 429."
    )
    claude_prices: Annotated[dict[str, ModelPrice], NoDecode] = Field(
        default_factory=lambda: {
            k: ModelPrice.model_validate(v) for k, v in DEFAULT_PRICES.items()
        },
        description='JSON {"model": {"input": USD/MTok, "output": USD/MTok}}.',
    )

    @field_validator("anthropic_api_key", "anthropic_base_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("claude_prices", mode="before")
    @classmethod
    def _parse_prices(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                return json.loads(value)
            except json.JSONDecodeError:
                raise ValueError(
                    'must be JSON like {"model": {"input": 3, "output": 15}}'
                ) from None
        return value

    @model_validator(mode="after")
    def _model_is_priced(self) -> Self:
        if self.claude_model not in self.claude_prices:
            raise ValueError(
                f"CLAUDE_MODEL {self.claude_model!r} has no price in CLAUDE_PRICES "
                f"(priced: {', '.join(sorted(self.claude_prices))}); every call must be costed"
            )
        return self
