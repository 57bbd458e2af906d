"""The verified-token cache of `TokenVerifier`: faster, never more permissive."""

from __future__ import annotations

import time

import jwt
import pytest

from services.common.auth import AuthError, TokenVerifier

KEY = "k" * 40
OTHER = "o" * 40
# PyJWT checks the time claims against the real clock on a full verification.
NOW = int(time.time())


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def token(*, exp: int, tid: str = "tenant-a", secret: str = KEY, kid: str = "k1") -> str:
    claims = {"tid": tid, "sub": "agent-1", "iat": NOW - 60, "exp": exp}
    return jwt.encode(claims, secret, algorithm="HS256", headers={"kid": kid})


def verifier(clock: Clock, **kwargs: int) -> TokenVerifier:
    return TokenVerifier({"k1": KEY}, leeway_seconds=10, clock=clock, **kwargs)


def count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    real = jwt.decode

    def spy(encoded: str, *args: object, **kwargs: object) -> object:
        calls.append(encoded)
        return real(encoded, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(jwt, "decode", spy)
    return calls


def test_a_repeated_token_is_verified_once(monkeypatch: pytest.MonkeyPatch) -> None:
    decodes = count_decodes(monkeypatch)
    v = verifier(Clock(NOW))
    good = token(exp=NOW + 3600)
    principals = [v.verify(good) for _ in range(5)]
    assert {p.tenant_id for p in principals} == {"tenant-a"}
    assert decodes == [good]


def test_a_remembered_token_still_expires_on_time() -> None:
    clock = Clock(NOW)
    v = verifier(clock)
    exp = NOW + 3600
    good = token(exp=exp)
    clock.now = exp - 1
    assert v.verify(good).subject == "agent-1"
    clock.now = exp + 9  # inside the leeway
    assert v.verify(good).subject == "agent-1"
    clock.now = exp + 10
    with pytest.raises(AuthError) as refused:
        v.verify(good)
    assert refused.value.reason == "expired_token"
    # The cache's refusal reads as the full check's does.
    assert refused.value.detail == "token has expired; ask for a new one"


def test_failures_are_not_remembered(monkeypatch: pytest.MonkeyPatch) -> None:
    decodes = count_decodes(monkeypatch)
    v = verifier(Clock(NOW))
    forged = token(exp=NOW + 3600, secret=OTHER)
    for _ in range(3):
        with pytest.raises(AuthError) as refused:
            v.verify(forged)
        assert refused.value.reason == "bad_signature"
    assert len(decodes) == 3


def test_a_tampered_copy_of_a_remembered_token_is_refused() -> None:
    v = verifier(Clock(NOW))
    good = token(exp=NOW + 3600)
    v.verify(good)
    header, _payload, signature = good.split(".")
    other_tenant = token(exp=NOW + 3600, tid="tenant-b").split(".")[1]
    with pytest.raises(AuthError) as refused:
        v.verify(f"{header}.{other_tenant}.{signature}")
    assert refused.value.reason == "bad_signature"


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    exp = NOW + 3600
    v = verifier(Clock(NOW), cache_size=2)
    first, second, third = (token(exp=exp, tid=f"tenant-{n}") for n in "abc")
    for t in (first, second, third):
        v.verify(t)
    decodes = count_decodes(monkeypatch)
    v.verify(third)
    v.verify(second)
    assert decodes == []
    v.verify(first)  # evicted as the least recently used
    assert decodes == [first]
