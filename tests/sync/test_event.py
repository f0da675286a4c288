"""Event: waiting, setting, the checkpoint on an already-set event, timeouts, threads.

``lib`` tests run against AnyIO as the oracle (AnyIO's ``wait()`` returns None, so they do not
look at return values); ``tc`` tests cover what only toolcase_rs has: ``clear()``,
``wait(timeout=)``, ``wait_blocking`` and ``set()`` from another thread.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time

import pytest

#: A bound for "woken within milliseconds" that no scheduler hiccup reaches; the latency itself
#: is measured in the benchmark (benches/run.py, cross-loop Event wake-up).
PROMPT = 0.5


async def test_wait_blocks_until_set_and_wakes_every_waiter(lib, need, yield_loop):
    event = need(lib, "Event")()
    woken: list[int] = []

    async def waiter(i: int) -> None:
        await event.wait()
        woken.append(i)

    tasks = [asyncio.create_task(waiter(i)) for i in range(5)]
    await yield_loop()
    assert woken == []
    assert not event.is_set()
    assert event.statistics().tasks_waiting == 5
    event.set()
    assert event.is_set()
    await asyncio.gather(*tasks)
    assert sorted(woken) == list(range(5))
    assert event.statistics().tasks_waiting == 0
    event.set()  # setting twice is fine
    assert event.is_set()


async def test_wait_on_a_set_event_is_a_checkpoint(lib, need):
    """AnyIO: when already set, wait() checks for cancellation and yields once."""
    event = need(lib, "Event")()
    event.set()
    ran: list[str] = []

    async def other() -> None:
        ran.append("other")

    task = asyncio.create_task(other())
    await event.wait()
    assert ran == ["other"]
    await task
    with lib.CancelScope() as scope:
        scope.cancel()
        await event.wait()
        pytest.fail("wait() on a set event did not check for cancellation")
    assert scope.cancelled_caught


async def test_cancelled_waiter_is_removed(lib, need, yield_loop):
    event = need(lib, "Event")()
    tasks = [asyncio.create_task(event.wait()) for _ in range(3)]
    await yield_loop()
    tasks[0].cancel()
    await yield_loop()
    assert event.statistics().tasks_waiting == 2
    event.set()
    await asyncio.gather(*tasks[1:])
    assert tasks[0].cancelled()


async def test_statistics_is_a_frozen_dataclass(lib, need):
    stats = need(lib, "Event")().statistics()
    assert [f.name for f in dataclasses.fields(stats)] == ["tasks_waiting"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.tasks_waiting = 1


# --- toolcase_rs only ---------------------------------------------------------------------------


async def test_wait_returns_true_and_clear_resets(tc, need, yield_loop):
    event = need(tc, "Event")()
    event.set()
    assert await event.wait() is True
    event.clear()
    assert not event.is_set()
    task = asyncio.create_task(event.wait())
    await yield_loop()
    assert not task.done()
    event.set()
    assert await task is True


@pytest.mark.fake_clock
async def test_wait_timeout(tc, need, yield_loop):
    loop = asyncio.get_running_loop()
    event = need(tc, "Event")()
    task = asyncio.create_task(event.wait(timeout=5))
    await yield_loop()
    loop.advance(4)
    await yield_loop()
    assert not task.done()
    loop.advance(2)
    assert await task is False
    assert event.statistics().tasks_waiting == 0
    task = asyncio.create_task(event.wait(timeout=5))
    await yield_loop()
    event.set()
    assert await task is True
    assert await event.wait(timeout=0) is True


def test_wait_blocking_from_a_plain_thread(tc, need, threads):
    event = need(tc, "Event")()
    assert event.wait_blocking(timeout=0.001) is False
    results: list[bool] = []
    started = threading.Event()

    def waiter() -> None:
        started.set()
        results.append(event.wait_blocking(timeout=10))

    threads.start(waiter)
    assert started.wait(10)
    event.set()
    threads.join()
    assert results == [True]
    assert event.wait_blocking() is True


async def test_set_from_a_thread_wakes_a_task_promptly(tc, need, threads, await_until):
    event = need(tc, "Event")()
    stamps: dict[str, float] = {}

    def setter() -> None:
        stamps["set"] = time.perf_counter()
        event.set()

    task = asyncio.create_task(event.wait())
    await await_until(lambda: event.statistics().tasks_waiting == 1, "the waiter to park")
    threads.start(setter)
    # The loop now sleeps in its selector with nothing scheduled: only the port can wake it.
    assert await task is True
    woke = time.perf_counter()
    await threads.ajoin()
    assert woke - stamps["set"] < PROMPT


async def test_task_sets_an_event_a_thread_waits_on(tc, need, threads, await_until):
    event = need(tc, "Event")()
    results: list[bool] = []
    ready = threading.Event()

    def waiter() -> None:
        ready.set()
        results.append(event.wait_blocking(timeout=10))

    threads.start(waiter)
    await asyncio.to_thread(ready.wait, 10)
    event.set()
    await threads.ajoin()
    assert results == [True]
