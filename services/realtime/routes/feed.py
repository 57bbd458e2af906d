"""``WS /v1/feed``: a tenant's live lead events over a WebSocket.

Authentication happens before the upgrade: a missing, expired or forged
token is answered with HTTP 401 and the reason, a token without the
``feed:read`` scope with 403 (``deny_websocket``). The hub closes the socket
when that token expires (1008 ``expired_token``) or is revoked (1008
``revoked_token``). The tenant comes from the
token; ``last_event_id`` (a frame's ``stream_id`` or ``event_id``) resumes
after that event. Frames are described in `services.realtime.frames`.

OpenAPI has no WebSocket operations, so the same path answers a plain
``GET`` (no upgrade) with 426 and is documented there: the protocol below is
what the schema at ``/openapi.json`` and ``/docs`` show for the feed.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from openfeature.exception import ErrorCode

from services.common.auth import (
    BEARER_SCHEME,
    AuthError,
    auth_responses,
    authenticate_websocket,
    deny_websocket,
)
from services.common.flags import FeatureDisabledHandshakeError, decide_feature
from services.common.scopes import FEED_READ
from services.realtime.deps import HubDep, RealtimeMetricsDep

#: The feature flag whose rollout decides which tenants get the feed.
FEED_FEATURE = "realtime_intelligence"

router = APIRouter(tags=["feed"])

FEED_PROTOCOL = """\
**This path is a WebSocket** (`ws://` or `wss://`); a plain GET is answered 426.

**Authentication** (before the upgrade): `Authorization: Bearer <JWT>` or, for
browsers, `?access_token=<JWT>`. The token needs the `feed:read` scope
(`enterprisehub token --tenant T --subject AGENT --scope feed:read`). Refusals
are HTTP answers with `{detail, reason}`: 401 (missing, expired, forged or
malformed token), 403 `insufficient_scope`, and 403 `feature_disabled` for a
tenant outside the `realtime_intelligence` rollout.

**Resume**: `?last_event_id=<stream_id or event_id>` of the last event received
replays what was missed, then goes live without gap or duplicate.

**Frames** (JSON text, each with a `type`):
- `lead_event`: `stream_id`, `event_id`, `lead_id`, `event_type`, `agent_id`,
  `score`, `model_version`, `data`, `accepted_at` (epoch seconds);
- `lead_events`: `events`, 2 to 64 `lead_event` objects in stream order;
- `ready`: after any replay: `tenant_id`, `replayed`, `cursor`,
  `heartbeat_interval`, `reconnect_delay`;
- `heartbeat`: `ts`; `replay_truncated`: `requested`, `resumed_from`.

**Close codes**: 1008 malformed or unknown `last_event_id` (do not retry with
it), or reason `expired_token`: the token expired while the socket was open
(reconnect with a fresh token and `last_event_id`), or reason `revoked_token`:
an operator revoked the token (do not reconnect with it); 1009 a client message
over 4 KiB (the feed reads none); 1013 tenant connection limit reached or
Redis unavailable (retry after `reconnect_delay`); 1011 internal error.

A client for a terminal: `enterprisehub feed --tenant T [--url ws://HOST:8001/v1/feed]`.
"""


@router.get(
    "/v1/feed",
    status_code=426,
    summary="Live lead feed (WebSocket)",
    description=FEED_PROTOCOL,
    # The scheme declares the handshake's credential in the document; the
    # WebSocket route below checks it.
    dependencies=[Depends(BEARER_SCHEME)],
    responses={
        **auth_responses(FEED_READ, feature=FEED_FEATURE),
        426: {"description": "Not a WebSocket upgrade: connect with ws:// or wss://."},
    },
)
async def lead_feed_without_upgrade() -> JSONResponse:
    """A plain HTTP request to the feed: say how to connect."""
    return JSONResponse(
        {
            "detail": "the feed is a WebSocket: connect with ws:// (or wss://) and a bearer "
            "token with the feed:read scope; see /docs",
            "reason": "upgrade_required",
        },
        status_code=426,
        headers={"Upgrade": "websocket", "Connection": "Upgrade"},
    )


@router.websocket("/v1/feed")
async def lead_feed(websocket: WebSocket, hub: HubDep, metrics: RealtimeMetricsDep) -> None:
    """Serve the caller's tenant feed until the socket closes.

    Every handshake counts as an attempt and every failure once, by reason
    (``websocket_connection_failures_total``; see services.realtime.metrics).
    """
    metrics.connection_attempts.inc()
    try:
        principal = await authenticate_websocket(websocket, scope=FEED_READ)
    except AuthError as error:
        metrics.count_failure("auth")
        await deny_websocket(websocket, error)
        return
    # Once per handshake, through OpenFeature: the tenant must be in the rollout.
    decision = decide_feature(websocket, FEED_FEATURE, principal.tenant_id)
    if not decision.value:
        if decision.error_code is ErrorCode.PROVIDER_NOT_READY:
            # No flag state read yet (Redis unreachable since start): retry later.
            await hub.refuse_unavailable(websocket)
            return
        metrics.count_failure("feature_disabled")
        await deny_websocket(websocket, FeatureDisabledHandshakeError(FEED_FEATURE))
        return
    try:
        await hub.serve(websocket, principal)
    except WebSocketDisconnect:
        raise  # the client left mid-handshake: not the feed's failure
    except Exception:
        # Unforeseen: the server answers 500 or closes with 1011.
        metrics.count_failure("internal_error")
        raise
