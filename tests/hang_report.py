"""A test that runs too long says where it is stuck, and an async one is cancelled.

CI has one time budget for the whole suite: a test that waits forever (a
lifespan that never finishes, a socket that never answers) would use it up and
leave nothing but "timed out". After ``TEST_HANG_REPORT_SECONDS`` (default
300) this prints every thread's stack and every asyncio task's stack to
stderr; if the test is a coroutine running on the main thread's event loop, its
task is cancelled so the test fails with that report and the session goes on.
"""

from __future__ import annotations

import asyncio
import faulthandler
import os
import sys
import threading
from collections.abc import Iterator
from types import FrameType

import pytest

DEFAULT_SECONDS = 300.0


def _main_thread_loop() -> asyncio.AbstractEventLoop | None:
    """The event loop the main thread is running now, found through its frames."""
    frame: FrameType | None = sys._current_frames().get(threading.main_thread().ident or 0)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, asyncio.AbstractEventLoop):
            return candidate
        frame = frame.f_back
    return None


def _report_tasks_and_cancel(loop: asyncio.AbstractEventLoop, test_name: str) -> None:
    """Runs on ``loop``: print each task's stack, cancel the test's own task."""
    for task in asyncio.all_tasks(loop):
        print(f"--- {task!r}", file=sys.stderr)
        task.print_stack(limit=30, file=sys.stderr)
        coro = task.get_coro()
        if getattr(coro, "__name__", None) == test_name:
            task.cancel(f"still running after the hang report's limit: {test_name}")


def _report(item: pytest.Item, seconds: float) -> None:
    print(f"\n=== {item.nodeid} still running after {seconds:.0f} s ===", file=sys.stderr)
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    loop = _main_thread_loop()
    if loop is not None and loop.is_running():
        loop.call_soon_threadsafe(_report_tasks_and_cancel, loop, item.name.split("[")[0])


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Watch the test's call phase from a timer thread (stopped when it ends)."""
    seconds = float(os.environ.get("TEST_HANG_REPORT_SECONDS", DEFAULT_SECONDS))
    timer = threading.Timer(seconds, _report, args=(item, seconds))
    timer.daemon = True
    timer.start()
    try:
        return (yield)
    finally:
        timer.cancel()
        timer.join()
