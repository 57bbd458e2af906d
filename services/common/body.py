"""Request bodies at the edge: authenticate first, bound the size, then read.

Two layers, both in every app ``create_app`` builds:

- `EdgeGuard`, an ASGI middleware in front of every route. A path ending in
  a newline names no route (``services.common.paths``): 404, and a handshake
  is refused, before anything else. An ambiguous request is 400 next, a
  handshake too: a header that names one value (``Authorization``,
  ``Idempotency-Key``) sent twice, or a query parameter given twice. Each
  reader picks its own copy (the guard checked the last Authorization, the
  route's dependency the first; ``Idempotency-Key`` and every query value
  were the first or the last, silently), so such a request is refused rather
  than read one way here and another there. A request that
  carries a body (a Content-Length above 0, or Transfer-Encoding) is answered
  401 before a byte of it is read unless its bearer token verifies, and 413
  unread when it declares more than the app's cap; a chunked body is counted
  as it streams and refused with 413 the moment it passes the cap, so no
  route ever holds more than the cap in memory. Starlette's own
  ``RequestBodyLimitMiddleware`` counts the same way but answers in plain
  text and knows nothing of tokens; every error here is the
  ``{detail, reason}`` JSON of ``services.common.errors``.
- `read_body` and `parse_body` (together: `read_model`), how every route
  reads its body, in the handler, with its own limit (the realtime webhooks:
  REALTIME_MAX_EVENT_BYTES): read at most ``limit`` bytes, then validate
  against a pydantic model with errors located in the body as FastAPI reports
  its own (422). Never a pydantic body parameter: FastAPI reads and parses
  those before any dependency, so a token without the route's scope, or a
  tenant outside its rollout, would have its body parsed (up to the app's
  cap) and get the 422 of a malformed one instead of the 403
  (tests/services/common/test_body_read.py checks every route).

The token is verified again by the route's ``PrincipalDep`` (a lookup in the
verifier's cache of verified tokens, so the second check costs well under a
microsecond); the guard decides only whether a body may be read at all, not
what the caller may do, which stays with each route.
"""

from __future__ import annotations

import time
from typing import Any, Final, Protocol, TypeVar
from urllib.parse import parse_qsl

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketClose

from services.common.auth import AuthError
from services.common.errors import ApiError
from services.common.metrics import BODY_WAIT_STATE_KEY
from services.common.paths import is_routable

Model = TypeVar("Model", bound=BaseModel)

BODY_TOO_LARGE = "body_too_large"
REPEATED_HEADER = "repeated_header"
REPEATED_QUERY_PARAMETER = "repeated_query_parameter"
#: Headers that name one value: a second copy makes the request ambiguous.
SINGLE_VALUED_HEADERS: Final = frozenset({b"authorization", b"idempotency-key"})


class BodyTooLarge(ApiError):  # noqa: N818 - reads as the condition it names
    """413 ``{detail, reason: "body_too_large"}``; the detail names the limit."""

    def __init__(self, limit: int, setting: str | None = None) -> None:
        source = f" ({setting})" if setting else ", the most this service accepts"
        super().__init__(
            413,
            f"request body exceeds {limit} bytes{source}; send less data per request",
            reason=BODY_TOO_LARGE,
        )
        self.limit = limit


def _json(status: int, body: dict[str, str], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


def _ambiguity(scope: Scope) -> dict[str, str] | None:
    """The ``{detail, reason}`` refusing a request that repeats a single value, else None."""
    seen: set[bytes] = set()
    for name, _ in scope["headers"]:
        if name in SINGLE_VALUED_HEADERS:
            if name in seen:
                return {
                    "detail": f"send the {name.decode('latin-1')} header once",
                    "reason": REPEATED_HEADER,
                }
            seen.add(name)
    # Decoded as Starlette decodes it, so the names compared are the ones routes read.
    query = scope.get("query_string", b"").decode("latin-1")
    names: set[str] = set()
    for name, _ in parse_qsl(query, keep_blank_values=True):
        if name in names:
            # The name is client input: shortened and escaped, never echoed raw.
            shown = repr(name[:40] + ("..." if len(name) > 40 else ""))
            return {
                "detail": f"query parameter {shown} is given more than once; send it once",
                "reason": REPEATED_QUERY_PARAMETER,
            }
        names.add(name)
    return None


async def _refuse_handshake(
    scope: Scope, receive: Receive, send: Send, body: dict[str, str]
) -> None:
    """A 400 before the upgrade where the server can send one, else a policy close."""
    if "websocket.http.response" in scope.get("extensions", {}):
        await WebSocket(scope, receive, send).send_denial_response(_json(400, body))
        return
    await WebSocketClose(code=1008, reason=body["reason"])(scope, receive, send)


class BearerVerifier(Protocol):
    """What the edge guard needs of a verifier: raise ``AuthError`` for a bad token."""

    def verify(self, token: str) -> object:
        """Check ``token``; raise ``AuthError`` when it is not acceptable."""
        ...


class EdgeGuard:
    """Pure ASGI middleware: no token, no body read; never more than ``max_body_bytes``.

    It also refuses paths that no route names (``services.common.paths``) and
    ambiguous requests (`_ambiguity`), for WebSocket handshakes too: Starlette's
    router would match ``/v1/feed%0A``, and the feed reads its token from the query.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        verifier: BearerVerifier,
        max_body_bytes: int,
        setting: str | None = None,
    ) -> None:
        if max_body_bytes < 0:
            raise ValueError(f"max_body_bytes must be >= 0, got {max_body_bytes}")
        self.app = app
        self.verifier = verifier
        self.max_body_bytes = max_body_bytes
        self.setting = setting

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and not is_routable(scope["path"]):
            # What the router answers for any path it does not know.
            await WebSocketClose()(scope, receive, send)
            return
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if not is_routable(scope["path"]):
            await _json(404, {"detail": "Not Found", "reason": "not_found"})(scope, receive, send)
            return
        ambiguous = _ambiguity(scope)
        if ambiguous is not None:
            if scope["type"] == "websocket":
                await _refuse_handshake(scope, receive, send, ambiguous)
            else:
                await _json(400, ambiguous)(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        declared: int | None = None
        streamed = False
        authorization: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = int(value) if value.isdigit() else -1
            elif name == b"transfer-encoding":
                streamed = True
            elif name == b"authorization":
                authorization = value
        if declared == -1:
            refusal = {"detail": "Content-Length is not a number", "reason": "invalid_request"}
            await _json(400, refusal)(scope, receive, send)
            return
        if streamed or (declared is not None and declared > 0):
            refused = self._refusal(authorization, declared)
            if refused is not None:
                await refused(scope, receive, send)
                return
        await self._bounded(scope, receive, send)

    def _refusal(self, authorization: bytes | None, declared: int | None) -> JSONResponse | None:
        try:
            self._authenticate(authorization)
        except AuthError as exc:
            return _json(401, exc.body(), exc.headers())
        if declared is not None and declared > self.max_body_bytes:
            error = BodyTooLarge(self.max_body_bytes, self.setting)
            return _json(413, {"detail": str(error.detail), "reason": BODY_TOO_LARGE})
        return None

    def _authenticate(self, authorization: bytes | None) -> None:
        if authorization is None:
            raise AuthError("missing_token", "send Authorization: Bearer <token> with a body")
        scheme, _, token = authorization.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("malformed_token", "Authorization header must be 'Bearer <token>'")
        self.verifier.verify(token.strip())

    async def _bounded(self, scope: Scope, receive: Receive, send: Send) -> None:
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    raise BodyTooLarge(self.max_body_bytes, self.setting)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge as exc:
            # Normally the app's exception handlers answer it; this covers a
            # body read outside them (a middleware, a background task).
            if started:
                raise
            body = {"detail": str(exc.detail), "reason": BODY_TOO_LARGE}
            await _json(413, body)(scope, receive, send)


async def read_body(request: Request, *, limit: int, setting: str) -> bytes:
    """The request body, refused with `BodyTooLarge` as soon as it passes ``limit``.

    A declared Content-Length over the limit is refused before anything is
    read; a chunked body is read only up to the limit.
    """
    declared = request.headers.get("content-length")
    # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
    if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit, setting)
    chunks: list[bytes] = []
    size = 0
    began = time.perf_counter()
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit, setting)
        chunks.append(chunk)
    # The client's sending time, which the request's duration leaves out.
    setattr(request.state, BODY_WAIT_STATE_KEY, time.perf_counter() - began)
    return b"".join(chunks)


def _in_body(exc: ValidationError) -> RequestValidationError:
    # Locations relative to the body, as FastAPI reports its own body errors.
    return RequestValidationError(
        [{**err, "loc": ("body", *err["loc"])} for err in exc.errors(include_url=False)]
    )


def parse_body(body: bytes, model: type[Model]) -> Model:
    """Validate JSON ``body`` as ``model``; a 422 names the field (``body.x.y``)."""
    if not body:
        raise RequestValidationError(
            [
                {
                    "loc": ("body",),
                    "msg": "request body is empty; send a JSON object",
                    "type": "missing",
                }
            ]
        )
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise _in_body(exc) from None


async def read_model(request: Request, model: type[Model], *, limit: int, setting: str) -> Model:
    """`read_body` then `parse_body`: the body as ``model`` (413 past ``limit``, 422 invalid)."""
    return parse_body(await read_body(request, limit=limit, setting=setting), model)


def _inline_refs(schema: Any, defs: dict[str, Any]) -> Any:
    # OpenAPI cannot resolve pydantic's local "#/$defs/..." references inside
    # an operation's schema, so nested models are inlined.
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inline_refs(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inline_refs(item, defs) for item in schema]
    return schema


#: The answers of a route that reads its own body, for its ``responses=``: FastAPI
#: lists a 422 by itself only for a route with a body parameter or a query.
BODY_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"description": "Body larger than the route's limit (`body_too_large`)."},
    422: {"description": "Malformed JSON or fields; `errors` names each (`validation_error`)."},
}


def request_body_openapi(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting ``model`` as the JSON body of a route that reads its own."""
    schema = model.model_json_schema()
    inlined = _inline_refs(schema, schema.get("$defs", {}))
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": inlined}},
        }
    }
