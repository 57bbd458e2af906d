"""``WS /v1/feed``: a tenant's live lead events over a WebSocket.

Authentication happens before the upgrade: a missing, expired or forged
token is answered with HTTP 401 and the reason (``deny_websocket``). The
tenant comes from the token; ``last_event_id`` (a frame's ``stream_id`` or
``event_id``) resumes after that event. Frames are described in
`services.realtime.frames`.
"""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from services.common.auth import FEED_READ, AuthError, authenticate_websocket, deny_websocket
from services.realtime.deps import HubDep, RealtimeMetricsDep

router = APIRouter(tags=["feed"])


@router.websocket("/v1/feed")
async def lead_feed(websocket: WebSocket, hub: HubDep, metrics: RealtimeMetricsDep) -> None:
    """Serve the caller's tenant feed until the socket closes."""
    try:
        principal = await authenticate_websocket(websocket, scope=FEED_READ)
    except AuthError as error:
        metrics.connections_rejected.labels(reason="auth").inc()
        await deny_websocket(websocket, error)
        return
    await hub.serve(websocket, principal)
