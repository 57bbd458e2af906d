"""A socket a test leaves open to the garbage collector fails that test, every time.

A client nobody closes (an ``anthropic.Anthropic``, an httpx client) often
sits in a reference cycle, so only a full collection frees it, minutes later,
during whatever test runs then. In that collection the client's ``__del__``
and its socket's finalizer run in any order: either the socket is closed
quietly or it warns ``ResourceWarning: unclosed <socket ...>``, which the
``error`` warnings filter turns into a failure of that unrelated test. One
such leak failed one CI run out of six.

After each test that created a socket on the main thread, this collects
garbage in the test's own teardown (before pytest's check of unraisable
exceptions) and fails the test if a socket it created was still open and only
the collection freed it, whichever finalizer ran first. Sockets of server
threads (moto's, uvicorn's) are left out: they close concurrently, and one
closed during the collection would look collected. ``gc.freeze()`` after
collection keeps each collection to what the tests made since (the imported
libraries alone took a 0.7 s collection each).
"""

from __future__ import annotations

import gc
import socket
import sys
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

#: The sockets the running test created, weakly (collected ones read None).
_created: list[weakref.ref[socket.socket]] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "socket.__new__" and threading.current_thread() is threading.main_thread():
        _created.append(weakref.ref(args[0]))


sys.addaudithook(_audit)


def _open(ref: weakref.ref[socket.socket]) -> bool:
    sock = ref()
    return sock is not None and sock.fileno() != -1


def pytest_collection_finish(session: pytest.Session) -> None:
    """Move what collection imported to the permanent generation."""
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def sockets_closed_by_their_test() -> Iterator[None]:
    """Fail the test when a socket it opened is freed open by the garbage collector."""
    # Autouse in the root conftest: set up first, so torn down after the test's
    # other fixtures have closed what they own.
    _created.clear()
    yield
    if not _created:
        return
    still_open = [ref for ref in _created if _open(ref)]
    _created.clear()
    gc.collect()
    leaked = [ref for ref in still_open if ref() is None]
    if leaked:
        pytest.fail(
            f"{len(leaked)} socket(s) this test opened were left open to the garbage "
            "collector: close the client that owns them (a `with` block or `finally`)"
        )
