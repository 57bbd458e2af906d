"""JWT bearer authentication: HS256 tokens carrying the tenant and the agent.

A token has the header ``{"alg": "HS256", "kid": ...}`` and the claims
``tid`` (tenant id), ``sub`` (agent id), ``exp`` (required), ``iat`` and
``jti``. Keys rotate by ``kid``: JWT_SECRET_KEY/JWT_KEY_ID sign and verify;
JWT_PREVIOUS_KEYS only verify, so tokens minted before a rotation keep working
until they expire or their kid is dropped from that map.

Every failure raises ``AuthError`` with a machine-readable ``reason``
(``missing_token``, ``malformed_token``, ``unsupported_algorithm``,
``unknown_kid``, ``bad_signature``, ``expired_token``, ``not_yet_valid``,
``missing_claim``, ``missing_tenant``, ``invalid_tenant``,
``missing_subject``); the app answers it with 401 and that reason. WebSocket
routes call ``authenticate_websocket`` and, on failure, ``deny_websocket``.

Verified tokens are remembered (bounded, per verifier) so that a client
sending the same token on every request pays for the HMAC and the JSON
decoding once: a webhook caller posts thousands of events with one token.
The cache key is the whole token, signature included, so only a byte-equal
copy of a token that verified can hit; the time claims are checked again on
every hit, so a remembered token still expires on time. Failures are never
remembered.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import jwt
from fastapi import Depends
from fastapi.responses import JSONResponse
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket

from services.common.settings import AuthSettings
from services.common.tenancy import InvalidTenantId, validate_tenant_id

ALGORITHM = "HS256"
WS_POLICY_VIOLATION = 1008
"""WebSocket close code used when authentication fails after the upgrade."""
VERIFIED_CACHE_SIZE = 4096
"""Verified tokens remembered per verifier (least recently used evicted)."""


class AuthError(Exception):
    """Authentication failed; ``reason`` is a stable code, ``detail`` is for humans."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")

    def body(self) -> dict[str, str]:
        """JSON body for a 401 answer."""
        return {"detail": self.detail, "reason": self.reason}

    def headers(self) -> dict[str, str]:
        """RFC 6750 challenge header for a 401 answer."""
        challenge = f'Bearer error="invalid_token", error_description="{self.reason}"'
        return {"WWW-Authenticate": challenge}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the tenant that scopes every query, and the agent."""

    tenant_id: str
    subject: str
    expires_at: datetime
    token_id: str | None = None
    key_id: str | None = None


@dataclass(frozen=True, slots=True)
class _Verified:
    principal: Principal
    expires: int


class TokenVerifier:
    """Verifies tokens against the active key and the verification-only keys.

    The key set is fixed for the verifier's life (a rotation is a restart
    with new settings), which is what makes remembering verified tokens safe.
    The cache is not locked: a verifier belongs to one app, whose routes and
    dependencies call it from the event loop's thread.
    """

    def __init__(
        self,
        keys: Mapping[str, str],
        *,
        leeway_seconds: float = 10.0,
        cache_size: int = VERIFIED_CACHE_SIZE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not keys:
            raise ValueError("TokenVerifier needs at least one key")
        self._keys = dict(keys)
        self._leeway = leeway_seconds
        self._cache_size = cache_size
        self._clock = clock
        self._verified: OrderedDict[str, _Verified] = OrderedDict()

    @classmethod
    def from_settings(cls, settings: AuthSettings) -> TokenVerifier:
        """Trust JWT_SECRET_KEY (as JWT_KEY_ID) and every JWT_PREVIOUS_KEYS entry."""
        previous = settings.jwt_previous_keys.items()
        keys = {kid: secret.get_secret_value() for kid, secret in previous}
        keys[settings.jwt_key_id] = settings.jwt_secret_key.get_secret_value()
        return cls(keys, leeway_seconds=settings.jwt_leeway_seconds)

    def verify(self, token: str) -> Principal:
        """Return the token's principal or raise ``AuthError``."""
        known = self._verified.get(token)
        if known is None:
            principal, claims = self._verify_fully(token)
            self._remember(token, principal, claims)
            return principal
        # PyJWT's rule, with the same leeway. iat/nbf need no second look:
        # they were in the past (within the leeway) when the token verified.
        if known.expires <= self._clock() - self._leeway:
            del self._verified[token]
            raise AuthError("expired_token", "token has expired")
        self._verified.move_to_end(token)
        return known.principal

    def _remember(self, token: str, principal: Principal, claims: dict[str, Any]) -> None:
        if self._cache_size <= 0:
            return
        self._verified[token] = _Verified(principal=principal, expires=int(claims["exp"]))
        if len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)

    def _verify_fully(self, token: str) -> tuple[Principal, dict[str, Any]]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise AuthError("malformed_token", "token is not a well-formed JWT") from None
        if header.get("alg") != ALGORITHM:
            raise AuthError("unsupported_algorithm", f"only {ALGORITHM} tokens are accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or kid not in self._keys:
            raise AuthError("unknown_kid", "token key id is missing or not trusted")
        claims = self._decode(token, self._keys[kid])
        return self._principal(claims, kid), claims

    def _decode(self, token: str, key: str) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                options={"require": ["exp"]},
                leeway=self._leeway,
            )
        except jwt.InvalidSignatureError:
            raise AuthError("bad_signature", "token signature does not verify") from None
        except jwt.ExpiredSignatureError:
            raise AuthError("expired_token", "token has expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("not_yet_valid", "token is not valid yet (iat/nbf)") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError("missing_claim", f"token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidTokenError:
            raise AuthError("malformed_token", "token claims are malformed") from None

    @staticmethod
    def _principal(claims: dict[str, Any], kid: str) -> Principal:
        tenant = claims.get("tid")
        if not tenant:
            raise AuthError("missing_tenant", "token has no tenant (tid claim)")
        try:
            validate_tenant_id(tenant)
        except InvalidTenantId:
            raise AuthError("invalid_tenant", "token tenant id is malformed") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise AuthError("missing_subject", "token has no subject (sub claim)")
        jti = claims.get("jti")
        return Principal(
            tenant_id=tenant,
            subject=subject,
            expires_at=datetime.fromtimestamp(float(claims["exp"]), tz=UTC),
            token_id=jti if isinstance(jti, str) else None,
            key_id=kid,
        )


def issue_token(
    settings: AuthSettings,
    *,
    tenant_id: str,
    subject: str,
    ttl_seconds: float = 3600,
    now: float | None = None,
    extra_claims: Mapping[str, Any] | None = None,
) -> str:
    """Mint a token signed with the active key (for the CLI, demos and tests)."""
    validate_tenant_id(tenant_id)
    if not subject:
        raise ValueError("subject must be non-empty")
    issued = time.time() if now is None else now
    claims: dict[str, Any] = {
        **(extra_claims or {}),
        "tid": tenant_id,
        "sub": subject,
        "iat": int(issued),
        "exp": int(issued + ttl_seconds),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(
        claims,
        settings.jwt_secret_key.get_secret_value(),
        algorithm=ALGORITHM,
        headers={"kid": settings.jwt_key_id},
    )


def _bearer_from_header(value: str | None) -> str | None:
    if value is None:
        return None
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("malformed_token", "Authorization header must be 'Bearer <token>'")
    return token.strip()


def _verifier(conn: HTTPConnection) -> TokenVerifier:
    verifier: TokenVerifier = conn.app.state.token_verifier
    return verifier


async def require_principal(conn: HTTPConnection) -> Principal:
    """FastAPI dependency: the principal of the request's bearer token."""
    token = _bearer_from_header(conn.headers.get("authorization"))
    if token is None:
        raise AuthError("missing_token", "send Authorization: Bearer <token>")
    return _verifier(conn).verify(token)


PrincipalDep = Annotated[Principal, Depends(require_principal)]


async def authenticate_websocket(websocket: WebSocket) -> Principal:
    """The principal of a WebSocket handshake, before ``accept()``.

    The token comes from ``Authorization: Bearer`` or, for browsers that
    cannot set headers on a WebSocket, the ``access_token`` query parameter.
    Raises ``AuthError``.
    """
    token = _bearer_from_header(websocket.headers.get("authorization"))
    if token is None:
        token = websocket.query_params.get("access_token") or None
    if token is None:
        raise AuthError(
            "missing_token", "send Authorization: Bearer <token> or ?access_token=<token>"
        )
    return _verifier(websocket).verify(token)


async def deny_websocket(websocket: WebSocket, error: AuthError) -> None:
    """Refuse a handshake: HTTP 401 with the reason where the server supports it.

    Servers with the ASGI ``websocket.http.response`` extension (uvicorn,
    Starlette's TestClient) send the 401 JSON body; others get close code 1008
    with the reason.
    """
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        response = JSONResponse(error.body(), status_code=401, headers=error.headers())
        await websocket.send_denial_response(response)
        return
    await websocket.close(code=WS_POLICY_VIOLATION, reason=error.reason)
