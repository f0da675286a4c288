"""Condition: wait/notify, FIFO wake-ups, wait_for, cancel safety and statistics.

``lib`` tests run against AnyIO too (the oracle). The Condition's lock as a plain lock is
covered by the shared contract (test_lock_contract.py, kinds ``Condition()``).
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest


class Waiter:
    """A task that waits on ``cond`` (holding its lock around the wait) and logs its wake-up."""

    def __init__(self, cond, name: str, log: list[str]) -> None:
        self.name = name

        async def run() -> None:
            async with cond:
                await cond.wait()
                assert cond.locked()
                log.append(name)

        self.task = asyncio.create_task(run(), name=name)


async def test_notify_wakes_waiters_one_by_one_in_fifo_order(lib, need, yield_loop):
    cond = need(lib, "Condition")()
    log: list[str] = []
    waiters = []
    for name in "abcd":
        waiters.append(Waiter(cond, name, log))
        await yield_loop()
    assert cond.statistics().tasks_waiting == 4
    async with cond:
        cond.notify()
    await yield_loop()
    assert log == ["a"]
    async with cond:
        cond.notify(2)
    await yield_loop()
    assert log == ["a", "b", "c"]
    async with cond:
        cond.notify_all()
    await asyncio.gather(*(w.task for w in waiters))
    assert log == list("abcd")
    assert cond.statistics().tasks_waiting == 0


async def test_notify_more_than_waiting_is_fine(lib, need, yield_loop):
    cond = need(lib, "Condition")()
    log: list[str] = []
    waiter = Waiter(cond, "only", log)
    await yield_loop()
    async with cond:
        cond.notify(5)
        cond.notify_all()
    await waiter.task
    assert log == ["only"]


async def test_wait_releases_the_lock_and_takes_it_back(lib, need, yield_loop):
    cond = need(lib, "Condition")()
    log: list[str] = []
    waiter = Waiter(cond, "w", log)
    await yield_loop()
    assert not cond.locked()  # released while it waits
    async with cond:
        cond.notify()
        await yield_loop()
        assert log == []  # woken, but it needs the lock we hold
    await waiter.task
    assert log == ["w"]
    assert not cond.locked()


async def test_wait_for_returns_the_predicate_value(lib, need, yield_loop):
    cond = need(lib, "Condition")()
    items: list[int] = []
    results: list[object] = []

    async def consumer() -> None:
        async with cond:
            results.append(await cond.wait_for(lambda: len(items) >= 2 and list(items)))

    task = asyncio.create_task(consumer())
    await yield_loop()
    async with cond:
        items.append(1)
        cond.notify_all()
    await yield_loop()
    assert not task.done()  # predicate still false: it waits again
    async with cond:
        items.append(2)
        cond.notify_all()
    await task
    assert results == [[1, 2]]
    async with cond:
        assert await cond.wait_for(lambda: 42) == 42  # true at once: no wait


async def test_cancelled_wait_takes_the_lock_back_before_raising(lib, need, yield_loop):
    cond = need(lib, "Condition")()
    seen: dict[str, object] = {}

    async def waiter() -> None:
        async with cond:
            try:
                await cond.wait()
            except asyncio.CancelledError:
                seen["locked"] = cond.locked()
                seen["owner_is_me"] = task_holds(cond)
                raise

    def task_holds(c) -> bool:
        # notify_all() succeeds only for the holder: a public ownership probe (no one waits).
        try:
            c.notify_all()
        except RuntimeError:
            return False
        return True

    task = asyncio.create_task(waiter())
    await yield_loop()
    await cond.acquire()
    task.cancel()
    await yield_loop()
    assert not task.done()  # it must wait for the lock we hold before raising
    cond.release()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == {"locked": True, "owner_is_me": True}
    assert not cond.locked()


async def test_notified_then_cancelled_waiter_passes_the_notification_on(lib, need, yield_loop):
    """Cancel safety: a wait() cancelled after notify() picked it must not swallow the
    notification; the next waiter gets it (AnyIO does this)."""
    cond = need(lib, "Condition")()
    log: list[str] = []
    first = Waiter(cond, "first", log)
    await yield_loop()
    second = Waiter(cond, "second", log)
    await yield_loop()
    async with cond:
        cond.notify()
        first.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first.task
    await second.task
    assert log == ["second"]


async def test_statistics(lib, need, yield_loop):
    cond = need(lib, "Condition")()
    stats = cond.statistics()
    assert [f.name for f in dataclasses.fields(stats)] == ["tasks_waiting", "lock_statistics"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.tasks_waiting = 3
    log: list[str] = []
    waiters = [Waiter(cond, str(i), log) for i in range(2)]
    await yield_loop()
    async with cond:
        stats = cond.statistics()
        assert stats.tasks_waiting == 2
        assert stats.lock_statistics.locked is True
        cond.notify_all()
    await asyncio.gather(*(w.task for w in waiters))


async def test_condition_with_an_explicit_lock_shares_it(lib, need):
    lock = need(lib, "Lock")()
    cond = need(lib, "Condition")(lock)
    async with cond:
        assert lock.locked()
    async with lock:
        assert cond.locked()
