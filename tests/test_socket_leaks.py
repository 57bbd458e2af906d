"""The socket-leak guard (tests/socket_leaks.py) fails the test that leaks, and only it."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

TESTS = Path(__file__).resolve().parent


def test_a_socket_left_to_the_collector_fails_the_test_that_opened_it(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        f"import sys\nsys.path.insert(0, {str(TESTS)!r})\n"
        "from socket_leaks import pytest_collection_finish, sockets_closed_by_their_test\n"
    )
    pytester.makepyfile(
        """
        import socket

        class Client:
            # A cycle: only a full collection frees it, as an unclosed SDK client.
            def __init__(self):
                self.sock = socket.socket()
                self.me = self

        def test_leaks():
            Client()

        def test_closes():
            client = Client()
            client.sock.close()

        def test_after_the_leak():
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-W", "ignore")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*test_leaks*", "*left open to the garbage collector*"])
