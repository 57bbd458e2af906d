"""JSON error bodies: every 4xx/503 says what went wrong in ``detail`` and ``reason``.

Shape: ``{"detail": str, "reason": str}`` plus ``errors`` for validation
failures (one ``{"field", "problem"}`` per problem). Bad input is always a
4xx, never a 500; an unreachable Postgres or Redis is a 503 with
``Retry-After`` so clients and load balancers back off. Input that passed
validation but that Postgres refuses as data (``asyncpg.DataError``: a
character or number it cannot store) is the request's fault: 422
``unstorable_input``. A client that disconnects before its body is read
is recorded as 499 ``client_closed_request`` (nginx's code; nobody reads the
answer): not a server error, so it neither logs a traceback nor burns the
error budget that rollbacks are triggered from. Anything else unforeseen is
a 500 in the same shape (``internal_error``), never a plain-text page.
"""

from __future__ import annotations

import re
from http import HTTPStatus
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from services.common.auth import AuthError
from services.common.database import DatabaseUnavailable
from services.common.redis import UNAVAILABLE_ERRORS as REDIS_ERRORS
from services.common.redis import RedisUnavailable, unavailable
from services.common.storage import StorageUnavailable
from services.common.tenancy import InvalidTenantId

RETRY_AFTER_SECONDS = "5"
CLIENT_CLOSED_REQUEST = 499
"""The status recorded for a request whose client left before its body was read."""


def reason_for_status(status: int) -> str:
    """The ``reason`` of an error answer that has no more specific one: its status phrase."""
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in loc) or "(request)"


#: Longest problem told per field: a validator's message may quote the input.
MAX_PROBLEM_CHARS = 300


def _problem(message: str) -> str:
    return message if len(message) <= MAX_PROBLEM_CHARS else message[:MAX_PROBLEM_CHARS] + "..."


async def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    # The offending input is not echoed back: it may be large or sensitive. A
    # validator's own message may quote it (a 600 KB time zone came back twice).
    errors = [
        {"field": _field(err.get("loc", ())), "problem": _problem(str(err.get("msg", "invalid")))}
        for err in exc.errors()
    ]
    first = errors[0] if errors else {"field": "(request)", "problem": "invalid"}
    return JSONResponse(
        {
            "detail": f"{first['field']}: {first['problem']}",
            "reason": "validation_error",
            "errors": errors,
        },
        status_code=422,
    )


class ApiError(StarletteHTTPException):
    """An HTTP error answered as ``{detail, reason}`` with this specific ``reason``."""

    def __init__(
        self, status_code: int, detail: str, *, reason: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(status_code, detail, headers)
        self.reason = reason


async def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    reason = exc.reason if isinstance(exc, ApiError) else reason_for_status(exc.status_code)
    return JSONResponse(
        {"detail": exc.detail, "reason": reason},
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def _auth(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AuthError)
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers())


def _unavailable_response(reason: str) -> JSONResponse:
    return JSONResponse(
        {"detail": reason, "reason": "dependency_unavailable"},
        status_code=503,
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


async def _database(_: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, DatabaseUnavailable):
        return _unavailable_response(exc.reason)
    return _unavailable_response(f"postgres unavailable ({type(exc).__name__})")


async def _storage(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StorageUnavailable)
    return _unavailable_response(exc.reason)


async def _redis(_: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, RedisUnavailable):
        return _unavailable_response(exc.reason)
    return _unavailable_response(unavailable(exc).reason)


# asyncpg's message for an argument it could not encode carries the argument's
# repr (for an array: every element); only the argument number and the problem
# are kept.
_ARGUMENT_REPR = re.compile(r"(invalid input for query argument \$\d+): .* (\([^()]*\))", re.DOTALL)


async def _unstorable(_: Request, exc: Exception) -> JSONResponse:
    # The database's message names the problem, not the value (no echo).
    message = _ARGUMENT_REPR.sub(r"\1 \2", str(exc))
    problem = message.splitlines()[0][:200] if message else type(exc).__name__
    return JSONResponse(
        {
            "detail": f"the request holds data that cannot be stored: {problem}",
            "reason": "unstorable_input",
        },
        status_code=422,
    )


async def _internal(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        {"detail": "internal error; it has been logged", "reason": "internal_error"},
        status_code=500,
    )


async def _client_gone(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse(
        {
            "detail": "the client closed the connection before sending its whole body",
            "reason": "client_closed_request",
        },
        status_code=CLIENT_CLOSED_REQUEST,
    )


async def _tenant(_: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(exc), "reason": "invalid_tenant"}, status_code=400)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers above on ``app``."""
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(AuthError, _auth)
    app.add_exception_handler(InvalidTenantId, _tenant)
    app.add_exception_handler(DatabaseUnavailable, _database)
    app.add_exception_handler(StorageUnavailable, _storage)
    # Connection loss in the middle of a query escapes as asyncpg's own error.
    app.add_exception_handler(asyncpg.PostgresConnectionError, _database)
    app.add_exception_handler(asyncpg.CannotConnectNowError, _database)
    app.add_exception_handler(asyncpg.DataError, _unstorable)
    app.add_exception_handler(ClientDisconnect, _client_gone)
    # Starlette still re-raises it after answering, so it is logged as before.
    app.add_exception_handler(Exception, _internal)
    app.add_exception_handler(RedisUnavailable, _redis)
    for error_type in REDIS_ERRORS:
        if error_type is not OSError:
            app.add_exception_handler(error_type, _redis)
