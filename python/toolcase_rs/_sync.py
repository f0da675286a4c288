"""Primitives composed from the native ones: Condition and Barrier.

Each is a few lines of bookkeeping over the Rust `Lock`, `Event` and `sleep`, which already do
the cross-loop and cross-thread work (waking a waiter on another loop goes through that loop's
port). The bookkeeping itself is guarded by a `threading.Lock` held only for a handful of
statements and never across an `await`, so these objects are safe to share between loops in
different threads, like the native primitives.

Rejected: implementing them in Rust too. Neither is on a measured hot path (the budgets cover
Lock, Semaphore, Event, Queue and the rate limiter, which are native), and composing keeps their
cancellation behaviour identical to the primitives they are built from.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

from ._toolcase_rs import (
    CancelScope,
    Event,
    Lock,
    checkpoint,
    current_effective_deadline,
)
from ._types import BarrierStatistics, ConditionStatistics

__all__ = ["Barrier", "Condition"]

T = TypeVar("T")


def _current_owner() -> object:
    try:
        task = asyncio.current_task()
    except RuntimeError:
        task = None
    return task if task is not None else threading.current_thread()


class Condition:
    """A condition variable: wait until notified, holding `lock` before and after.

    Args:
        lock: the `toolcase_rs.Lock` to use (a new one by default).

    Cancel safety: a cancelled `wait()` re-acquires the lock (shielded) before raising, so the
    `async with cond:` block still exits holding it.
    """

    def __init__(self, lock: Lock | None = None) -> None:
        if lock is None:
            lock = Lock()
        elif not isinstance(lock, Lock):
            raise TypeError(f"Condition needs a toolcase_rs.Lock, got {type(lock).__name__}")
        self._lock = lock
        self._waiters: deque[Event] = deque()
        self._mutex = threading.Lock()

    async def __aenter__(self) -> None:
        await self._lock.acquire()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._lock.release()

    async def acquire(self, timeout: float | None = None) -> bool:
        """Acquire the underlying lock."""
        return await self._lock.acquire(timeout)

    def acquire_nowait(self) -> None:
        self._lock.acquire_nowait()

    def release(self) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    def _check_held(self, what: str) -> None:
        if self._lock.statistics().owner is not _current_owner():
            raise RuntimeError(
                f"The current task is not holding the underlying lock ({what} needs it: use "
                "`async with cond:`)"
            )

    async def wait(self) -> None:
        """Release the lock, wait to be notified, and re-acquire the lock.

        Cancel safety: a cancelled wait re-acquires the lock before it raises (retrying through
        further cancellations, as `asyncio.Condition` does), so the `async with cond:` block
        still exits holding it; a notification it had already received goes to the next
        waiter.
        """
        if current_effective_deadline() == -math.inf:
            await checkpoint()  # raises: the scope is cancelled
        self._check_held("Condition.wait()")
        event = Event()
        with self._mutex:
            self._waiters.append(event)
        self._lock.release()
        try:
            await event.wait()
        except BaseException:
            with self._mutex:
                try:
                    # Still queued: nobody notified us.
                    self._waiters.remove(event)
                    passed_on = None
                except ValueError:
                    # A notify() took us off the queue (its set() may still be on its way):
                    # pass the notification on to the next waiter.
                    passed_on = self._waiters.popleft() if self._waiters else None
            if passed_on is not None:
                passed_on.set()
            raise
        finally:
            await self._reacquire()

    async def _reacquire(self) -> None:
        # Shielded from scope cancellation; a native Task.cancel() still interrupts an await,
        # so keep trying and re-raise the cancellation once the lock is held again.
        cancelled: BaseException | None = None
        while True:
            try:
                with CancelScope(shield=True):
                    await self._lock.acquire()
                break
            except asyncio.CancelledError as exc:
                cancelled = exc
        if cancelled is not None:
            try:
                raise cancelled
            finally:
                cancelled = None

    async def wait_for(self, predicate: Callable[[], T]) -> T:
        """Wait until `predicate()` is true; returns its value."""
        result = predicate()
        while not result:
            await self.wait()
            result = predicate()
        return result

    def notify(self, n: int = 1) -> None:
        """Wake up to `n` waiters (the caller must hold the lock).

        Raises:
            TypeError: `n` is not an int.
            ValueError: `n` is negative.
            RuntimeError: the caller does not hold the lock.
        """
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"Condition.notify(n): n must be an int, not {type(n).__name__!r}")
        if n < 0:
            raise ValueError(f"Condition.notify(n): n must be >= 0, got {n}")
        self._check_held("Condition.notify()")
        with self._mutex:
            events = [self._waiters.popleft() for _ in range(min(n, len(self._waiters)))]
        for event in events:
            event.set()

    def notify_all(self) -> None:
        """Wake every waiter (the caller must hold the lock)."""
        self._check_held("Condition.notify_all()")
        with self._mutex:
            events = list(self._waiters)
            self._waiters.clear()
        for event in events:
            event.set()

    def statistics(self) -> ConditionStatistics:
        return ConditionStatistics(len(self._waiters), self._lock.statistics())


class _Round:
    """One filling of a barrier."""

    __slots__ = ("broken", "event")

    def __init__(self) -> None:
        self.event = Event()
        self.broken = False


class Barrier:
    """Waits until `parties` tasks (of any loops) have called `wait()`, then releases them all.

    Args:
        parties: how many arrivals release the barrier (>= 1).

    A `wait(timeout=)` that times out breaks the barrier: it raises `TimeoutError`, the other
    waiters get `asyncio.BrokenBarrierError`, and so does every later `wait()` until `reset()`.
    A cancelled waiter leaves without breaking it.
    """

    def __init__(self, parties: int) -> None:
        if isinstance(parties, bool) or not isinstance(parties, int):
            raise TypeError(f"parties must be an int, got {type(parties).__name__}")
        if parties < 1:
            raise ValueError(f"parties must be >= 1, got {parties}")
        self._parties = parties
        self._count = 0
        self._round = _Round()
        self._broken = False
        self._mutex = threading.Lock()

    @property
    def parties(self) -> int:
        return self._parties

    @property
    def n_waiting(self) -> int:
        return self._count

    @property
    def broken(self) -> bool:
        return self._broken

    async def wait(self, timeout: float | None = None) -> int:
        """Arrive and wait for the others; returns this arrival's index (0 .. parties-1).

        Raises:
            TypeError: `timeout` is not a number (or None).
            ValueError: `timeout` is NaN.
            TimeoutError: `timeout` passed first (the barrier is then broken).
            asyncio.BrokenBarrierError: the barrier is (or becomes) broken.
        """
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, int | float):
                raise TypeError(
                    "Barrier.wait(timeout): timeout must be a number of seconds or None, "
                    f"not {type(timeout).__name__!r}"
                )
            if math.isnan(timeout):
                raise ValueError("Barrier.wait(timeout): timeout must not be NaN")
        await checkpoint()
        with self._mutex:
            if self._broken:
                raise asyncio.BrokenBarrierError
            index = self._count
            this_round = self._round
            self._count += 1
            tripped = self._count == self._parties
            if tripped:
                self._count = 0
                self._round = _Round()
        if tripped:
            this_round.event.set()
            return index
        try:
            arrived = await this_round.event.wait(timeout)
        except BaseException:
            with self._mutex:
                if not this_round.event.is_set():
                    self._count -= 1
            raise
        if not arrived:
            with self._mutex:
                if not this_round.event.is_set():
                    this_round.broken = self._broken = True
                    self._count = 0
                    self._round = _Round()
            this_round.event.set()
            if this_round.broken:
                raise TimeoutError("Barrier.wait() timed out; the barrier is now broken")
        if this_round.broken:
            raise asyncio.BrokenBarrierError
        return index

    def reset(self) -> None:
        """Repair a broken barrier (waiters of a round in progress get BrokenBarrierError)."""
        with self._mutex:
            old = self._round
            if self._count:
                old.broken = True
            self._round = _Round()
            self._count = 0
            self._broken = False
        if old.broken:
            old.event.set()

    def statistics(self) -> BarrierStatistics:
        return BarrierStatistics(self._parties, self._count, self._broken)


for _cls in (Condition, Barrier):
    _cls.__module__ = "toolcase_rs"
del _cls
