"""``enterprisehub serve dashboards``: the Streamlit app on the services' own server.

The settings are validated first, so a bad variable is one clear message
rather than a broken page. The app is Streamlit's ASGI application
(``st.App``), run by the same uvicorn configuration as every service
(``services.cli.uvicorn_options``): request heads bounded and timed
(slowloris), unparseable requests answered ``{detail, reason}``, credentials
redacted from every log line (``services.common.serving``). ``streamlit run``
would start a server of its own with none of these, before any sign-in.

Streamlit's options are set as ``App.run`` sets them (`streamlit_options`,
over any ``config.toml``): no usage statistics (the server makes no outbound
connection), no file watcher and no development mode (it serves, it does not
reload), the viewer's toolbar (no "Deploy" button), no exception details in
the page (no traceback shown to users), and messages either way
and uploads capped to what the pages need (Streamlit's defaults are 200 MB,
25 MB and 200 MB). Not as ``STREAMLIT_*`` variables: only ``streamlit run``
(its command line) reads those, and ``st.App`` under uvicorn ran with every
default.

`JsonErrors` wraps Streamlit's app: its own error answers are plain text
(``text/plain`` or no type at all), the services' are ``{detail, reason}``
JSON, and a client of the platform should not have to tell them apart. It also
refuses ``/_stcore/metrics``, which Streamlit serves to anyone (session counts
before any sign-in), and ``/metrics``: Prometheus scrapes the dashboards on a
port of their own, which the public Gateway does not route
(``services.dashboards.metrics``).
"""

from __future__ import annotations

from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from services.common.errors import reason_for_status
from services.dashboards.config import DashboardSettings

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

APP = Path(__file__).with_name("app.py")
#: Streamlit's cap on a message it sends the browser, in MB (``server.maxMessageSize``,
#: its default 200): what the pages draw, whose largest, a page of 50 analyses or
#: sessions or a lead window, is well under 1 MB; a bigger one is shown as an
#: error in the page rather than sent.
MAX_MESSAGE_MB = 16
#: The cap on a message the browser sends, in MB: anyone who loads the page holds
#: the socket before signing in, and uvicorn holds a message whole before Streamlit
#: reads it (six anonymous sockets of 15 MB messages cost 100 MB). A browser sends
#: only a BackMsg, its widgets' state and rerun requests: the largest value any
#: page takes is the sign-in's access token (a JWT, well under 4 KB; the ROI
#: page's two dates and the buttons are a few bytes). Uploads go over HTTP
#: (``server.maxUploadSize``). 1 MB is the least Streamlit's own check of the
#: same messages (``server.maxWidgetStateSize``, whole MB) can be set to.
MAX_CLIENT_MESSAGE_MB = 1
#: The same cap in bytes, as uvicorn reads client messages (``services.cli.SERVICES``,
#: its ``ws_max_size``, which bounds incoming messages only).
MAX_CLIENT_MESSAGE_BYTES = MAX_CLIENT_MESSAGE_MB * 1_000_000


#: Streamlit's OpenMetrics route (its session counts and cache sizes), and the
#: path Prometheus reads elsewhere, which Streamlit answered with its page (200,
#: HTML: a scrape pointed at this port read as a parse error, not as "wrong
#: port"). The public Gateway routes every path of the dashboards' hosts to the
#: app's port, so both are answered 404 like routes that do not exist; the
#: process's series are on DASHBOARDS_METRICS_PORT (``services.dashboards.metrics``).
METRICS_PATHS = frozenset({"/_stcore/metrics", "/metrics"})
#: The most of a plain-text error body kept as its ``detail`` (Streamlit's are a
#: few words: "XSRF token missing or invalid", "File not found").
MAX_DETAIL_CHARS = 200


class JsonErrors:
    """ASGI middleware: Streamlit's plain-text error answers as ``{detail, reason}``.

    Only answers of status 400 and above whose type is absent or ``text/plain``
    are rewritten, with their status and other headers kept: HTML pages, the
    health check's 200 "ok" and Streamlit's own JSON pass untouched.
    WebSockets and lifespan events pass through.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"].rstrip("/") in METRICS_PATHS:
            await _send_json(send, 404, HTTPStatus.NOT_FOUND.phrase, head=scope["method"] == "HEAD")
            return
        start: Message | None = None
        body: list[bytes] = []

        async def rewrite(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                if message["status"] >= 400 and _is_plain(message):
                    start = message  # held until its body is complete
                    return
                await send(message)
            elif message["type"] == "http.response.body" and start is not None:
                if sum(map(len, body)) < MAX_DETAIL_CHARS:
                    body.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                status = start["status"]
                headers = start.get("headers", [])
                # A compressed body (Streamlit's gzip middleware) is no readable detail.
                encoded = any(name.lower() == b"content-encoding" for name, _ in headers)
                text = "" if encoded else b"".join(body).decode("utf-8", "replace")
                text = text.strip()[:MAX_DETAIL_CHARS]
                await _send_json(
                    send,
                    status,
                    text or _phrase(status),
                    head=scope["method"] == "HEAD",
                    headers=[
                        (name, value)
                        for name, value in headers
                        if name.lower() not in _REPLACED_HEADERS
                    ],
                )
            else:
                await send(message)

        await self.app(scope, receive, rewrite)


_REPLACED_HEADERS = (b"content-type", b"content-length", b"content-encoding")


def _is_plain(start: Message) -> bool:
    for name, value in start.get("headers", []):
        if name.lower() == b"content-type":
            return bool(value.lower().startswith(b"text/plain"))
    return True


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


async def _send_json(
    send: Send,
    status: int,
    detail: str,
    *,
    head: bool,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    body = orjson.dumps({"detail": detail, "reason": reason_for_status(status)})
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                *(headers or []),
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode("ascii")),
            ],
        }
    )
    # A HEAD answer says how long the body would be but sends none.
    await send({"type": "http.response.body", "body": b"" if head else body})


def streamlit_options(*, log_level: str) -> dict[str, Any]:
    """Streamlit's options, by their ``config.toml`` names."""
    return {
        "server.headless": True,
        "browser.gatherUsageStats": False,
        "server.fileWatcherType": "none",
        "global.developmentMode": False,
        "client.toolbarMode": "viewer",
        # Streamlit's default ("full") draws an unexpected exception's message and
        # traceback in the user's page: the server's paths, code and whatever the
        # message carries. The pages explain the failures they expect themselves.
        "client.showErrorDetails": "none",
        "server.maxMessageSize": MAX_MESSAGE_MB,
        # Checked again by Streamlit on each message (its default: 25 MB), should
        # the server in front of it ever read more than uvicorn's cap.
        "server.maxWidgetStateSize": MAX_CLIENT_MESSAGE_MB,
        # No page uploads a file: Streamlit's upload route takes the least it can.
        "server.maxUploadSize": 1,
        "logger.level": log_level.lower(),
    }


def create_app() -> Any:
    """Streamlit's ASGI application of the dashboards, configured (settings first)."""
    settings = DashboardSettings.from_env()
    import streamlit as st
    from starlette.middleware import Middleware
    from streamlit.web import bootstrap

    # What App.run does with its config= (uvicorn here is ours, so not App.run):
    # config files reparsed, these laid over them as a command line's flags would
    # be, and the ones read at start (the runtime's, the logger's) read from here.
    bootstrap.load_config_options(streamlit_options(log_level=settings.log_level))

    app = st.App(str(APP), middleware=[Middleware(JsonErrors)])
    app.state["settings"] = settings
    return app
