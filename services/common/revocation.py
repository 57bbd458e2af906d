"""The revoked tokens a verifier refuses: an in-memory copy, replaced whole by each read.

A revocation names a tenant and either one token (its ``jti``) or a subject:
every token of that agent issued at or before the revocation (``iat`` no
later than its time plus the verifier's leeway, the clock skew it tolerates
everywhere else; a token without ``iat`` is revoked too, since it could have
been issued at any time). Tenants never mix: a revocation in tenant A is
keyed by A and cannot refuse tenant B's token with the same jti or subject.

`Revocations` is what every ``TokenVerifier`` consults, without I/O: the
services' lifespan keeps it current from Postgres
(``services.common.revocation_store.serve_revocations``). It also tells its
age (``auth_revocations_age_seconds``) and wakes whoever waits for a token to
be revoked (an open feed socket) when a read changes the list.

Nothing here is locked: the list is replaced by one assignment on the event
loop's thread, and readers see the old list or the new one.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Protocol


class TokenClaims(Protocol):
    """What a revocation is compared with (``services.common.auth.Principal``)."""

    @property
    def tenant_id(self) -> str:
        """The token's tenant."""
        ...

    @property
    def subject(self) -> str:
        """The token's subject (an agent)."""
        ...

    @property
    def token_id(self) -> str | None:
        """The token's ``jti``, if it has one."""
        ...

    @property
    def issued_at(self) -> int | None:
        """The token's ``iat`` (epoch seconds), if it has one."""
        ...


@dataclass(frozen=True, slots=True)
class RevocationList:
    """Active revocations of every tenant, keyed by tenant first."""

    #: ``(tenant_id, jti)`` of each revoked token.
    tokens: frozenset[tuple[str, str]] = frozenset()
    #: ``(tenant_id, subject)`` -> the revocation's time (epoch seconds).
    subjects: Mapping[tuple[str, str], float] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def of(cls, rows: Iterable[tuple[str, str | None, str | None, float]]) -> RevocationList:
        """From ``(tenant_id, jti, subject, revoked_at)`` rows (one of jti and subject set)."""
        tokens: set[tuple[str, str]] = set()
        subjects: dict[tuple[str, str], float] = {}
        for tenant_id, jti, subject, revoked_at in rows:
            if jti is not None:
                tokens.add((tenant_id, jti))
            elif subject is not None:
                key = (tenant_id, subject)
                subjects[key] = max(revoked_at, subjects.get(key, revoked_at))
        return cls(frozenset(tokens), MappingProxyType(subjects))

    def revokes(self, claims: TokenClaims, *, leeway: float) -> bool:
        """Whether a token with these claims is revoked."""
        tenant_id = claims.tenant_id
        token_id = claims.token_id
        if token_id is not None and (tenant_id, token_id) in self.tokens:
            return True
        revoked_at = self.subjects.get((tenant_id, claims.subject))
        if revoked_at is None:
            return False
        issued_at = claims.issued_at
        return issued_at is None or issued_at <= revoked_at + leeway


class Revocations:
    """The list in use, when it was last read, and who waits for a change."""

    def __init__(self, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._list = RevocationList()
        self._monotonic = monotonic
        # Until the first read, the age counts from the start: the empty list
        # is as old as the process.
        self._read_at = monotonic()
        self._loaded = False
        self._changed: asyncio.Event | None = None

    @property
    def current(self) -> RevocationList:
        """The list in use."""
        return self._list

    @property
    def loaded(self) -> bool:
        """Whether a list was ever read (before that, no token is refused as revoked)."""
        return self._loaded

    def age_seconds(self) -> float:
        """Seconds since the list in use was read (since the start if none was)."""
        return self._monotonic() - self._read_at

    def replace(self, fresh: RevocationList) -> None:
        """Use ``fresh`` from now on, and wake the waiters if it differs."""
        changed = fresh != self._list
        self._list = fresh
        self._read_at = self._monotonic()
        self._loaded = True
        if changed and self._changed is not None:
            self._changed.set()
            self._changed = None

    def revokes(self, claims: TokenClaims, *, leeway: float) -> bool:
        """Whether the list in use revokes a token with these claims."""
        return self._list.revokes(claims, leeway=leeway)

    async def wait_revoked(self, claims: TokenClaims, *, leeway: float) -> None:
        """Return once the list revokes these claims (at once if it does already)."""
        while not self._list.revokes(claims, leeway=leeway):
            if self._changed is None:
                self._changed = asyncio.Event()
            await self._changed.wait()
