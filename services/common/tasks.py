"""Stopping background tasks so that a service's shutdown always ends.

One ``task.cancel()`` followed by an unbounded wait is not enough: a
cancellation can be lost inside a library. Seen in a test run: the realtime
stream reader's ``XREAD`` (redis-py) stayed "cancelling" for minutes, waiting
on the connection it had just closed, and the app's shutdown waited with it.
``stop_tasks`` cancels again whatever is still running after a grace period,
and leaves behind (with an error in the log) a task that survives every
attempt, rather than hold the shutdown for ever.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from services.common.database import DatabaseUnavailable
from services.common.redis import RedisUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")


async def stop_tasks(
    tasks: Iterable[asyncio.Task[Any]], *, grace_seconds: float = 2.0, attempts: int = 3
) -> None:
    """Cancel ``tasks`` and wait for them, re-cancelling any that outlive ``grace_seconds``.

    Exceptions the tasks ended with are retrieved and dropped: a background
    loop logs its own failures, and shutdown must not fail because of one.
    """
    tasks = list(tasks)
    pending = {task for task in tasks if not task.done()}
    for _ in range(attempts):
        if not pending:
            break
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=grace_seconds)
    for task in pending:
        log.error(
            "background task %s did not stop after %d cancellations; left behind",
            task.get_name(),
            attempts,
        )
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()


async def finish_before_cancelling(step: Coroutine[Any, Any, T]) -> T:
    """Run ``step`` to its end even if the caller is cancelled meanwhile, then let the
    cancellation through.

    For a step whose effect outside cannot be taken back once it has started (a
    message Slack may already have) and whose record must follow it: cancelled
    between the two, the record is lost and the next pass repeats the effect.
    ``step`` must bound its own time (its client's timeouts), since it is waited
    for through every cancellation.
    """
    task = asyncio.ensure_future(step)
    cancelled = False
    while not task.done():
        try:
            # wait() neither cancels the task with its waiter nor raises its error.
            await asyncio.wait({task})
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        if not task.cancelled():
            task.exception()  # retrieved: the caller gets the cancellation
        raise asyncio.CancelledError
    return task.result()


async def repeat(step: Callable[[], Awaitable[object]], *, every: float, what: str) -> None:
    """Await ``step()`` every ``every`` seconds until cancelled.

    A failure is logged (Postgres or Redis being down without a traceback:
    readiness already says so) and the next run comes on time; a periodic pass
    must outlive whatever one run meets.
    """
    while True:
        try:
            await step()
        except DatabaseUnavailable as exc:
            log.warning("%s skipped (postgres unavailable: %s)", what, exc.reason)
        except RedisUnavailable as exc:
            log.warning("%s skipped (redis unavailable: %s)", what, exc.reason)
        except Exception:
            log.exception("%s failed; next in %.0f s", what, every)
        await asyncio.sleep(every)


@dataclass(slots=True, eq=False)
class BackgroundTask:
    """A component's one background loop: started at most once, stopped by `stop_tasks`."""

    #: The task's name (what a hang report or ``asyncio.all_tasks`` shows).
    name: str
    _task: asyncio.Task[None] | None = field(default=None, init=False)

    def start(self, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``run()`` as the task, unless it is running already."""
        if self._task is None:
            self._task = asyncio.create_task(run(), name=self.name)

    async def stop(self) -> None:
        """Stop the task if it runs; a later `start` starts it again."""
        if self._task is not None:
            await stop_tasks([self._task])
            self._task = None
