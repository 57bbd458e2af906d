"""HEAD wherever GET: RFC 9110 (9.1) has every general-purpose server support both.

FastAPI routes answer only the methods they declare, so ``curl -I`` and uptime
monitors that probe with HEAD (several do by default) got 405 from ``/health``.
A HEAD request is routed as a GET and answered with the GET's status and
headers, Content-Length included, and no body (9.3.2).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    """Pure ASGI middleware, innermost: the layers outside it see the HEAD."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.start":
                # Routed by now. The server reads the method from this scope to
                # leave the body out while keeping the GET's Content-Length.
                scope["method"] = "HEAD"
            elif message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        # The same scope, changed and restored, rather than a copy: the router
        # records the matched route in it, which the metrics label reads, and
        # the server reads the method from it.
        scope["method"] = "GET"
        try:
            await self.app(scope, receive, headers_only)
        finally:
            scope["method"] = "HEAD"
