"""Bytes on a socket, for requests no HTTP client would send (oversized, malformed)."""

from __future__ import annotations

import contextlib
import socket

ANSWER_TIMEOUT = 5.0


def raw_exchange(port: int, request: bytes) -> tuple[bytes, bool]:
    """Send ``request`` to 127.0.0.1:``port`` and read the answer; return it and
    whether the server closed the connection (within ``ANSWER_TIMEOUT``)."""
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_TIMEOUT) as sock:
        # The server may close while we are still sending.
        with contextlib.suppress(OSError):
            sock.sendall(request)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except TimeoutError:
            return received, False
        except ConnectionResetError:
            return received, True
    return received, True
