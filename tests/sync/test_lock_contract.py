"""The lock contract, run against every lock-like type (trio's ``generic_lock_test``).

One set of tests, parametrised by ``lock_kind`` over Lock, Lock(fast_acquire=True), RLock,
Semaphore(1) (both settings), CapacityLimiter(1) and a Condition's lock (both settings of its
Lock), and by ``lib`` over toolcase_rs and AnyIO 4.16: where AnyIO has the type, it is the oracle
(docs/sync-api.md: "Semantics follow AnyIO 4.16 where AnyIO has the primitive"). The tests at the
end take ``tc_lock_kind`` instead: timeouts and the blocking API, which AnyIO does not have.

Order comes from the loop, never from sleeps: a task created with ``asyncio.create_task`` runs
its first step on the next loop iteration, and ``yield_loop`` lets every ready task run until it
blocks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading

import pytest

WORKERS = 12
LOOPS = 8


async def park() -> None:
    await asyncio.Event().wait()


class Taker:
    """A task that acquires ``lock`` with ``async with``, records its name, and holds the lock
    until ``let_go()`` (or releases it at once with ``hold=False``)."""

    def __init__(self, lock, name: str, log: list[str], *, hold: bool = True) -> None:
        self.name = name
        self.entered = asyncio.Event()
        self._go = asyncio.Event()
        if not hold:
            self._go.set()
        self._lock = lock
        self._log = log
        self.task = asyncio.create_task(self._run(), name=name)

    async def _run(self) -> None:
        async with self._lock:
            self._log.append(self.name)
            self.entered.set()
            await self._go.wait()

    def let_go(self) -> None:
        self._go.set()


# --- exclusion and fairness ---------------------------------------------------------------------


async def test_mutual_exclusion_under_contention(lock_kind):
    lock = lock_kind.make()
    inside = 0
    most_inside = 0
    acquisitions = 0

    async def worker() -> None:
        nonlocal inside, most_inside, acquisitions
        for _ in range(LOOPS):
            async with lock:
                inside += 1
                most_inside = max(most_inside, inside)
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                inside -= 1
                acquisitions += 1

    async with asyncio.TaskGroup() as tg:
        for _ in range(WORKERS):
            tg.create_task(worker())
    assert most_inside == 1
    assert acquisitions == WORKERS * LOOPS
    assert not lock_kind.held(lock)
    assert lock_kind.waiting(lock) == 0


async def test_fifo_fairness(lock_kind):
    """After the first round, the tasks take turns in the order they first queued."""
    lock = lock_kind.make()
    initial_order: list[int] = []
    record: list[int] = []
    rounds = 5

    async def loopy(name: int) -> None:
        initial_order.append(name)
        for _ in range(rounds):
            async with lock:
                record.append(name)
                # Without this, a fast_acquire lock would be re-taken before the others queue.
                await asyncio.sleep(0)

    async with asyncio.TaskGroup() as tg:
        for name in (1, 2, 3):
            tg.create_task(loopy(name))
    for i in range(rounds):
        assert record[3 * i : 3 * (i + 1)] == initial_order


async def test_waiters_are_served_in_arrival_order(lock_kind, yield_loop):
    lock = lock_kind.make()
    log: list[str] = []
    await lock.acquire()
    takers = []
    for name in "abcdef":
        takers.append(Taker(lock, name, log))
        await yield_loop()
    assert lock_kind.waiting(lock) == len(takers)
    lock.release()
    for taker in takers:
        await taker.entered.wait()
        await yield_loop()
        assert log[-1] == taker.name  # nobody else got in meanwhile
        taker.let_go()
        await taker.task
    assert log == list("abcdef")
    assert not lock_kind.held(lock)


async def test_release_never_lets_a_newcomer_overtake_a_waiter(lock_kind, yield_loop):
    """No barging: the lock goes to the queued waiter even when the releasing task asks for it
    again in the same step (with fast_acquire too)."""
    lock = lock_kind.make()
    log: list[str] = []
    await lock.acquire()
    waiter = Taker(lock, "waiter", log, hold=False)
    await yield_loop()
    assert lock_kind.waiting(lock) == 1
    lock.release()
    if lock_kind.nowait:
        with pytest.raises(lock_kind.lib.WouldBlock):
            lock.acquire_nowait()
    await lock.acquire()  # the same task, same step: must queue behind the waiter
    log.append("newcomer")
    lock.release()
    await waiter.task
    assert log == ["waiter", "newcomer"]
    assert not lock_kind.held(lock)


async def test_acquire_nowait_blocks_acquire(lock_kind, yield_loop):
    """trio's test of the same name: a lock taken with acquire_nowait() holds off acquire()."""
    if not lock_kind.nowait:
        pytest.skip(f"{lock_kind.id}: acquire_nowait() is not in the contract")
    lock = lock_kind.make()
    record: list[str] = []

    async def taker() -> None:
        record.append("started")
        async with lock:
            pass
        record.append("finished")

    lock.acquire_nowait()
    task = asyncio.create_task(taker())
    await yield_loop()
    assert record == ["started"]
    assert lock_kind.waiting(lock) == 1
    lock.release()
    await task
    assert record == ["started", "finished"]
    assert not lock_kind.held(lock)


async def test_acquire_nowait_would_block_while_another_task_holds_it(lock_kind):
    if not lock_kind.nowait:
        pytest.skip(f"{lock_kind.id}: acquire_nowait() is not in the contract")
    lock = lock_kind.make()
    log: list[str] = []
    holder = Taker(lock, "holder", log)
    await holder.entered.wait()
    with pytest.raises(lock_kind.lib.WouldBlock):
        lock.acquire_nowait()
    holder.let_go()
    await holder.task
    lock.acquire_nowait()
    lock.release()


async def test_async_with_yields_what_anyio_yields(lock_kind):
    """``async with sem`` yields the semaphore; every other lock-like yields None."""
    lock = lock_kind.make()
    async with lock as value:
        if lock_kind.spec.requires == "Semaphore":
            assert value is lock
        else:
            assert value is None


# --- cancellation -------------------------------------------------------------------------------


async def test_cancelled_waiter_leaves_the_queue(lock_kind, yield_loop):
    lock = lock_kind.make()
    log: list[str] = []
    await lock.acquire()
    first = Taker(lock, "first", log)
    await yield_loop()
    second = Taker(lock, "second", log)
    await yield_loop()
    assert lock_kind.waiting(lock) == 2
    first.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first.task
    assert lock_kind.waiting(lock) == 1
    lock.release()
    await second.entered.wait()
    second.let_go()
    await second.task
    assert log == ["second"]
    assert not lock_kind.held(lock)
    assert lock_kind.waiting(lock) == 0


@pytest.mark.parametrize("next_waiter", [True, False], ids=["next_waiter", "no_next_waiter"])
async def test_cancel_right_after_grant_passes_the_lock_on(lock_kind, yield_loop, next_waiter):
    """PITFALLS row 22 (AnyIO #1170): the first waiter is granted the lock and cancelled in the
    same step, before it runs. The lock must go to the next waiter, or back to free: never
    lost, never held by a task that got CancelledError."""
    lock = lock_kind.make()
    log: list[str] = []
    await lock.acquire()
    first = Taker(lock, "first", log)
    await yield_loop()
    second = None
    if next_waiter:
        second = Taker(lock, "second", log)
        await yield_loop()
    lock.release()
    first.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first.task
    if second is not None:
        await second.entered.wait()
        assert lock_kind.held(lock)
        second.let_go()
        await second.task
        assert log == ["second"]
    else:
        await yield_loop()
        assert log == []
    assert not lock_kind.held(lock)
    assert lock_kind.waiting(lock) == 0
    async with lock:  # and it still works
        pass


async def test_cancelling_a_holder_releases_through_async_with(lock_kind, yield_loop):
    lock = lock_kind.make()
    log: list[str] = []
    holder = Taker(lock, "holder", log)
    await holder.entered.wait()
    waiter = Taker(lock, "waiter", log)
    await yield_loop()
    holder.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await holder.task
    await waiter.entered.wait()
    waiter.let_go()
    await waiter.task
    assert log == ["holder", "waiter"]
    assert not lock_kind.held(lock)


# --- acquire is a checkpoint --------------------------------------------------------------------


async def test_acquire_in_a_cancelled_scope_raises_even_when_free(lock_kind):
    """AnyIO: acquire checks for cancellation first, with and without fast_acquire."""
    lock = lock_kind.make()
    body_ran = False
    with lock_kind.lib.CancelScope() as scope:
        scope.cancel()
        async with lock:
            body_ran = True
    assert scope.cancelled_caught
    assert not body_ran
    assert not lock_kind.held(lock)
    async with lock:
        pass


async def test_acquire_nowait_is_not_a_checkpoint(lock_kind):
    if not lock_kind.nowait:
        pytest.skip(f"{lock_kind.id}: acquire_nowait() is not in the contract")
    lock = lock_kind.make()
    with lock_kind.lib.CancelScope() as scope:
        scope.cancel()
        lock.acquire_nowait()
        assert lock_kind.held(lock)
        lock.release()
    assert not scope.cancelled_caught


async def test_acquire_of_a_free_lock_yields_once_unless_fast(lock_kind):
    """Default acquire yields to the loop once even when it succeeds at once (a task that was
    ready runs first); fast_acquire skips only that yield."""
    lock = lock_kind.make()
    ran: list[str] = []

    async def other() -> None:
        ran.append("other")

    task = asyncio.create_task(other())
    await lock.acquire()
    assert ran == ([] if lock_kind.fast else ["other"])
    lock.release()
    await task


async def test_native_cancel_during_the_acquire_yield_leaves_it_free(lock_kind):
    """A default acquire takes a free lock, then yields; a native ``task.cancel()`` that lands
    in that yield must not leave the lock held by the cancelled task."""
    lock = lock_kind.make()
    reached: list[str] = []

    async def take() -> None:
        await lock.acquire()
        reached.append("acquired")
        await park()

    task = asyncio.create_task(take())
    await asyncio.sleep(0)  # `take` runs one step
    if lock_kind.fast:
        assert reached == ["acquired"]  # no yield: it holds the lock and parks
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    if not lock_kind.fast:
        assert reached == []
        assert not lock_kind.held(lock)
    else:
        assert lock_kind.held(lock)  # parked holder cancelled outside `async with`: still held


# --- ownership ----------------------------------------------------------------------------------


async def test_release_by_a_task_that_does_not_hold_it(lock_kind):
    lock = lock_kind.make()
    log: list[str] = []
    holder = Taker(lock, "holder", log)
    await holder.entered.wait()

    async def intruder() -> None:
        lock.release()

    if lock_kind.owned:
        with pytest.raises(RuntimeError):
            await asyncio.create_task(intruder())
        assert lock_kind.held(lock)
    holder.let_go()
    await holder.task
    if lock_kind.owned:
        with pytest.raises(RuntimeError):
            lock.release()
    assert not lock_kind.held(lock)


async def test_holder_acquiring_again(lock_kind):
    """Not re-entrant: RuntimeError rather than a deadlock (AnyIO does this too); RLock counts."""
    if not lock_kind.owned:
        pytest.skip("a semaphore has no owner: acquiring it again just waits")
    lock = lock_kind.make()
    await lock.acquire()
    if lock_kind.reentrant:
        await lock.acquire()
        lock.release()
        assert lock_kind.held(lock)
    else:
        with pytest.raises(RuntimeError):
            await lock.acquire()
        if lock_kind.nowait:
            with pytest.raises(RuntimeError):
                lock.acquire_nowait()
        assert lock_kind.held(lock)
    lock.release()
    assert not lock_kind.held(lock)


# --- statistics ---------------------------------------------------------------------------------


async def test_statistics_count_waiters_and_are_frozen(lock_kind, yield_loop):
    lock = lock_kind.make()
    log: list[str] = []
    stats = lock.statistics()
    assert dataclasses.is_dataclass(stats)
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.tasks_waiting = 5
    assert lock_kind.waiting(lock) == 0
    await lock.acquire()
    takers = [Taker(lock, str(i), log) for i in range(3)]
    await yield_loop()
    assert lock_kind.waiting(lock) == 3
    takers[1].task.cancel()
    await yield_loop()
    assert lock_kind.waiting(lock) == 2
    lock.release()
    for taker in (takers[0], takers[2]):
        await taker.entered.wait()
        taker.let_go()
        await taker.task
    assert lock_kind.waiting(lock) == 0


# --- toolcase_rs only: timeouts ---------------------------------------------------------------


def fake_loop():
    loop = asyncio.get_running_loop()
    assert hasattr(loop, "advance"), "this test needs the fake_clock marker"
    return loop


async def test_acquire_returns_true(tc_lock_kind):
    lock = tc_lock_kind.make()
    assert await lock.acquire() is True
    lock.release()
    assert await lock.acquire(timeout=5) is True
    lock.release()
    assert await lock.acquire(timeout=None) is True
    lock.release()


@pytest.mark.fake_clock
async def test_acquire_timeout_returns_false_and_leaves_the_queue(tc_lock_kind, yield_loop):
    loop = fake_loop()
    lock = tc_lock_kind.make()
    await lock.acquire()
    results: list[bool] = []

    async def waiter() -> None:
        results.append(await lock.acquire(timeout=5))

    task = asyncio.create_task(waiter())
    await yield_loop()
    assert tc_lock_kind.waiting(lock) == 1
    loop.advance(4)
    await yield_loop()
    assert not task.done()
    loop.advance(2)
    await task
    assert results == [False]
    assert tc_lock_kind.waiting(lock) == 0
    lock.release()
    assert not tc_lock_kind.held(lock)  # not granted to the waiter that gave up


@pytest.mark.fake_clock
async def test_acquire_within_the_timeout_returns_true(tc_lock_kind, yield_loop):
    loop = fake_loop()
    lock = tc_lock_kind.make()
    await lock.acquire()
    results: list[bool] = []

    async def waiter() -> None:
        results.append(await lock.acquire(timeout=5))
        lock.release()

    task = asyncio.create_task(waiter())
    await yield_loop()
    loop.advance(3)
    await yield_loop()
    lock.release()
    await task
    assert results == [True]
    loop.advance(10)  # the stale timeout must not fire into anything
    await yield_loop()
    assert not tc_lock_kind.held(lock)
    assert tc_lock_kind.waiting(lock) == 0


async def test_acquire_timeout_zero_on_a_held_lock(tc_lock_kind):
    lock = tc_lock_kind.make()
    await lock.acquire()

    async def waiter() -> bool:
        return bool(await lock.acquire(timeout=0))

    assert await asyncio.create_task(waiter()) is False
    assert tc_lock_kind.waiting(lock) == 0
    lock.release()


async def test_timeout_waiter_keeps_fifo_for_the_others(tc_lock_kind, yield_loop):
    """A waiter whose timeout expires leaves; the waiters behind it keep their order."""
    lock = tc_lock_kind.make()
    await lock.acquire()
    log: list[str] = []
    first = Taker(lock, "first", log)
    await yield_loop()
    quitter = asyncio.create_task(lock.acquire(timeout=0.001))
    await yield_loop()
    third = Taker(lock, "third", log)
    await yield_loop()
    assert await quitter is False
    lock.release()
    for taker in (first, third):
        await taker.entered.wait()
        taker.let_go()
        await taker.task
    assert log == ["first", "third"]


# --- toolcase_rs only: the blocking API -------------------------------------------------------


def test_blocking_acquire_and_sync_with_from_a_plain_thread(tc_lock_kind):
    if not tc_lock_kind.blocking:
        pytest.skip(f"{tc_lock_kind.id}: not in the blocking API")
    lock = tc_lock_kind.make()
    assert lock.acquire_blocking() is True
    assert tc_lock_kind.held(lock)
    lock.release()
    with lock:
        assert tc_lock_kind.held(lock)
    assert not tc_lock_kind.held(lock)
    assert lock.acquire_blocking(timeout=1) is True
    lock.release()


def test_blocking_acquire_times_out_while_another_thread_holds_it(tc_lock_kind, threads):
    if not tc_lock_kind.blocking:
        pytest.skip(f"{tc_lock_kind.id}: not in the blocking API")
    lock = tc_lock_kind.make()
    held = threading.Event()
    done = threading.Event()
    results: list[bool] = []

    def holder() -> None:
        with lock:
            held.set()
            done.wait(10)

    threads.start(holder)
    assert held.wait(10)
    results.append(lock.acquire_blocking(timeout=0.01))
    done.set()
    threads.join()
    results.append(lock.acquire_blocking(timeout=10))
    lock.release()
    assert results == [False, True]


async def test_threads_and_tasks_exclude_each_other(tc_lock_kind, threads):
    """Two plain threads (blocking API) and two tasks share one lock: one holder at a time."""
    if not tc_lock_kind.blocking:
        pytest.skip(f"{tc_lock_kind.id}: not in the blocking API")
    lock = tc_lock_kind.make()
    rounds = 150
    guard = threading.Lock()
    state = {"inside": 0, "most": 0, "count": 0}

    def enter() -> None:
        with guard:
            state["inside"] += 1
            state["most"] = max(state["most"], state["inside"])

    def leave() -> None:
        with guard:
            state["inside"] -= 1
            state["count"] += 1

    def thread_worker() -> None:
        for _ in range(rounds):
            with lock:
                enter()
                leave()

    async def task_worker() -> None:
        for _ in range(rounds):
            async with lock:
                enter()
                await asyncio.sleep(0)
                leave()

    threads.start(thread_worker)
    threads.start(thread_worker)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(task_worker())
        tg.create_task(task_worker())
    await threads.ajoin()
    assert state == {"inside": 0, "most": 1, "count": 4 * rounds}
    assert not tc_lock_kind.held(lock)


def test_owned_lock_release_from_another_thread_is_runtime_error(tc_lock_kind, threads):
    """For blocking use the holder is the thread: another thread may not release it."""
    if not (tc_lock_kind.blocking and tc_lock_kind.owned):
        pytest.skip(f"{tc_lock_kind.id}: no thread ownership")
    lock = tc_lock_kind.make()
    assert lock.acquire_blocking()
    errors: list[BaseException] = []

    def intruder() -> None:
        try:
            lock.release()
        except RuntimeError as exc:
            errors.append(exc)

    threads.start(intruder)
    threads.join()
    assert len(errors) == 1
    assert tc_lock_kind.held(lock)
    lock.release()
    assert not tc_lock_kind.held(lock)
