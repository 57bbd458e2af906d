"""The W1 peer: python-socketio with ``AsyncRedisManager``, with our ingest shape.

One process serves one port; run two behind one Redis and Socket.IO's Redis
manager carries every emit to both, which is the usual multi-replica
python-socketio deployment. The websocket transport only (long-polling would
need sticky sessions in front of two processes).

- ``POST /v1/leads/events`` takes the same bearer JWT and JSON body as our
  ingest, stamps ``event_id`` and ``accepted_at`` (epoch seconds), emits a
  ``lead_event`` to the tenant's room, or to the agent's room when the event
  names an ``agent_id``, and answers 202 ``{"event_id", "accepted_at"}``.
- ``POST /v1/leads/events/batch`` takes ``{"events": [...]}`` like ours and
  emits each event (python-socketio has no multi-event emit: one Redis
  publish per event), answering ``{"events": [...]}``.
- A Socket.IO client connects with ``auth={"token": JWT}`` (or
  ``?access_token=``); the token's tenant and subject pick its two rooms.
- ``GET /health`` answers 200 for the harness's readiness check.

What it does not do, unlike our service, is store the event in Postgres and
score it before acknowledging; docs/benchmarks.md says so next to the numbers.
Tokens are checked with the project's ``TokenVerifier`` so that both systems
spend the same on authentication.

Run: ``python -m benchmarks.peers.socketio_server --port 9101 --redis-url redis://...``
(JWT_SECRET_KEY and JWT_KEY_ID from the environment, as for our services).
"""

from __future__ import annotations

import argparse
import logging
import time
import uuid
from typing import Any
from urllib.parse import parse_qs

import orjson
import socketio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.common.auth import AuthError, Principal, TokenVerifier
from services.common.settings import AuthSettings

DESCRIPTION = "python-socketio + AsyncRedisManager peer for the W1 benchmark."
CHANNEL = "enterprisehub-w1-peer"
MAX_BODY_BYTES = 1024 * 1024


def tenant_room(tenant_id: str) -> str:
    """Room every socket of a tenant joins."""
    return f"tenant:{tenant_id}"


def agent_room(tenant_id: str, agent_id: str) -> str:
    """Room of one agent's sockets (tenant-qualified: agent ids are per tenant)."""
    return f"agent:{tenant_id}:{agent_id}"


def _query_token(environ: dict[str, Any]) -> str | None:
    values = parse_qs(environ.get("QUERY_STRING", "")).get("access_token")
    return values[0] if values else None


def _event_problem(event: Any) -> str | None:
    """Why ``event`` is not an event this peer can emit, or None."""
    if not isinstance(event, dict) or not isinstance(event.get("lead_id"), str):
        return "expected an object with lead_id"
    agent_id = event.get("agent_id")
    if agent_id is not None and not isinstance(agent_id, str):
        return "agent_id must be a string"
    return None


def build_app(*, redis_url: str, verifier: TokenVerifier) -> socketio.ASGIApp:
    """The ASGI app: Socket.IO at ``/socket.io/`` and the ingest routes beside it."""
    sio = socketio.AsyncServer(
        async_mode="asgi",
        client_manager=socketio.AsyncRedisManager(redis_url, channel=CHANNEL),
        transports=["websocket"],
        cors_allowed_origins=[],
        logger=False,
        engineio_logger=False,
    )

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
        token = auth.get("token") if isinstance(auth, dict) else None
        token = token or _query_token(environ)
        if not token:
            raise socketio.exceptions.ConnectionRefusedError("missing_token")
        try:
            principal = verifier.verify(token)
        except AuthError as exc:
            raise socketio.exceptions.ConnectionRefusedError(exc.reason) from None
        await sio.enter_room(sid, tenant_room(principal.tenant_id))
        await sio.enter_room(sid, agent_room(principal.tenant_id, principal.subject))

    def _principal(request: Request) -> Principal:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise AuthError("missing_token", "send Authorization: Bearer <token>")
        return verifier.verify(token.strip())

    async def read_json(request: Request) -> tuple[Principal, Any] | Response:
        try:
            principal = _principal(request)
        except AuthError as exc:
            return JSONResponse(exc.body(), status_code=401, headers=exc.headers())
        raw = await request.body()
        if len(raw) > MAX_BODY_BYTES:
            return JSONResponse({"detail": "body too large"}, status_code=413)
        try:
            return principal, orjson.loads(raw)
        except orjson.JSONDecodeError:
            return JSONResponse({"detail": "body is not JSON"}, status_code=400)

    async def emit(principal: Principal, event: dict[str, Any], accepted_at: float) -> str:
        event_id = str(uuid.uuid4())
        agent_id = event.get("agent_id")
        frame = {
            "type": "lead_event",
            "event_id": event_id,
            "lead_id": event["lead_id"],
            "event_type": event.get("event_type"),
            "agent_id": agent_id,
            "data": event.get("data"),
            "accepted_at": accepted_at,
        }
        room = (
            agent_room(principal.tenant_id, agent_id)
            if agent_id
            else tenant_room(principal.tenant_id)
        )
        # Publishes to Redis; every process (this one too) emits from its listener.
        await sio.emit("lead_event", frame, room=room)
        return event_id

    async def ingest(request: Request) -> Response:
        read = await read_json(request)
        if isinstance(read, Response):
            return read
        principal, event = read
        problem = _event_problem(event)
        if problem:
            return JSONResponse({"detail": problem}, status_code=422)
        accepted_at = time.time()
        event_id = await emit(principal, event, accepted_at)
        return Response(
            orjson.dumps({"event_id": event_id, "accepted_at": accepted_at}),
            status_code=202,
            media_type="application/json",
        )

    async def ingest_batch(request: Request) -> Response:
        read = await read_json(request)
        if isinstance(read, Response):
            return read
        principal, body = read
        events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(events, list) or not events:
            return JSONResponse({"detail": "expected {'events': [...]}"}, status_code=422)
        for index, event in enumerate(events):
            problem = _event_problem(event)
            if problem:
                return JSONResponse({"detail": f"events[{index}]: {problem}"}, status_code=422)
        accepted_at = time.time()
        answers = [
            {"event_id": await emit(principal, event, accepted_at), "accepted_at": accepted_at}
            for event in events
        ]
        return Response(
            orjson.dumps({"events": answers}), status_code=202, media_type="application/json"
        )

    async def health(request: Request) -> Response:
        del request
        return JSONResponse({"status": "ok"})

    routes = Starlette(
        routes=[
            Route("/v1/leads/events", ingest, methods=["POST"]),
            Route("/v1/leads/events/batch", ingest_batch, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ]
    )
    return socketio.ASGIApp(sio, other_asgi_app=routes)


def main(argv: list[str] | None = None) -> None:
    """Entry point: ``python -m benchmarks.peers.socketio_server``."""
    parser = argparse.ArgumentParser(description=DESCRIPTION)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    args = parser.parse_args(argv)
    verifier = TokenVerifier.from_settings(AuthSettings.from_env())
    logging.basicConfig(level=logging.WARNING)
    # Same uvicorn stack as our services: uvloop, httptools, websockets; no
    # access log, which would otherwise cost a log line per ingest request.
    uvicorn.run(
        build_app(redis_url=args.redis_url, verifier=verifier),
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        ws="websockets",
        access_log=False,
        log_level="warning",
        lifespan="off",
    )


if __name__ == "__main__":
    main()
