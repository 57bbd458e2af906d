"""The generated-request harness finds what a user would: a 5xx, a refusal outside the contract."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel

from tests.services.openapi_fuzz import fuzz_operations


class Thing(BaseModel):
    name: str
    count: int


def _app() -> FastAPI:
    app = FastAPI()

    @app.post("/v1/things")
    async def create(thing: Thing) -> JSONResponse:
        per_item = 100 // thing.count  # 0: ZeroDivisionError, a 500
        if thing.name == "":
            return PlainTextResponse("no name", status_code=400)  # type: ignore[return-value]
        return JSONResponse({"per_item": per_item})

    @app.post("/internal/things")
    async def unchecked(thing: Thing) -> JSONResponse:
        return JSONResponse({"per_item": 100 // thing.count})

    return app


async def test_a_crash_and_a_refusal_outside_the_contract_are_findings() -> None:
    app = _app()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        report = await fuzz_operations(client, app.openapi(), token="t", examples=30)
    answers = sorted(line.split(" -> ")[1].split(":")[0] for line in report.findings)
    # FastAPI's own 422 has no reason either: the services answer with theirs.
    assert answers == [
        "400 error outside the {detail, reason} contract",
        "422 error outside the {detail, reason} contract",
        "500 server error",
    ]
    assert all(name == "POST /v1/things" for name, _ in report.statuses)  # /v1 only
