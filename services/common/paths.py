"""Which request paths a route may match.

Starlette compiles each route's path to ``^...$`` and matches it with
``re.match``, and ``$`` also matches before a trailing newline: ``/health%0A``
was answered as ``/health``, ``/metrics%0A`` as ``/metrics``, a webhook's
path with a newline appended as the webhook. No route of these services has a
control character in its path, so a path holding one (decoded: NUL to US,
and DEL) names no resource. The edge guard answers it 404 before routing, and
the HTTP metrics label it ``unmatched``, the label of every other unknown path.
"""

from __future__ import annotations

import re

_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


def is_routable(path: str) -> bool:
    """False when ``path`` (as decoded into the ASGI scope) holds a control character."""
    return _CONTROL_CHARACTER.search(path) is None
