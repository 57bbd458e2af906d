"""Test-only fault injection: latency or errors on chosen routes, switched at run time.

Installed only when FAULT_INJECTION_FILE is set, which the settings refuse in
production. The file holds JSON ``{"route_prefix": "/v1/...", "latency_seconds":
0.5, "error_rate": 1.0}`` (missing or empty file: no fault); the middleware
re-reads it when its modification time changes, so a test or an operator's
drill starts and ends a fault without restarting the service. It is how the
closed-loop test (``benchmarks/closed_loop.py``) makes an alert fire for real.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send


@dataclass(frozen=True, slots=True)
class Fault:
    """What to do to requests whose path starts with ``route_prefix``."""

    route_prefix: str = "/"
    latency_seconds: float = 0.0
    error_rate: float = 0.0

    @classmethod
    def parse(cls, text: str) -> Fault | None:
        """The file's fault, or None when it is empty."""
        if not text.strip():
            return None
        data = json.loads(text)
        fault = cls(
            route_prefix=str(data.get("route_prefix", "/")),
            latency_seconds=float(data.get("latency_seconds", 0.0)),
            error_rate=float(data.get("error_rate", 0.0)),
        )
        if not 0 <= fault.latency_seconds <= 600 or not 0 <= fault.error_rate <= 1:
            raise ValueError("latency_seconds must be in 0..600 and error_rate in 0..1")
        return fault


class FaultInjectionMiddleware:
    """Pure ASGI middleware applying the current ``Fault`` to HTTP requests."""

    def __init__(self, app: ASGIApp, *, path: Path) -> None:
        self.app = app
        self.path = path
        self._mtime: float | None = None
        self._fault: Fault | None = None

    def current(self) -> Fault | None:
        """The fault in the file now (re-read only when the file changed)."""
        try:
            mtime = os.stat(self.path).st_mtime
        except FileNotFoundError:
            self._mtime, self._fault = None, None
            return None
        if mtime != self._mtime:
            self._mtime = mtime
            self._fault = Fault.parse(self.path.read_text())
        return self._fault

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        fault = self.current() if scope["type"] == "http" else None
        if fault is None or not str(scope["path"]).startswith(fault.route_prefix):
            await self.app(scope, receive, send)
            return
        if fault.latency_seconds:
            await asyncio.sleep(fault.latency_seconds)
        if fault.error_rate and random.random() < fault.error_rate:  # noqa: S311 - not crypto
            body = b'{"detail":"injected fault (FAULT_INJECTION_FILE)","reason":"injected_fault"}'
            await send(
                {
                    "type": "http.response.start",
                    "status": 500,
                    "headers": [(b"content-type", b"application/json")],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        await self.app(scope, receive, send)
