"""Any token, however malformed, is an `AuthError` (a 401), never another exception (a 500)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.common.auth import AuthError, TokenVerifier

KEY = "fuzz-signing-key-0123456789abcdef0123"
CAPS = {"feed:read": 43200.0, "crm:ingest": 2592000.0, "leads:score": 2592000.0, "operator": 3600.0}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _signed(header: Any, claims: Any) -> str:
    # json.dumps writes NaN/Infinity, which Python's parser (and PyJWT) accepts.
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(KEY.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def _verify_only_auth_errors(token: str) -> None:
    verifier = TokenVerifier({"k1": KEY}, max_ttl=CAPS)
    with contextlib.suppress(AuthError):
        verifier.verify(token)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    header=st.dictionaries(
        st.sampled_from(["alg", "kid", "typ", "crit", "x5u"]), json_values, max_size=4
    )
    | json_values
)
def test_any_header_is_an_auth_error(header: Any) -> None:
    claims = {"tid": "t", "sub": "s", "exp": int(time.time()) + 60}
    _verify_only_auth_errors(_signed(header, claims))


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    claims=st.fixed_dictionaries(
        {},
        optional={
            name: json_values | st.just(int(time.time()) + 60)
            for name in ("tid", "sub", "exp", "iat", "nbf", "scope", "jti", "aud", "iss")
        },
    )
    | json_values
)
def test_any_signed_claims_are_an_auth_error_or_a_principal(claims: Any) -> None:
    _verify_only_auth_errors(_signed({"alg": "HS256", "kid": "k1"}, claims))


@settings(max_examples=300, deadline=None)
@given(token=st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_any_text_is_an_auth_error(token: str) -> None:
    _verify_only_auth_errors(token)


def test_the_cases_that_used_to_escape() -> None:
    now = int(time.time())
    for token in (
        _signed({"alg": "HS256", "kid": ["k1"]}, {"tid": "t", "sub": "s", "exp": now + 60}),
        _signed({"alg": "HS256", "kid": "k1"}, {"tid": "t", "sub": "s", "exp": float("inf")}),
        _signed({"alg": "HS256", "kid": "k1"}, {"tid": "t", "sub": "s", "exp": 10**30}),
        _signed({"alg": "HS256", "kid": "k1"}, {"tid": ["t"], "sub": "s", "exp": now + 60}),
    ):
        verifier = TokenVerifier({"k1": KEY}, max_ttl=CAPS)
        with pytest.raises(AuthError) as refused:
            verifier.verify(token)
        assert refused.value.status_code == 401
