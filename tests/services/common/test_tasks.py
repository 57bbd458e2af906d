"""Shutdown ends even when a background task loses a cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import pytest

from services.common.redis import Redis
from services.common.tasks import BackgroundTask, finish_before_cancelling, repeat, stop_tasks
from services.realtime.stream import EventStream, StreamFanout

#: A guard for tests whose failure mode is hanging: far above any real stop.
GUARD_SECONDS = 30


async def _loses_first_cancel(started: asyncio.Event) -> None:
    """Waits for ever, and goes on waiting after the first cancellation (as seen in redis-py)."""
    started.set()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.Event().wait()
    await asyncio.Event().wait()


async def test_a_task_that_loses_its_first_cancellation_is_stopped() -> None:
    started = asyncio.Event()
    task = asyncio.create_task(_loses_first_cancel(started))
    await started.wait()
    async with asyncio.timeout(GUARD_SECONDS):
        await stop_tasks([task], grace_seconds=0.05)
    assert task.cancelled()


async def test_a_background_task_runs_once_however_often_started_and_again_after_stop() -> None:
    runs: list[str] = []
    started = asyncio.Event()

    async def loop() -> None:
        task = asyncio.current_task()
        assert task is not None
        runs.append(task.get_name())
        started.set()
        await asyncio.Event().wait()

    background = BackgroundTask("test-loop")
    await background.stop()  # never started: nothing to stop
    background.start(loop)
    background.start(loop)
    await started.wait()
    await asyncio.sleep(0)
    assert runs == ["test-loop"]
    async with asyncio.timeout(GUARD_SECONDS):
        await background.stop()
    started.clear()
    background.start(loop)
    await started.wait()
    assert runs == ["test-loop", "test-loop"]
    async with asyncio.timeout(GUARD_SECONDS):
        await background.stop()
    assert not [task for task in asyncio.all_tasks() if task.get_name() == "test-loop"]


async def test_a_task_that_ignores_every_cancellation_is_left_behind_with_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue

    task = asyncio.create_task(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="services.common.tasks"):
        async with asyncio.timeout(GUARD_SECONDS):
            await stop_tasks([task], grace_seconds=0.01, attempts=2)
    assert not task.done()
    assert "stubborn did not stop after 2 cancellations" in caplog.text
    release.set()
    await task


async def test_a_failed_task_does_not_fail_the_shutdown() -> None:
    async def fails() -> None:
        raise RuntimeError("background loop crashed")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    await stop_tasks([task])
    assert isinstance(task.exception(), RuntimeError)


async def test_the_feed_reader_stops_when_its_read_loses_the_cancellation(
    redis_client: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hang of a CI run: the app's shutdown waited for ever on the stream reader."""
    started = asyncio.Event()
    fanout = StreamFanout(
        redis_client,
        EventStream(redis_client, maxlen=100),
        dispatch=lambda *_: None,
        block_ms=100,
    )
    monkeypatch.setattr(fanout, "_read_forever", lambda: _loses_first_cancel(started))
    fanout.start()
    await started.wait()
    async with asyncio.timeout(GUARD_SECONDS):
        await fanout.stop()


async def test_a_repeated_step_outlives_its_failures() -> None:
    runs: list[int] = []
    three = asyncio.Event()

    async def step() -> None:
        runs.append(len(runs))
        if len(runs) == 3:
            three.set()
        if len(runs) < 3:
            raise RuntimeError("one run failed")

    task = asyncio.create_task(repeat(step, every=0, what="test step"))
    async with asyncio.timeout(GUARD_SECONDS):
        await three.wait()
    await stop_tasks([task])
    assert runs[:3] == [0, 1, 2]


async def test_a_step_finishes_through_cancellations_and_the_cancellation_follows() -> None:
    finished: list[str] = []
    release = asyncio.Event()

    async def step(outcome: str) -> str:
        await release.wait()
        finished.append(outcome)
        if outcome == "fails":
            raise RuntimeError("the step's own failure")
        return outcome

    for outcome in ("records", "fails"):
        release.clear()
        caller = asyncio.create_task(finish_before_cancelling(step(outcome)))
        await asyncio.sleep(0)
        caller.cancel()
        await asyncio.sleep(0.01)
        caller.cancel()  # cancelled again while it waits
        await asyncio.sleep(0.01)
        assert not caller.done()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await caller
    assert finished == ["records", "fails"]
    release.set()
    assert await finish_before_cancelling(step("uncancelled")) == "uncancelled"
