"""A LeadConnector (GoHighLevel) API stand-in that counts what it receives and injects faults.

Speaks the two endpoints the churn adapter uses (``POST /conversations/messages``
and ``POST /contacts/{contactId}/tasks``), checks the bearer key and the
``Version`` header, and honours ``Idempotency-Key``: a request whose key was
already accepted gets the first answer again and is counted as a duplicate,
never as a second delivery. ``deliveries`` therefore holds what a person would
actually have received.

Faults (``Faults``), decided per request from a seeded generator or per contact:
``rate_limited`` (429 with ``Retry-After``), ``server_error`` (503),
``timeout_after_accept`` (the message is accepted and recorded, then the
answer is held longer than the client waits), ``hold`` (requests are held
before being accepted, until released: a window to kill a worker between its
claim and the send), and ``poisoned_contacts`` (always 500).

Control endpoints under ``/_standin/``: ``GET stats``, ``POST faults``,
``POST reset``. Run it in a thread with `StandinServer` (tests, benchmarks)
or as ``python -m localrun.standins.leadconnector --port N --api-key K``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from localrun.servers import free_port


@dataclass
class Faults:
    """Fault probabilities (0..1) and fixed behaviours; see the module docstring."""

    rate_limited: float = 0.0
    retry_after_seconds: float = 1.0
    server_error: float = 0.0
    timeout_after_accept: float = 0.0
    timeout_seconds: float = 30.0
    hold: bool = False
    latency_seconds: float = 0.0
    poisoned_contacts: list[str] = field(default_factory=list)
    seed: int = 7


@dataclass
class Delivery:
    """One accepted message or task."""

    key: str
    contact_id: str
    channel: str
    received_at: float
    provider_id: str


class LeadConnectorStandin:
    """The stand-in's state and ASGI app."""

    def __init__(self, *, api_key: str, faults: Faults | None = None) -> None:
        self.api_key = api_key
        self.faults = faults or Faults()
        self._rng = random.Random(self.faults.seed)  # noqa: S311 - fault draws, not secrets
        self.deliveries: dict[str, Delivery] = {}
        self.results: dict[str, int] = {}
        # Client (host, port) pairs seen: how many connections the senders opened.
        self.connections: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        self.app = Starlette(
            routes=[
                Route("/conversations/messages", self._message, methods=["POST"]),
                Route("/contacts/{contact_id}/tasks", self._task, methods=["POST"]),
                Route("/_standin/stats", self._stats, methods=["GET"]),
                Route("/_standin/faults", self._set_faults, methods=["POST"]),
                Route("/_standin/reset", self._reset, methods=["POST"]),
            ]
        )

    def _count(self, result: str) -> None:
        with self._lock:
            self.results[result] = self.results.get(result, 0) + 1

    async def _message(self, request: Request) -> Response:
        body = await request.json()
        channel = {"SMS": "sms", "Email": "email"}.get(body.get("type"), "unknown")
        return await self._accept(request, str(body.get("contactId")), channel, "messageId")

    async def _task(self, request: Request) -> Response:
        await request.json()
        return await self._accept(request, request.path_params["contact_id"], "task", "task")

    async def _accept(
        self, request: Request, contact: str, channel: str, id_field: str
    ) -> Response:
        if request.client is not None:
            with self._lock:
                self.connections.add((request.client.host, request.client.port))
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            self._count("unauthorized")
            return JSONResponse({"message": "Invalid JWT"}, status_code=401)
        if not request.headers.get("version"):
            self._count("no_version")
            return JSONResponse({"message": "Version header required"}, status_code=400)
        key = request.headers.get("idempotency-key") or str(uuid.uuid4())
        faults = self.faults
        if faults.latency_seconds:
            await asyncio.sleep(faults.latency_seconds)
        # Polled, not an Event: faults are set from other threads and loops.
        while self.faults.hold:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        known = self.deliveries.get(key)
        if known is not None:
            self._count("duplicate")
            return self._answer(known, id_field)
        if contact in faults.poisoned_contacts:
            self._count("poisoned")
            return JSONResponse({"message": "internal error"}, status_code=500)
        draw = self._rng.random()
        if draw < faults.rate_limited:
            self._count("rate_limited")
            return JSONResponse(
                {"message": "Too many requests"},
                status_code=429,
                headers={"Retry-After": str(int(faults.retry_after_seconds))},
            )
        draw -= faults.rate_limited
        if draw < faults.server_error:
            self._count("server_error")
            return JSONResponse({"message": "unavailable"}, status_code=503)
        draw -= faults.server_error
        delivery = Delivery(
            key=key,
            contact_id=contact,
            channel=channel,
            received_at=time.time(),
            provider_id=f"{channel}-{uuid.uuid4().hex[:12]}",
        )
        with self._lock:
            self.deliveries[key] = delivery
        if draw < faults.timeout_after_accept:
            self._count("timeout_after_accept")
            await asyncio.sleep(faults.timeout_seconds)
        self._count("accepted")
        return self._answer(delivery, id_field)

    @staticmethod
    def _answer(delivery: Delivery, id_field: str) -> Response:
        if id_field == "task":
            return JSONResponse({"task": {"id": delivery.provider_id}}, status_code=201)
        return JSONResponse(
            {"conversationId": f"conv-{delivery.contact_id}", "messageId": delivery.provider_id},
            status_code=201,
        )

    def stats(self) -> dict[str, Any]:
        """Deliveries (one per idempotency key), request results by kind, connections used."""
        with self._lock:
            return {
                "deliveries": [asdict(d) for d in self.deliveries.values()],
                "results": dict(self.results),
                "connections": len(self.connections),
            }

    async def _stats(self, _: Request) -> Response:
        return JSONResponse(self.stats())

    async def _set_faults(self, request: Request) -> Response:
        self.set_faults(Faults(**(await request.json())))
        return JSONResponse(asdict(self.faults))

    def set_faults(self, faults: Faults) -> None:
        """Replace the fault configuration (``hold=False`` releases held requests)."""
        self.faults = faults
        self._rng = random.Random(faults.seed)  # noqa: S311 - fault draws, not secrets

    async def _reset(self, _: Request) -> Response:
        with self._lock:
            self.deliveries.clear()
            self.results.clear()
            self.connections.clear()
        return JSONResponse({"reset": True})


class StandinServer:
    """The stand-in served by uvicorn in a background thread (``with`` block)."""

    def __init__(self, *, api_key: str = "standin-key", faults: Faults | None = None) -> None:
        self.standin = LeadConnectorStandin(api_key=api_key, faults=faults)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            self.standin.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> StandinServer:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("LeadConnector stand-in did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.standin.set_faults(Faults())
        self._server.should_exit = True
        self._thread.join(timeout=10)


def main() -> None:
    """Serve the stand-in on ``--port`` until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8090)
    parser.add_argument("--api-key", default="standin-key")
    args = parser.parse_args()
    standin = LeadConnectorStandin(api_key=args.api_key)
    uvicorn.run(standin.app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
