"""Requests generated from a service's own OpenAPI document, sent to the running app.

schemathesis generates, for every ``/v1`` operation, requests the document allows
(positive) and requests it forbids (negative: wrong types, missing fields,
out-of-range values, broken bodies), and hypothesis drives them. Each request
carries a valid token, so the handlers behind the scope check are reached. What a
user would notice is a finding: a 5xx, or an error answer outside the
``{detail, reason}`` contract.

The app runs in the test's event loop (``app_client``, real Postgres and Redis);
hypothesis is synchronous, so it runs in a worker thread and hands each request to
the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

#: Examples per operation and mode: enough to reach every field's edge cases
#: (schemathesis starts from the boundaries) in about a second per operation.
#: ``FUZZ_EXAMPLES=500 pytest -k no_request_the_document`` is a deeper sweep.
DEFAULT_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))


@dataclass
class FuzzReport:
    """What the generated requests got: statuses per operation, and the findings."""

    #: ``{("POST /v1/x", 422): count}``, for the requests that reached the app.
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    #: One line per operation and status that broke the contract.
    findings: list[str] = field(default_factory=list)

    def answered(self, operation: str, status_class: int) -> int:
        """How many requests of ``operation`` got a status in ``status_class``00-99."""
        return sum(
            count
            for (name, status), count in self.statuses.items()
            if name == operation and status // 100 == status_class
        )


def _finding(kwargs: dict[str, Any], response: httpx.Response) -> str | None:
    if response.status_code >= 500:
        problem = "server error"
    elif response.status_code >= 400:
        try:
            body = response.json()
        except ValueError:
            body = None
        if (
            isinstance(body, dict)
            and isinstance(body.get("detail"), str)
            and isinstance(body.get("reason"), str)
        ):
            return None
        problem = "error outside the {detail, reason} contract"
    else:
        return None
    sent = kwargs.get("json", kwargs.get("data"))
    return (
        f"{kwargs['method']} {kwargs['url']} params={kwargs.get('params')} "
        f"body={str(sent)[:300]!r} -> {response.status_code} {problem}: {response.text[:300]!r}"
    )


async def fuzz_operations(
    client: httpx.AsyncClient,
    openapi: dict[str, Any],
    *,
    token: str,
    examples: int = DEFAULT_EXAMPLES,
) -> FuzzReport:
    """Send generated requests for every ``/v1`` operation of ``openapi``.

    Deterministic: the same document gives the same requests. The findings hold
    the first request of each operation and status that broke the contract.
    """
    loop = asyncio.get_running_loop()
    credential = {"Authorization": f"Bearer {token}"}
    report = FuzzReport()
    findings: dict[tuple[str, int], str] = {}

    def send(name: str, kwargs: dict[str, Any]) -> None:
        # Negative cases may drop the credential: every request carries it, to
        # reach the handlers (tokens are fuzzed on their own).
        headers = {**(kwargs.get("headers") or {}), **credential}
        body: dict[str, Any] = {"content": kwargs.get("data")}
        if "json" in kwargs:
            # The stdlib encoder: integers past 64 bits, and NaN (not JSON, sent all the same).
            body = {"content": json.dumps(kwargs["json"]).encode()}
            headers.setdefault("Content-Type", "application/json")
        request = client.request(
            kwargs["method"], kwargs["url"], headers=headers, params=kwargs.get("params"), **body
        )
        try:
            response = asyncio.run_coroutine_threadsafe(request, loop).result(timeout=60)
        except (httpx.LocalProtocolError, UnicodeEncodeError):
            return  # a header no HTTP client can send: nothing reached the app
        report.statuses[name, response.status_code] += 1
        finding = _finding(kwargs, response)
        if finding is not None:
            findings.setdefault((name, response.status_code), finding)

    def fuzz(operation: Any, mode: GenerationMode) -> None:
        name = f"{operation.method.upper()} {operation.path}"

        @settings(
            max_examples=examples,
            database=None,
            deadline=None,
            derandomize=True,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def check(case: Any) -> None:
            send(name, case.as_transport_kwargs(base_url=str(client.base_url)))

        # Unsatisfiable: nothing to break (no parameter or body the document constrains).
        with contextlib.suppress(Unsatisfiable):
            check()

    def run() -> FuzzReport:
        for result in schemathesis.openapi.from_dict(openapi).get_all_operations():
            operation = result.ok()
            if operation.path.startswith("/v1/"):
                fuzz(operation, GenerationMode.POSITIVE)
                fuzz(operation, GenerationMode.NEGATIVE)
        report.findings = sorted(findings.values())
        return report

    return await asyncio.to_thread(run)
