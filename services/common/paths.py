"""Which request paths a route may match.

Starlette compiles each route's path to ``^...$`` and matches it with
``re.match``, and ``$`` also matches just before a newline that ends the
string: ``/health%0A`` was answered as ``/health``, ``/metrics%0A`` as
``/metrics``, ``/v1/feed%0A`` opened the feed. No route of these services ends
in a newline, so such a path names no resource: the edge guard answers it 404
(a handshake: 403, as for any unknown path) before routing, and the HTTP
metrics label it ``unmatched``. A control character anywhere else is left to
the router (a static path does not match it) and to the routes' id checks (a
path parameter holding it is refused after the token and its scope, with the
id's reason).
"""

from __future__ import annotations


def is_routable(path: str) -> bool:
    """False when ``path`` (as decoded into the ASGI scope) ends in a newline."""
    return not path.endswith("\n")
