"""Tenant bucketing: GrowthBook's v2 hash, 10,000 buckets, one seed per feature.

``bucket(seed, tenant_id)`` is ``fnv1a32(str(fnv1a32(seed + tenant_id))) %
10000``, exactly GrowthBook's ``hashVersion: 2`` (its ``gbhash`` returns this
number divided by 10,000). A tenant is in treatment when its bucket is below
``percentage * 100``, so:

- raising a percentage only adds tenants (the 10% set is inside the 25% set,
  inside the 50% set), and lowering it removes the highest buckets first,
  that is the tenants added most recently;
- each feature has its own seed (its name), so the four features split the
  tenants independently of each other;
- a GrowthBook SDK given the rule ``{"force": true, "hashAttribute": "id",
  "seed": <feature>, "hashVersion": 2, "range": [0, p/100]}`` assigns every
  tenant exactly as we do (tests check it), so another backend can take over
  without moving anyone.

A bucket never changes for a (seed, tenant) pair, so ``Bucketer`` remembers
it: the hash (a few microseconds in pure Python) runs once per tenant and
feature per process, and a decision is then a dictionary lookup.
"""

from __future__ import annotations

from typing import Final

BUCKETS: Final = 10_000
_FNV_OFFSET: Final = 0x811C9DC5
_FNV_PRIME: Final = 0x01000193
_MASK: Final = 0xFFFFFFFF


def fnv1a32(text: str) -> int:
    """32-bit FNV-1a over UTF-16 code units (GrowthBook's, like JS ``charCodeAt``)."""
    value = _FNV_OFFSET
    if text.isascii():
        for byte in text.encode():
            value = ((value ^ byte) * _FNV_PRIME) & _MASK
        return value
    data = text.encode("utf-16-le", "surrogatepass")
    for index in range(0, len(data), 2):
        value = ((value ^ (data[index] | (data[index + 1] << 8))) * _FNV_PRIME) & _MASK
    return value


def bucket(seed: str, unit: str) -> int:
    """The unit's bucket in ``[0, 10000)`` for ``seed`` (GrowthBook hash v2)."""
    return fnv1a32(str(fnv1a32(seed + unit))) % BUCKETS


def in_treatment(unit_bucket: int, percentage: float) -> bool:
    """True when ``unit_bucket`` falls inside the first ``percentage`` % of buckets."""
    return unit_bucket < round(percentage * 100)


class Bucketer:
    """Remembered buckets for one seed, bounded so hostile ids cannot grow it forever."""

    __slots__ = ("_buckets", "max_size", "seed")

    def __init__(self, seed: str, *, max_size: int = 1_000_000) -> None:
        self.seed = seed
        self.max_size = max_size
        self._buckets: dict[str, int] = {}

    def __call__(self, unit: str) -> int:
        """The unit's bucket, computed on first use."""
        found = self._buckets.get(unit)
        if found is None:
            found = bucket(self.seed, unit)
            if len(self._buckets) >= self.max_size:
                # Dropping everything is cheap and correct (buckets are pure);
                # an LRU would cost on every hit for a case that should not happen.
                self._buckets.clear()
            self._buckets[unit] = found
        return found
