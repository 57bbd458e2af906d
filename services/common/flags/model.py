"""Feature flag records in Redis: the one live copy every service reads.

Each of the seed's four features has one key, ``feature_flag:{name}``, holding
JSON ``{"enabled": bool, "rollout_percentage": 0..100}`` (0.01 steps: the
bucketing has 10,000 buckets). Flags are global (the rollout percentage
selects tenants), so the key is deliberately not under ``tenant:{id}:``.

Where the state comes from (one source of truth, see docs/architecture.md):
the stack's ``featureFlags`` config is the *initial* state; the flags-init Job
runs ``enterprisehub flags init --seed JSON`` and ``init_flags`` creates each
missing flag from that seed with ``SET NX``, so it never overwrites a flag an
operator or a rollback has set. From then on Redis holds the live state and
``enterprisehub rollout ...`` changes it (``write_flags``: the new records and
their pub/sub notices in one ``MULTI``). Postgres keeps the durable record of
every change (``flag_audit``); when Redis loses a flag, ``services.rollout.restore``
creates it again from its last recorded state.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from redis.exceptions import ResponseError

from services.common.redis import Redis, RedisUnavailable, redis_errors

FEATURES: Final[tuple[str, ...]] = (
    "realtime_intelligence",
    "property_vision",
    "churn_prevention",
    "ai_coaching",
)

#: Pub/sub channel on which a write announces the name of the flag it changed.
CHANNEL: Final = "feature_flags:changed"


class InvalidFlag(ValueError):  # noqa: N818 - reads as the condition it names
    """A flag name is unknown or its stored record is malformed."""


def check_percentage(value: float) -> float:
    """``value`` rounded to the 0.01 resolution of the buckets; 0..100 or ValueError."""
    if isinstance(value, bool) or not math.isfinite(value) or not 0 <= value <= 100:
        raise ValueError(f"rollout percentage must be between 0 and 100, got {value!r}")
    return round(float(value), 2)


class FlagState(BaseModel):
    """One feature's state: a kill switch and the share of tenants it reaches."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    rollout_percentage: float = 0.0

    @field_validator("rollout_percentage")
    @classmethod
    def _resolution(cls, value: float) -> float:
        return check_percentage(value)

    @property
    def threshold(self) -> int:
        """Buckets ``[0, threshold)`` of 10,000 are in treatment (0 when disabled)."""
        return round(self.rollout_percentage * 100) if self.enabled else 0

    def describe(self) -> str:
        """``on at 25%`` / ``off (25% kept)`` for operator output."""
        percentage = f"{self.rollout_percentage:g}%"
        return f"on at {percentage}" if self.enabled else f"off ({percentage} kept)"


def flag_key(feature: str) -> str:
    """``feature_flag:{feature}`` for one of ``FEATURES``."""
    check_feature(feature)
    return f"feature_flag:{feature}"


def check_feature(feature: str) -> str:
    """``feature`` if it is one of ``FEATURES``, else ``InvalidFlag`` listing them."""
    if feature not in FEATURES:
        raise InvalidFlag(f"unknown feature {feature!r}; expected one of {', '.join(FEATURES)}")
    return feature


def parse_seed(raw: str | Mapping[str, Any] | None) -> dict[str, FlagState]:
    """The initial state of every feature from the stack's ``featureFlags``.

    Accepts a JSON object (or mapping) ``{feature: {"enabled": bool,
    "rolloutPercentage": 0..100}}``; a feature may be given as a bare boolean
    (``true`` = on for 100%, ``false`` = off at 0%). Features left out start
    off at 0%. Raises ``InvalidFlag`` naming the bad entry.
    """
    if raw is None or raw == "":
        data: Any = {}
    elif isinstance(raw, str):
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise InvalidFlag(f"flag seed is not JSON: {exc}") from None
    else:
        data = raw
    if not isinstance(data, Mapping):
        raise InvalidFlag("flag seed must be a JSON object {feature: {enabled, rolloutPercentage}}")
    seed = dict.fromkeys(FEATURES, FlagState())
    for feature, value in data.items():
        check_feature(feature)
        if isinstance(value, bool):
            seed[feature] = FlagState(enabled=value, rollout_percentage=100 if value else 0)
            continue
        if not isinstance(value, Mapping) or not set(value) <= {"enabled", "rolloutPercentage"}:
            raise InvalidFlag(
                f"featureFlags.{feature} must be a boolean or {{enabled, rolloutPercentage}}"
            )
        try:
            seed[feature] = FlagState(
                enabled=value.get("enabled", False),
                rollout_percentage=value.get("rolloutPercentage", 0),
            )
        except ValidationError as exc:
            problem = exc.errors(include_url=False)[0]["msg"].removeprefix("Value error, ")
            raise InvalidFlag(f"featureFlags.{feature}: {problem}") from None
    return seed


def encode(state: FlagState) -> bytes:
    """The stored JSON of a record."""
    return state.model_dump_json().encode()


def decode(feature: str, raw: bytes | str) -> FlagState:
    """A stored record, or ``InvalidFlag`` when it is not a valid one."""
    if raw == WRONG_TYPE:
        raise InvalidFlag(f"feature_flag:{feature} is not a string key (a hand edit?)")
    try:
        return FlagState.model_validate_json(raw)
    except ValidationError as exc:
        raise InvalidFlag(f"feature_flag:{feature} holds an invalid record: {exc}") from None


#: What a read records for a flag key of another type than a string (a hand
#: edit: a hash, a list). GET refuses such a key with WRONGTYPE and MGET reads it
#: as missing; either way the record is invalid, not absent, and its readers keep
#: their last state. No JSON record starts with a NUL byte.
WRONG_TYPE: Final = b"\0wrongtype"


def _value(result: object) -> bytes | str | None:
    """One GET's answer in a pipeline (``raise_on_error=False``), WRONGTYPE as ``WRONG_TYPE``."""
    if isinstance(result, ResponseError):
        if str(result).startswith("WRONGTYPE"):
            return WRONG_TYPE
        raise result
    assert result is None or isinstance(result, bytes | str)
    return result


async def _get(redis: Redis, keys: Sequence[str]) -> list[bytes | str | None]:
    """The keys' values in one round trip, ``WRONG_TYPE`` for a key of another type."""
    with redis_errors():
        async with redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.get(key)
            results = await pipe.execute(raise_on_error=False)
    return [_value(result) for result in results]


async def init_flags(
    redis: Redis,
    features: Iterable[str] = FEATURES,
    *,
    seed: Mapping[str, FlagState] | None = None,
) -> dict[str, bool]:
    """Create each missing flag from ``seed`` (off at 0% when absent); never overwrite.

    Returns feature -> whether it was created. Raises ``RedisUnavailable``
    when Redis cannot be reached.
    """
    created: dict[str, bool] = {}
    with redis_errors():
        for feature in features:
            state = (seed or {}).get(feature, FlagState())
            created[feature] = bool(await redis.set(flag_key(feature), encode(state), nx=True))
            if created[feature]:
                await redis.publish(CHANNEL, feature)
    return created


async def get_flag(redis: Redis, feature: str) -> FlagState | None:
    """The stored state, or None when the flag does not exist yet.

    Raises ``InvalidFlag`` if the stored value is not a valid record and
    ``RedisUnavailable`` when Redis cannot be reached.
    """
    [raw] = await _get(redis, [flag_key(feature)])
    return None if raw is None else decode(feature, raw)


@dataclass(frozen=True, slots=True)
class StoredFlags:
    """Every feature's flag as one read of Redis found it."""

    #: Each feature whose key holds a valid record, or None (the key is missing).
    states: dict[str, FlagState | None]
    #: Each feature whose key holds something that is not a valid record.
    invalid: dict[str, InvalidFlag]
    #: What each key of ``FEATURES`` held, as read (for `write_flags_if_unchanged`).
    read: tuple[bytes | None, ...]

    @classmethod
    def decode(cls, values: Sequence[bytes | str | None]) -> StoredFlags:
        """The read of ``FEATURES``' keys, in that order."""
        states: dict[str, FlagState | None] = {}
        invalid: dict[str, InvalidFlag] = {}
        for feature, raw in zip(FEATURES, values, strict=True):
            try:
                states[feature] = None if raw is None else decode(feature, raw)
            except InvalidFlag as exc:
                invalid[feature] = exc
        read = tuple(value.encode() if isinstance(value, str) else value for value in values)
        return cls(states, invalid, read)

    def writable(self) -> dict[str, FlagState | None]:
        """Every feature's state, None where missing or invalid: what a change
        plans from (an invalid record holds no state to keep, so a rollback, or an
        operator's change, writes over it like over a missing flag)."""
        return {feature: self.states.get(feature) for feature in FEATURES}

    def valid(self, features: Iterable[str] = FEATURES) -> dict[str, FlagState | None]:
        """Every feature's state (None where missing); ``InvalidFlag`` if one of
        ``features`` is malformed (the others' records are not looked at)."""
        for feature in features:
            if feature in self.invalid:
                raise self.invalid[feature]
        return self.states


def _keys() -> list[str]:
    return [flag_key(feature) for feature in FEATURES]


async def read_flags(redis: Redis) -> StoredFlags:
    """Every feature's record in one round trip, a malformed one reported, not raised.

    Raises ``RedisUnavailable``.
    """
    return StoredFlags.decode(await _get(redis, _keys()))


async def get_flags(redis: Redis) -> dict[str, FlagState | None]:
    """Every feature's stored state in one round trip (None where missing).

    Raises ``InvalidFlag`` for a malformed record and ``RedisUnavailable``.
    """
    return (await read_flags(redis)).valid()


async def write_flag(redis: Redis, feature: str, state: FlagState) -> None:
    """Store ``state`` and announce it on ``CHANNEL`` atomically (one ``MULTI``).

    Raises ``RedisUnavailable`` when Redis cannot be reached.
    """
    await write_flags(redis, {feature: state})


async def write_flags(redis: Redis, states: Mapping[str, FlagState]) -> None:
    """Store every record of ``states`` and announce each on ``CHANNEL`` in one ``MULTI``.

    All or none: a change of several flags (a rollback of ``all``) never leaves
    Redis with some of them written when the connection fails midway, so the
    audit rows that roll back with the failure never miss a flag that changed.
    Raises ``RedisUnavailable`` when Redis cannot be reached.
    """
    with redis_errors():
        async with redis.pipeline(transaction=True) as pipe:
            for feature, state in states.items():
                pipe.set(flag_key(feature), encode(state))
                pipe.publish(CHANNEL, feature)
            await pipe.execute()


class FlagWriteConflict(RedisUnavailable):
    """A flag key no longer held what was read when the conditional write ran.

    A kind of ``RedisUnavailable`` because every caller handles it the same
    way: Redis did not take the write, nothing was written, try again (the
    rollback webhook answers 503 so that Alertmanager retries, the keeper's
    next pass looks again, an operator runs the command again).
    """


# Compare-and-set of the four flag keys, atomic because a script runs whole:
# KEYS the flag keys; ARGV their values as read ('' for none), then the new
# values ('' for unchanged), then the channel and the feature names. A
# connection lost and reopened in between (a failover) changes nothing: the
# values are compared on whichever primary runs it, unlike a WATCH, which
# lives and dies with its connection.
# A key of another type reads as WRONG_TYPE here too, as `_get` read it.
_WRITE_IF_UNCHANGED = f"""
local n = #KEYS
for i = 1, n do
  local value = redis.pcall('GET', KEYS[i])
  if type(value) == 'table' and value.err then value = '{WRONG_TYPE.decode()}' end
  if (value or '') ~= ARGV[i] then return 0 end
end
local channel = ARGV[2 * n + 1]
for i = 1, n do
  if ARGV[n + i] ~= '' then
    redis.call('SET', KEYS[i], ARGV[n + i])
    redis.call('PUBLISH', channel, ARGV[2 * n + 1 + i])
  end
end
return 1
"""


async def write_flags_if_unchanged(
    redis: Redis, stored: StoredFlags, states: Mapping[str, FlagState]
) -> None:
    """Store and announce ``states``, only if no flag key changed since ``stored`` was read.

    What a writer under the flag-change lock uses: a writer that does not take
    it (a hand edit, an older release's ``flags init``) or a failover to a
    replica that missed writes may have changed a flag after the read, and the
    write must not go over a state it never saw. Raises `FlagWriteConflict`
    (nothing written) and ``RedisUnavailable``.
    """
    if not states:
        return
    new = [encode(states[f]) if f in states else b"" for f in FEATURES]
    read = [value if value is not None else b"" for value in stored.read]
    with redis_errors():
        written = await redis.eval(
            _WRITE_IF_UNCHANGED, len(FEATURES), *_keys(), *read, *new, CHANNEL, *FEATURES
        )
    if not written:
        raise FlagWriteConflict(
            "a feature flag changed in Redis after it was read (a writer outside the "
            "flag-change lock, or a failover); nothing was written: try again"
        )
