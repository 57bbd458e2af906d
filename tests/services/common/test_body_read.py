"""``read_model``: a route's own body limit, then validation located in the body."""

from __future__ import annotations

import importlib
import pkgutil

import pytest
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, TypeAdapter
from starlette.requests import Request
from starlette.types import Message

import services
from services.common.body import BodyTooLarge, read_model
from services.common.identifiers import UUID_TEXT, AgentId, LeadId


class _Outcome(BaseModel):
    outcome: str = Field(max_length=20)


def _request(*chunks: bytes, declared: int | None = None) -> Request:
    pending = [
        {"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1}
        for i, chunk in enumerate(chunks)
    ]

    async def receive() -> Message:
        return pending.pop(0)

    headers = [] if declared is None else [(b"content-length", str(declared).encode())]
    return Request({"type": "http", "method": "POST", "headers": headers}, receive)


async def test_a_body_within_the_limit_is_read_and_validated() -> None:
    body = await read_model(
        _request(b'{"outcome":', b' "responded"}'), _Outcome, limit=64, setting="X_BYTES"
    )
    assert body == _Outcome(outcome="responded")


@pytest.mark.parametrize("declared", [None, 65])
async def test_a_body_past_the_limit_is_413_naming_the_setting(declared: int | None) -> None:
    with pytest.raises(BodyTooLarge) as refused:
        await read_model(
            _request(b"x" * 40, b"x" * 25, declared=declared),
            _Outcome,
            limit=64,
            setting="X_BYTES",
        )
    assert refused.value.status_code == 413
    assert "X_BYTES" in refused.value.detail


async def test_an_invalid_body_is_422_located_in_the_body() -> None:
    with pytest.raises(RequestValidationError) as invalid:
        await read_model(_request(b'{"outcome": 5}'), _Outcome, limit=64, setting="X_BYTES")
    assert [error["loc"] for error in invalid.value.errors()] == [("body", "outcome")]


async def test_a_content_length_of_non_ascii_digits_is_not_trusted() -> None:
    # str.isdigit() accepts "²": int() then raised, a 500 under an ASGI server
    # that passes such a header on (uvicorn's parsers refuse it first).
    request = Request(
        {"type": "http", "method": "POST", "headers": [(b"content-length", b"\xb2")]},
        _request(b'{"outcome": "ok"}').receive,
    )
    body = await read_model(request, _Outcome, limit=64, setting="X_BYTES")
    assert body == _Outcome(outcome="ok")


def _route_modules() -> list[str]:
    return [
        info.name
        for info in pkgutil.walk_packages(services.__path__, "services.")
        if ".routes." in info.name
    ]


@pytest.mark.parametrize("module", _route_modules())
def test_no_route_takes_its_body_as_a_parameter(module: str) -> None:
    # FastAPI reads and parses a body parameter before any dependency runs:
    # coaching, vision and scoring parsed up to MAX_REQUEST_BODY_BYTES (20 MiB
    # on ml-services) before the scope and the rollout were checked. A route
    # reads its body in the handler (read_model / read_body), after them.
    router = importlib.import_module(module).router
    taking = [
        f"{sorted(route.methods)} {route.path}"
        for route in router.routes
        if isinstance(route, APIRoute) and route.body_field is not None
    ]
    assert taking == [], f"{module}: read the body with services.common.body.read_model"


@pytest.mark.parametrize("module", _route_modules())
def test_a_route_documenting_its_own_body_lists_its_422(module: str) -> None:
    # FastAPI lists a 422 by itself only for a body parameter or a query: the
    # routes that read their own body lost it from their OpenAPI operation.
    router = importlib.import_module(module).router
    unlisted = [
        route.path
        for route in router.routes
        if isinstance(route, APIRoute)
        and "requestBody" in (route.openapi_extra or {})
        and not {422, "422"} & set(route.responses)
    ]
    assert unlisted == [], f"{module}: add responses=BODY_ERROR_RESPONSES"


def _uuid_fields(schema: object, where: str = "body") -> list[tuple[str, dict[str, object]]]:
    if isinstance(schema, dict):
        found = [(where, schema)] if schema.get("format") == "uuid" else []
        for key, value in schema.items():
            found += _uuid_fields(value, f"{where}.{key}")
        return found
    if isinstance(schema, list):
        return [hit for i, item in enumerate(schema) for hit in _uuid_fields(item, f"{where}.{i}")]
    return []


@pytest.mark.parametrize("module", _route_modules())
def test_every_uuid_a_body_takes_is_read_from_its_canonical_text(module: str) -> None:
    # A plain uuid.UUID field also reads braces, urn:uuid: and hex without hyphens,
    # which its published schema (format: uuid) does not describe: churn's
    # signal_id did. CanonicalUuid checks, and publishes, the one form.
    router = importlib.import_module(module).router
    loose = [
        f"{route.path} {where}"
        for route in router.routes
        if isinstance(route, APIRoute)
        for where, field in _uuid_fields((route.openapi_extra or {}).get("requestBody"))
        if field.get("pattern") != f"^{UUID_TEXT.pattern}$"
    ]
    assert loose == [], f"{module}: type these ids as services.common.identifiers.CanonicalUuid"


def _fields_named(schema: object, name: str) -> list[dict[str, object]]:
    found: list[dict[str, object]] = []
    if isinstance(schema, dict):
        properties = schema.get("properties")
        if isinstance(properties, dict) and isinstance(properties.get(name), dict):
            found.append(properties[name])
        for value in schema.values():
            found += _fields_named(value, name)
    elif isinstance(schema, list):
        for item in schema:
            found += _fields_named(item, name)
    return found


def _published(schema: dict[str, object]) -> dict[str, object]:
    options = schema.get("anyOf", [schema])
    assert isinstance(options, list)
    (only,) = [option for option in options if option != {"type": "null"}]
    return {key: only.get(key) for key in ("type", "minLength", "maxLength", "pattern")}


@pytest.mark.parametrize("module", _route_modules())
def test_every_lead_and_agent_id_a_route_takes_is_the_shared_type(module: str) -> None:
    # Realtime took both as free text, churn as its own Identifier and coaching
    # its agent ids as 128 characters without "@": one lead or agent was accepted
    # by one service and refused by the next.
    app = FastAPI()
    app.include_router(importlib.import_module(module).router)
    expected = {
        name: _published(TypeAdapter(kind).json_schema())
        for name, kind in (("lead_id", LeadId), ("agent_id", AgentId))
    }
    differing = []
    for path, item in app.openapi()["paths"].items():
        for method, operation in item.items():
            for name, shared in expected.items():
                taken = [p["schema"] for p in operation.get("parameters", []) if p["name"] == name]
                taken += _fields_named(operation.get("requestBody"), name)
                differing += [
                    f"{method.upper()} {path} {name}" for s in taken if _published(s) != shared
                ]
    assert differing == [], (
        f"{module}: type these ids as services.common.identifiers.LeadId/AgentId"
    )
