"""What one request costs in Postgres transactions and thread hops, counted.

The Claude features promise that a cache hit is one indexed read (one
transaction, no decoding, nothing sent to a thread) and that a result is
stored with its ledger rows in one transaction. These counters wrap the real
``Database.tenant`` and the thread-pool entry points (they change nothing
else), so the tests can assert those promises instead of timing them.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread
import pytest

from services.common.database import Database

_EXPOSURE_WRITER = "services/common/flags/exposure.py"


@dataclass
class RequestWork:
    """Tenant transactions opened and functions sent to a thread since the last ``clear``.

    A transaction is recorded as the name of the function that opened it;
    the flag cache's background exposure writer is left out (it writes a
    tenant's first exposure once per process, whichever request comes first).
    """

    transactions: list[str] = field(default_factory=list)
    thread_calls: list[str] = field(default_factory=list)

    def clear(self) -> None:
        """Start counting afresh."""
        self.transactions.clear()
        self.thread_calls.clear()


def _name(func: Callable[..., Any]) -> str:
    return getattr(func, "__qualname__", repr(func))


def count_request_work(monkeypatch: pytest.MonkeyPatch) -> RequestWork:
    """Count ``Database.tenant`` blocks and thread-pool calls (FastAPI's and ``to_thread``)."""
    work = RequestWork()
    tenant = Database.tenant
    run_sync = anyio.to_thread.run_sync
    to_thread = asyncio.to_thread

    def counted_tenant(self: Database, tenant_id: str) -> Any:
        opener = sys._getframe(1).f_code
        if not opener.co_filename.endswith(_EXPOSURE_WRITER):
            work.transactions.append(opener.co_qualname)
        return tenant(self, tenant_id)

    async def counted_run_sync(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        work.thread_calls.append(_name(func))
        return await run_sync(func, *args, **kwargs)

    async def counted_to_thread(func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        work.thread_calls.append(_name(func))
        return await to_thread(func, *args, **kwargs)

    monkeypatch.setattr(Database, "tenant", counted_tenant)
    monkeypatch.setattr(anyio.to_thread, "run_sync", counted_run_sync)
    monkeypatch.setattr(asyncio, "to_thread", counted_to_thread)
    return work
