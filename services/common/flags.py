"""Feature flag records in Redis: the storage format a later rollout builds on.

Each of the seed's four features has one key, ``feature_flag:{name}``, holding
JSON ``{"enabled": bool, "rollout_percentage": 0..100}``. Flags are global
(the rollout percentage selects tenants), so the key is deliberately not under
``tenant:{id}:``. ``init_flags`` creates missing flags disabled at 0% with
``SET NX``, so it never overwrites a flag an operator or a rollback has set.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.common.redis import Redis, redis_errors

FEATURES: Final[tuple[str, ...]] = (
    "realtime_intelligence",
    "property_vision",
    "churn_prevention",
    "ai_coaching",
)


class InvalidFlag(ValueError):  # noqa: N818 - reads as the condition it names
    """A flag name is unknown or its stored record is malformed."""


class FlagState(BaseModel):
    """One feature's stored state."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    rollout_percentage: int = Field(default=0, ge=0, le=100)


def flag_key(feature: str) -> str:
    """``feature_flag:{feature}`` for one of ``FEATURES``."""
    if feature not in FEATURES:
        raise InvalidFlag(f"unknown feature {feature!r}; expected one of {', '.join(FEATURES)}")
    return f"feature_flag:{feature}"


async def init_flags(redis: Redis, features: Iterable[str] = FEATURES) -> dict[str, bool]:
    """Create each missing flag disabled at 0%; return feature -> whether it was created.

    Raises ``RedisUnavailable`` when Redis cannot be reached.
    """
    initial = FlagState().model_dump_json().encode()
    created: dict[str, bool] = {}
    with redis_errors():
        for feature in features:
            created[feature] = bool(await redis.set(flag_key(feature), initial, nx=True))
    return created


async def get_flag(redis: Redis, feature: str) -> FlagState | None:
    """The stored state, or None when the flag does not exist yet.

    Raises ``InvalidFlag`` if the stored value is not a valid record and
    ``RedisUnavailable`` when Redis cannot be reached.
    """
    with redis_errors():
        raw = await redis.get(flag_key(feature))
    if raw is None:
        return None
    try:
        return FlagState.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidFlag(f"feature_flag:{feature} holds an invalid record: {exc}") from None
