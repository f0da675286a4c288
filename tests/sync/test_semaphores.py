"""Lock, RLock, Semaphore and CapacityLimiter beyond the shared lock contract.

How many holders each admits under contention, their counters and properties, ``statistics()``
fields, RLock re-entrancy, and changing ``CapacityLimiter.total_tokens`` while tasks wait.
Tests that take ``lib`` run against AnyIO too (the oracle); ``tc`` tests are toolcase_rs only.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import threading

import pytest

WORKERS = 16
LOOPS = 5


def field_names(stats: object) -> list[str]:
    assert dataclasses.is_dataclass(stats)
    return [f.name for f in dataclasses.fields(stats)]


async def count_holders(cm_factory, workers: int = WORKERS, loops: int = LOOPS) -> int:
    """Run ``workers`` tasks that each enter ``cm_factory()`` ``loops`` times, two checkpoints
    inside; return the most tasks that were ever inside at once."""
    inside = 0
    most = 0

    async def worker() -> None:
        nonlocal inside, most
        for _ in range(loops):
            async with cm_factory():
                inside += 1
                most = max(most, inside)
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                inside -= 1

    async with asyncio.TaskGroup() as tg:
        for _ in range(workers):
            tg.create_task(worker())
    assert inside == 0
    return most


class Holder:
    """A task that takes ``acquire()`` (a coroutine function) and holds it until ``let_go()``,
    then calls ``release()``."""

    def __init__(self, acquire, release, log: list[str], name: str) -> None:
        self.entered = asyncio.Event()
        self._go = asyncio.Event()
        self.name = name

        async def run() -> None:
            await acquire()
            log.append(name)
            self.entered.set()
            try:
                await self._go.wait()
            finally:
                release()

        self.task = asyncio.create_task(run(), name=name)

    def let_go(self) -> None:
        self._go.set()


# --- Lock ---------------------------------------------------------------------------------------


async def test_lock_statistics(lib, need, yield_loop):
    lock = need(lib, "Lock")()
    stats = lock.statistics()
    assert field_names(stats)[:3] == ["locked", "owner", "tasks_waiting"]
    assert (stats.locked, stats.owner, stats.tasks_waiting) == (False, None, 0)
    await lock.acquire()
    waiter = asyncio.create_task(lock.acquire())
    await yield_loop()
    stats = lock.statistics()
    assert stats.locked is True
    assert stats.owner is not None
    assert stats.tasks_waiting == 1
    assert lock.locked()
    lock.release()
    await waiter
    assert lock.statistics().owner is not None  # the waiter's task holds it now
    assert lock.statistics().tasks_waiting == 0


# --- RLock (toolcase_rs only) -------------------------------------------------------------------


async def test_rlock_is_reentrant_per_task(tc, need, yield_loop):
    lock = need(tc, "RLock")()
    log: list[str] = []
    for depth in (1, 2, 3):
        assert await lock.acquire() is True
        assert lock.statistics().count == depth
    other = Holder(lock.acquire, lock.release, log, "other")
    await yield_loop()
    lock.release()
    lock.release()
    await yield_loop()
    assert log == []  # still held once
    assert lock.locked()
    lock.release()
    await other.entered.wait()
    assert lock.statistics().count == 1
    other.let_go()
    await other.task
    stats = lock.statistics()
    assert field_names(stats)[:3] == ["locked", "owner", "tasks_waiting"]
    assert "count" in field_names(stats)
    assert (stats.locked, stats.owner, stats.tasks_waiting, stats.count) == (False, None, 0, 0)
    with pytest.raises(RuntimeError):
        lock.release()


async def test_rlock_nested_async_with(tc, need):
    lock = need(tc, "RLock")()
    async with lock:
        async with lock:
            assert lock.statistics().count == 2
        assert lock.locked()
    assert not lock.locked()


def test_rlock_is_reentrant_per_thread(tc, need, threads):
    lock = need(tc, "RLock")()
    seen: list[int] = []
    with lock:
        with lock:
            seen.append(lock.statistics().count)
            assert lock.acquire_blocking(timeout=1) is True
            seen.append(lock.statistics().count)
            lock.release()
    assert not lock.locked()

    blocked: list[bool] = []
    with lock:

        def other() -> None:
            blocked.append(lock.acquire_blocking(timeout=0.01))

        threads.start(other)
        threads.join()
    assert blocked == [False]
    assert seen == [2, 3]


# --- Semaphore ----------------------------------------------------------------------------------


@pytest.mark.parametrize("fast_acquire", [False, True], ids=["default", "fast_acquire"])
@pytest.mark.parametrize("tokens", [2, 3])
async def test_semaphore_admits_exactly_initial_value_holders(lib, need, tokens, fast_acquire):
    sem = need(lib, "Semaphore")(tokens, fast_acquire=fast_acquire)
    assert await count_holders(lambda: sem) == tokens
    assert sem.value == tokens


async def test_semaphore_value_and_max_value(lib, need):
    sem = need(lib, "Semaphore")(2, max_value=3)
    assert (sem.value, sem.max_value) == (2, 3)
    await sem.acquire()
    sem.acquire_nowait()
    assert sem.value == 0
    with pytest.raises(lib.WouldBlock):
        sem.acquire_nowait()
    for expected in (1, 2, 3):
        sem.release()
        assert sem.value == expected
    with pytest.raises(ValueError):
        sem.release()
    assert sem.value == 3
    unbounded = lib.Semaphore(0)
    assert unbounded.max_value is None
    for _ in range(5):
        unbounded.release()
    assert unbounded.value == 5


async def test_semaphore_zero_waits_for_a_release_from_another_task(lib, need, yield_loop):
    sem = need(lib, "Semaphore")(0)
    log: list[str] = []
    holder = Holder(sem.acquire, sem.release, log, "holder")
    await yield_loop()
    assert log == []
    assert sem.statistics().tasks_waiting == 1
    sem.release()  # anyone may release a semaphore
    await holder.entered.wait()
    holder.let_go()
    await holder.task
    assert sem.value == 1
    assert field_names(sem.statistics()) == ["tasks_waiting"]


# --- CapacityLimiter ----------------------------------------------------------------------------


@pytest.mark.parametrize("tokens", [1, 2, 4])
async def test_capacity_limiter_admits_exactly_total_tokens(lib, need, tokens):
    limiter = need(lib, "CapacityLimiter")(tokens)
    assert await count_holders(lambda: limiter) == tokens
    assert limiter.borrowed_tokens == 0


async def test_capacity_limiter_properties_and_statistics(lib, need, yield_loop):
    limiter = need(lib, "CapacityLimiter")(2)
    stats = limiter.statistics()
    assert field_names(stats) == ["borrowed_tokens", "total_tokens", "borrowers", "tasks_waiting"]
    assert (stats.borrowed_tokens, stats.total_tokens, stats.borrowers, stats.tasks_waiting) == (
        0,
        2,
        (),
        0,
    )
    await limiter.acquire()
    limiter.acquire_on_behalf_of_nowait("job-1")
    assert (limiter.borrowed_tokens, limiter.available_tokens, limiter.total_tokens) == (2, 0, 2)
    waiter = asyncio.create_task(limiter.acquire_on_behalf_of("job-2"))
    await yield_loop()
    stats = limiter.statistics()
    assert isinstance(stats.borrowers, tuple)
    assert set(stats.borrowers) == {asyncio.current_task(), "job-1"}
    assert stats.tasks_waiting == 1
    limiter.release_on_behalf_of("job-1")
    await waiter
    assert set(limiter.statistics().borrowers) == {asyncio.current_task(), "job-2"}
    limiter.release()
    limiter.release_on_behalf_of("job-2")
    assert limiter.borrowed_tokens == 0
    assert limiter.available_tokens == 2


async def test_raising_total_tokens_wakes_waiters_at_once(lib, need, yield_loop):
    limiter = need(lib, "CapacityLimiter")(1)
    log: list[str] = []
    holders = [Holder(limiter.acquire, limiter.release, log, str(i)) for i in range(5)]
    await yield_loop()
    assert log == ["0"]
    assert limiter.statistics().tasks_waiting == 4
    limiter.total_tokens = 3  # no release needed: two more waiters get in, in order
    await yield_loop()
    assert log == ["0", "1", "2"]
    assert limiter.borrowed_tokens == 3
    assert limiter.statistics().tasks_waiting == 2
    limiter.total_tokens = math.inf
    await yield_loop()
    assert log == ["0", "1", "2", "3", "4"]
    assert limiter.available_tokens == math.inf
    for holder in holders:
        holder.let_go()
        await holder.task
    assert limiter.borrowed_tokens == 0


async def test_lowering_total_tokens_stops_new_grants_until_it_holds_again(lib, need, yield_loop):
    limiter = need(lib, "CapacityLimiter")(3)
    log: list[str] = []
    holders = [Holder(limiter.acquire, limiter.release, log, str(i)) for i in range(3)]
    await yield_loop()
    late = Holder(limiter.acquire, limiter.release, log, "late")
    await yield_loop()
    limiter.total_tokens = 1
    assert limiter.borrowed_tokens == 3  # transiently above total
    assert limiter.available_tokens <= 0
    for holder in holders[:2]:
        holder.let_go()
        await holder.task
        await yield_loop()
        assert "late" not in log  # borrowed (2, then 1) is not below total (1)
    holders[2].let_go()
    await holders[2].task
    await late.entered.wait()
    assert limiter.borrowed_tokens == 1
    late.let_go()
    await late.task


async def test_capacity_limiter_borrowers_are_arbitrary_objects(lib, need):
    limiter = need(lib, "CapacityLimiter")(2)
    borrower = object()
    await limiter.acquire_on_behalf_of(borrower)
    with pytest.raises(RuntimeError):
        limiter.acquire_on_behalf_of_nowait(borrower)
    limiter.acquire_on_behalf_of_nowait("other")
    with pytest.raises(lib.WouldBlock):
        limiter.acquire_on_behalf_of_nowait("third")
    limiter.release_on_behalf_of(borrower)
    limiter.release_on_behalf_of("other")
    assert limiter.borrowed_tokens == 0


async def test_capacity_limiter_toolcase_aliases(tc, need):
    limiter = need(tc, "CapacityLimiter")(3)
    await limiter.acquire()
    assert (limiter.total, limiter.borrowed, limiter.available) == (3, 1, 2)
    limiter.total_tokens = 5
    assert (limiter.total, limiter.borrowed, limiter.available) == (5, 1, 4)
    limiter.release()


def test_capacity_limiter_default_borrower_of_a_thread_is_the_thread(tc, need, threads):
    limiter = need(tc, "CapacityLimiter")(2)
    seen: list[object] = []

    def borrow() -> None:
        with limiter:
            seen.extend(limiter.statistics().borrowers)
            with pytest.raises(RuntimeError):
                limiter.acquire_blocking()  # the same borrower (this thread) again

    threads.start(borrow)
    threads.join()
    assert len(seen) == 1
    assert limiter.borrowed_tokens == 0


def test_capacity_limiter_two_threads_borrow_two_tokens(tc, need, threads):
    limiter = need(tc, "CapacityLimiter")(2)
    both_in = threading.Barrier(2, timeout=10)

    def borrow() -> None:
        with limiter:
            both_in.wait()  # both threads hold a token at the same time

    threads.start(borrow)
    threads.start(borrow)
    threads.join()
    assert limiter.borrowed_tokens == 0
