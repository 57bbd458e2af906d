"""JWT bearer authentication: HS256 tokens carrying the tenant and the agent.

A token has the header ``{"alg": "HS256", "kid": ...}`` and the claims
``tid`` (tenant id), ``sub`` (agent id), ``scope`` (space-separated, as in
RFC 9068), ``exp`` (required), ``iat`` and ``jti``.

Scopes say what a token may do, so that a leaked agent's feed token cannot
post events for the whole tenant (the list and what each allows:
``services.common.scopes``). Routes ask for theirs with ``require_scope``
(HTTP) or ``authenticate_websocket(ws, scope=...)``; a valid token without
the scope is a 403 ``insufficient_scope``. Lifetimes are capped per scope
(JWT_MAX_TTL_*): ``issue_token`` refuses a longer one and the verifier
refuses a token that claims one (``lifetime_too_long``).

Keys rotate by ``kid``: JWT_SECRET_KEY/JWT_KEY_ID sign and verify;
JWT_PREVIOUS_KEYS only verify, so tokens minted before a rotation keep working
until they expire or their kid is dropped from that map.

Every failure raises ``AuthError`` with a machine-readable ``reason``
(``missing_token``, ``malformed_token``, ``unsupported_algorithm``,
``unknown_kid``, ``bad_signature``, ``expired_token``, ``not_yet_valid``,
``missing_claim``, ``missing_tenant``, ``invalid_tenant``,
``missing_subject``, ``lifetime_too_long``, ``revoked_token``); the app
answers it with 401 and that reason. Any token that cannot be read (a header ``kid`` that is not
a string, claims of the wrong type, numbers out of range) is a 401
``malformed_token``, never a 500. WebSocket
routes call ``authenticate_websocket`` and, on failure, ``deny_websocket``.

Revocation: ``enterprisehub token revoke`` stores a revocation of one token
(``jti``) or of every token of a subject issued until then, in one tenant.
Each verifier refuses them (``revoked_token``) from an in-memory list
(``services.common.revocation``) that the services' lifespan reads from
Postgres every AUTH_REVOCATION_REFRESH_SECONDS, so a check costs no I/O; a
feed socket waits on the same list (``TokenVerifier.wait_revoked``) and is
closed when its token is revoked.

Verified tokens are remembered (bounded, per verifier) so that a client
sending the same token on every request pays for the HMAC and the JSON
decoding once: a webhook caller posts thousands of events with one token.
The cache key is the whole token, signature included, so only a byte-equal
copy of a token that verified can hit; the time claims and the revocation
list are checked again on every hit, so a remembered token still expires on
time and is refused once revoked. Failures are never remembered.
"""

from __future__ import annotations

import math
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import jwt
from fastapi import Depends
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket

from services.common.identifiers import AGENT_ID_FORMAT
from services.common.metrics import TENANT_STATE_KEY
from services.common.revocation import Revocations
from services.common.scopes import (
    COACHING_ANALYZE,
    CRM_INGEST,
    LEADS_SCORE,
    OPERATOR,
    SCOPES,
    VISION_ANALYZE,
)
from services.common.settings import AuthSettings
from services.common.tenancy import InvalidTenantId, validate_tenant_id

ALGORITHM = "HS256"
WS_POLICY_VIOLATION = 1008
"""WebSocket close code used when authentication fails after the upgrade."""
EXPIRED_DETAIL = "token has expired; ask for a new one"
"""An expired token's 401 detail: what the holder does next, as a revoked token's says
(tokens are short-lived by design, so every client meets it)."""
VERIFIED_CACHE_SIZE = 4096
"""Verified tokens remembered per verifier (least recently used evicted)."""


class AuthError(Exception):
    """Authentication failed; ``reason`` is a stable code, ``detail`` is for humans."""

    status_code = 401

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")

    def body(self) -> dict[str, str]:
        """JSON body for the answer."""
        return {"detail": self.detail, "reason": self.reason}

    def headers(self) -> dict[str, str]:
        """RFC 6750 challenge header for a 401 answer."""
        challenge = f'Bearer error="invalid_token", error_description="{self.reason}"'
        return {"WWW-Authenticate": challenge}


class ScopeError(AuthError):
    """The token is valid but lacks the scope the route needs: 403 (RFC 6750 3.1)."""

    status_code = 403

    def __init__(self, scope: str) -> None:
        self.scope = scope
        super().__init__(
            "insufficient_scope",
            f"this token lacks the {scope!r} scope; mint one with "
            f"`enterprisehub token --scope {scope}`",
        )

    def headers(self) -> dict[str, str]:
        """RFC 6750 challenge naming the scope that is needed."""
        return {"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{self.scope}"'}


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the tenant that scopes every query, and the agent."""

    tenant_id: str
    subject: str
    expires_at: datetime
    token_id: str | None = None
    key_id: str | None = None
    scopes: frozenset[str] = frozenset()
    #: The ``iat`` claim (epoch seconds): a subject's revocation refuses the tokens
    #: issued until then.
    issued_at: int | None = None

    def require(self, scope: str) -> Principal:
        """Return self if the token carries ``scope``, else raise `ScopeError`."""
        if scope not in self.scopes:
            raise ScopeError(scope)
        return self


@dataclass(frozen=True, slots=True)
class _Verified:
    principal: Principal
    expires: int


def parse_scopes(value: str | Iterable[str]) -> frozenset[str]:
    """Scopes from a ``scope`` claim (or a list); raise ValueError naming an unknown one."""
    items = value.split() if isinstance(value, str) else list(value)
    unknown = [item for item in items if item not in SCOPES]
    if unknown:
        raise ValueError(f"unknown scope {unknown[0]!r}; known: {', '.join(SCOPES)}")
    return frozenset(items)


def max_ttl_seconds(caps: Mapping[str, float], scopes: Collection[str]) -> float:
    """The longest lifetime a token with ``scopes`` may have: the smallest of their caps.

    A token without scopes gets the smallest cap of all (it can reach only
    unscoped routes, and nothing mints one on purpose).
    """
    relevant = [caps[scope] for scope in scopes if scope in caps] or list(caps.values())
    return min(relevant) if relevant else math.inf


class TokenVerifier:
    """Verifies tokens against the active key and the verification-only keys.

    The key set is fixed for the verifier's life (a rotation is a restart
    with new settings), which is what makes remembering verified tokens safe.
    The revocation list is not: every answer, remembered or not, is checked
    against the list in use (``revocations``, kept current by the lifespan).
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
        max_ttl: Mapping[str, float] | None = None,
        revocations: Revocations | None = None,
    ) -> None:
        if not keys:
            raise ValueError("TokenVerifier needs at least one key")
        self._keys = dict(keys)
        self._max_ttl = dict(max_ttl or {})
        self._leeway = leeway_seconds
        self._cache_size = cache_size
        self._clock = clock
        self._verified: OrderedDict[str, _Verified] = OrderedDict()
        self.revocations = revocations if revocations is not None else Revocations()
        """The revoked tokens this verifier refuses."""

    @classmethod
    def from_settings(
        cls, settings: AuthSettings, *, revocations: Revocations | None = None
    ) -> TokenVerifier:
        """Trust JWT_SECRET_KEY (as JWT_KEY_ID) and every JWT_PREVIOUS_KEYS entry;
        refuse what ``revocations`` (a fresh, empty list if None) revokes."""
        previous = settings.jwt_previous_keys.items()
        keys = {kid: secret.get_secret_value() for kid, secret in previous}
        keys[settings.jwt_key_id] = settings.jwt_secret_key.get_secret_value()
        return cls(
            keys,
            leeway_seconds=settings.jwt_leeway_seconds,
            max_ttl=settings.token_max_ttl,
            revocations=revocations,
        )

    def verify(self, token: str) -> Principal:
        """Return the token's principal or raise ``AuthError`` (never anything else)."""
        known = self._verified.get(token)
        if known is None:
            try:
                principal, expires = self._verify_fully(token)
            except AuthError:
                raise
            except Exception:
                # The class of bug, not one instance: whatever a hostile token
                # makes the JWT library or the claim checks raise is a 401.
                raise AuthError("malformed_token", "token could not be read") from None
            self._remember(token, principal, expires)
            return self._unless_revoked(principal)
        # PyJWT's rule, with the same leeway. iat/nbf need no second look:
        # they were in the past (within the leeway) when the token verified.
        if known.expires <= self._clock() - self._leeway:
            del self._verified[token]
            raise AuthError("expired_token", EXPIRED_DETAIL)
        self._verified.move_to_end(token)
        # A revocation can come after the token was remembered: checked on every hit.
        return self._unless_revoked(known.principal)

    def is_revoked(self, principal: Principal) -> bool:
        """Whether the revocation list in use refuses ``principal``'s token."""
        return self.revocations.revokes(principal, leeway=self._leeway)

    async def wait_revoked(self, principal: Principal) -> None:
        """Return once ``principal``'s token is revoked (for sockets that outlive a request)."""
        await self.revocations.wait_revoked(principal, leeway=self._leeway)

    def _unless_revoked(self, principal: Principal) -> Principal:
        if self.is_revoked(principal):
            raise AuthError("revoked_token", "token has been revoked; ask for a new one")
        return principal

    def _remember(self, token: str, principal: Principal, expires: int) -> None:
        if self._cache_size <= 0:
            return
        self._verified[token] = _Verified(principal=principal, expires=expires)
        if len(self._verified) > self._cache_size:
            self._verified.popitem(last=False)

    def _verify_fully(self, token: str) -> tuple[Principal, int]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            # PyJWT raises InvalidTokenError (not DecodeError) for a header
            # whose kid is not a string.
            raise AuthError("malformed_token", "token is not a well-formed JWT") from None
        if not isinstance(header.get("alg"), str) or header["alg"] != ALGORITHM:
            raise AuthError("unsupported_algorithm", f"only {ALGORITHM} tokens are accepted")
        kid = header.get("kid")
        if not isinstance(kid, str) or kid not in self._keys:
            raise AuthError("unknown_kid", "token key id is missing or not trusted")
        claims = self._decode(token, self._keys[kid])
        if not isinstance(claims, dict):
            raise AuthError("malformed_token", "token claims are not a JSON object")
        principal = self._principal(claims, kid)
        expires = _finite_int(claims["exp"], "exp")
        self._check_lifetime(claims, principal.scopes, expires)
        return principal, expires

    def _check_lifetime(self, claims: dict[str, Any], scopes: frozenset[str], exp: int) -> None:
        if not self._max_ttl:
            return
        issued = claims.get("iat")
        start = _finite_int(issued, "iat") if issued is not None else self._clock()
        cap = max_ttl_seconds(self._max_ttl, scopes)
        if exp - start > cap + self._leeway:
            raise AuthError(
                "lifetime_too_long",
                f"token lifetime exceeds the {cap:g} s allowed for its scopes; mint a shorter one",
            )

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
            raise AuthError("expired_token", EXPIRED_DETAIL) from None
        except jwt.ImmatureSignatureError:
            raise AuthError("not_yet_valid", "token is not valid yet (iat/nbf)") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError("missing_claim", f"token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidTokenError:
            raise AuthError("malformed_token", "token claims are malformed") from None

    @staticmethod
    def _principal(claims: dict[str, Any], kid: str) -> Principal:
        tenant = claims.get("tid")
        if tenant is None or tenant == "":
            raise AuthError("missing_tenant", "token has no tenant (tid claim)")
        try:
            validate_tenant_id(tenant)
        except InvalidTenantId:
            raise AuthError("invalid_tenant", "token tenant id is malformed") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise AuthError("missing_subject", "token has no subject (sub claim)")
        scope = claims.get("scope", "")
        if not isinstance(scope, str):
            raise AuthError("malformed_token", "token scope claim must be a string")
        try:
            scopes = parse_scopes(scope)
        except ValueError as exc:
            raise AuthError("malformed_token", f"token scope claim: {exc}") from None
        jti = claims.get("jti")
        issued = claims.get("iat")
        try:
            expires_at = datetime.fromtimestamp(_finite_int(claims["exp"], "exp"), tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise AuthError("malformed_token", "token exp is out of range") from None
        return Principal(
            tenant_id=tenant,
            subject=subject,
            expires_at=expires_at,
            token_id=jti if isinstance(jti, str) else None,
            key_id=kid,
            scopes=scopes,
            issued_at=_finite_int(issued, "iat") if issued is not None else None,
        )


def _finite_int(value: object, claim: str) -> int:
    """A NumericDate claim as an int; AuthError for booleans, NaN, infinities, text."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise AuthError("malformed_token", f"token {claim} claim must be a finite number")
    return int(value)


def issue_token(
    settings: AuthSettings,
    *,
    tenant_id: str,
    subject: str,
    scopes: Iterable[str],
    ttl_seconds: float = 3600,
    now: float | None = None,
    extra_claims: Mapping[str, Any] | None = None,
) -> str:
    """Mint a token signed with the active key (for the CLI, demos and tests).

    Raises ValueError (one line, for the CLI to print) for a subject that is
    not an `AgentId`, an unknown or missing scope, a lifetime that is not a
    positive finite number of seconds, or one longer than the cap of the
    token's scopes.
    """
    validate_tenant_id(tenant_id)
    # The feed delivers an event to the sockets whose subject equals its
    # agent_id, an AgentId: a token for any other subject could never be
    # targeted. Only minting checks; tokens already issued keep verifying.
    if not AGENT_ID_FORMAT.matches(subject):
        shown = subject if len(subject) <= 64 else subject[:64] + "..."
        raise ValueError(
            f"subject {shown!r} is not an agent id ({AGENT_ID_FORMAT.description}), "
            "so no event could target it"
        )
    granted = parse_scopes(scopes if isinstance(scopes, str) else list(scopes))
    if not granted:
        raise ValueError(f"a token needs at least one scope ({', '.join(SCOPES)})")
    if isinstance(ttl_seconds, bool) or not math.isfinite(ttl_seconds) or ttl_seconds <= 0:
        raise ValueError(f"ttl must be a positive, finite number of seconds, not {ttl_seconds!r}")
    cap = max_ttl_seconds(settings.token_max_ttl, granted)
    if ttl_seconds > cap:
        raise ValueError(
            f"ttl {ttl_seconds:g} s exceeds the {cap:g} s allowed for scope(s) "
            f"{' '.join(sorted(granted))} (JWT_MAX_TTL_* settings)"
        )
    issued = time.time() if now is None else now
    claims: dict[str, Any] = {
        **(extra_claims or {}),
        "tid": tenant_id,
        "sub": subject,
        "scope": " ".join(sorted(granted)),
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


BEARER_SCHEME = HTTPBearer(
    scheme_name="bearerAuth",
    bearerFormat="JWT",
    description="HS256 JWT carrying the tenant (tid), the caller (sub) and its scopes "
    f"(scope: {', '.join(SCOPES)}). Mint one with "
    "`enterprisehub token --tenant T --subject S --scope SCOPE`.",
    auto_error=False,
)
"""Declares the bearer scheme in the OpenAPI documents; the checks are ours (reasons)."""


def auth_responses(scope: str, *, feature: str | None = None) -> dict[int | str, dict[str, Any]]:
    """A guarded router's ``responses=``: what its ``require_scope`` (and rollout) answer.

    FastAPI documents what a route returns, not what its dependencies raise, so
    without these the OpenAPI documents listed no 401 or 403 for any guarded route.
    """
    refused = f"`insufficient_scope`: the token lacks `{scope}`"
    if feature is not None:
        refused += f"; `feature_disabled`: the tenant is outside the `{feature}` rollout"
    return {
        401: {
            "description": "Missing, malformed, expired, revoked or forged bearer token; "
            "`reason` says which (`missing_token`, `expired_token`, `revoked_token`, ...)."
        },
        403: {"description": refused + "."},
    }


async def require_principal(
    conn: HTTPConnection,
    _scheme: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER_SCHEME)] = None,
) -> Principal:
    """FastAPI dependency: the principal of the request's bearer token."""
    token = _bearer_from_header(conn.headers.get("authorization"))
    if token is None:
        raise AuthError("missing_token", "send Authorization: Bearer <token>")
    principal = _verifier(conn).verify(token)
    # For the per-tenant request counter (services/common/metrics.py).
    setattr(conn.state, TENANT_STATE_KEY, principal.tenant_id)
    return principal


PrincipalDep = Annotated[Principal, Depends(require_principal)]
"""Any valid token, whatever its scopes (use `require_scope` on real routes)."""


def require_scope(scope: str) -> Callable[[HTTPConnection], Awaitable[Principal]]:
    """FastAPI dependency: the principal of a valid token that carries ``scope`` (else 403).

    ``Annotated[Principal, Depends(require_scope(CRM_INGEST))]``.
    """
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    async def dependency(
        conn: HTTPConnection,
        _scheme: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER_SCHEME)] = None,
    ) -> Principal:
        return (await require_principal(conn)).require(scope)

    dependency.__name__ = f"require_scope_{scope.replace(':', '_')}"
    return dependency


IngestPrincipalDep = Annotated[Principal, Depends(require_scope(CRM_INGEST))]
"""A token with ``crm:ingest`` (the lead event webhooks)."""
ScoringPrincipalDep = Annotated[Principal, Depends(require_scope(LEADS_SCORE))]
"""A token with ``leads:score`` (the scoring API)."""
OperatorPrincipalDep = Annotated[Principal, Depends(require_scope(OPERATOR))]
"""A token with ``operator`` (operator APIs)."""
VisionPrincipalDep = Annotated[Principal, Depends(require_scope(VISION_ANALYZE))]
"""A token with ``vision:analyze`` (property photo analyses)."""
CoachingPrincipalDep = Annotated[Principal, Depends(require_scope(COACHING_ANALYZE))]
"""A token with ``coaching:analyze`` (coaching analyses)."""


async def authenticate_websocket(websocket: WebSocket, *, scope: str | None = None) -> Principal:
    """The principal of a WebSocket handshake, before ``accept()``.

    The token comes from ``Authorization: Bearer`` or, for browsers that
    cannot set headers on a WebSocket, the ``access_token`` query parameter.
    With ``scope``, the token must carry it. Raises ``AuthError`` (a
    `ScopeError` for a missing scope).
    """
    token = _bearer_from_header(websocket.headers.get("authorization"))
    if token is None:
        token = websocket.query_params.get("access_token") or None
    if token is None:
        raise AuthError(
            "missing_token", "send Authorization: Bearer <token> or ?access_token=<token>"
        )
    principal = _verifier(websocket).verify(token)
    return principal if scope is None else principal.require(scope)


async def deny_websocket(websocket: WebSocket, error: AuthError) -> None:
    """Refuse a handshake: HTTP 401 (403 for a missing scope) with the reason.

    Servers with the ASGI ``websocket.http.response`` extension (uvicorn,
    Starlette's TestClient) send the JSON body; others get close code 1008
    with the reason.
    """
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        response = JSONResponse(
            error.body(), status_code=error.status_code, headers=error.headers()
        )
        await websocket.send_denial_response(response)
        return
    await websocket.close(code=WS_POLICY_VIOLATION, reason=error.reason)
