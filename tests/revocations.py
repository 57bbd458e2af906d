"""Helpers for the token revocation tests: revoke as the operator command does, wait
for the services to notice, and put Postgres out of a process's reach.

``PostgresProxy`` is a TCP relay to the session's real Postgres: a service
pointed at it talks to Postgres through it, and ``stop()`` cuts every
connection and refuses new ones, as a network partition or a database outage
does, without touching the server the other tests use.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import jwt

from localrun.servers import free_port
from services.common.database import Database
from services.common.revocation_store import Revocation, revoke

#: Generous: the services read the list every fraction of a second in these tests,
#: on a machine that may be busy with another test run.
WAIT_SECONDS = 20.0
#: AUTH_REVOCATION_REFRESH_SECONDS of the apps under test.
FAST_REFRESH = 0.2


def token_id(token: str) -> str:
    """The ``jti`` of a token (as ``enterprisehub token`` prints it)."""
    jti: str = jwt.decode(token, options={"verify_signature": False})["jti"]
    return jti


async def revoke_now(
    db: Database, tenant_id: str, *, jti: str | None = None, subject: str | None = None
) -> Revocation:
    """Revoke as ``enterprisehub token revoke`` does (kept for an hour)."""
    stored, _ = await revoke(
        db,
        tenant_id,
        jti=jti,
        subject=subject,
        actor="test-operator",
        reason="leaked in a test",
        keep_seconds=3600,
    )
    return stored


async def eventually(condition: Callable[[], Awaitable[bool]]) -> None:
    """Poll ``condition`` until it holds; fail the test after WAIT_SECONDS."""
    async with asyncio.timeout(WAIT_SECONDS):
        while not await condition():  # noqa: ASYNC110 - the state is another process's view
            await asyncio.sleep(0.05)


class PostgresProxy:
    """A loopback TCP relay to a Postgres DSN's server, that can be cut."""

    def __init__(self, dsn: str) -> None:
        parts = urlsplit(dsn)
        assert parts.hostname is not None
        assert parts.port is not None
        self._target = (parts.hostname, parts.port)
        self.port = free_port()
        self.dsn = urlunsplit(
            parts._replace(netloc=parts.netloc.replace(f":{parts.port}", f":{self.port}"))
        )
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Accept connections and relay them (again after a ``stop``)."""
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)

    async def stop(self) -> None:
        """Refuse new connections and cut the open ones."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        self._writers.update({writer, upstream_writer})
        try:
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        finally:
            for side in (writer, upstream_writer):
                self._writers.discard(side)
                side.close()
                with contextlib.suppress(Exception):
                    await side.wait_closed()
            self._tasks.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


def gauge(registry: Any, name: str) -> float:
    """The value of an unlabelled gauge in ``registry``."""
    value = registry.get_sample_value(name)
    assert value is not None, f"{name} is not exported"
    return float(value)
