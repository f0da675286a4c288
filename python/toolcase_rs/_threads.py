"""Worker threads at the top level: `run_in_thread`, `ThreadPool`, `run_sync`.

Thin wrappers over the native worker pools (see `to_thread` for the semantics of a job).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import os
import threading
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from ._toolcase_rs import CancelScope, CapacityLimiter, WorkerPool, default_pool_counts, run_job
from .to_thread import _run

__all__ = [
    "ThreadPool",
    "ThreadPoolStatistics",
    "run_in_thread",
    "run_sync",
    "worker_thread_statistics",
]

T = TypeVar("T")


async def run_in_thread(
    func: Callable[..., T],
    *args: Any,
    limiter: CapacityLimiter | None = None,
    abandon_on_cancel: bool = False,
    **kwargs: Any,
) -> T:
    """`to_thread.run_sync` with keyword arguments passed through to `func`."""
    return await _run(func, args, kwargs or None, abandon_on_cancel, limiter)


async def run_on_executor(
    executor: concurrent.futures.Executor, func: Callable[..., T], *args: Any, **kwargs: Any
) -> T:
    """Run `func(*args, **kwargs)` on any `concurrent.futures.Executor` and await the result.

    On a thread executor the call runs in a copy of the caller's contextvars (other executors
    pickle the call, and a context cannot be pickled). Cancelling the caller cancels the job if
    it has not started, and otherwise waits for it to finish (shielded), then re-raises: the job
    never outlives the await.
    """
    if isinstance(executor, concurrent.futures.ThreadPoolExecutor):
        future = executor.submit(contextvars.copy_context().run, func, *args, **kwargs)
    else:
        future = executor.submit(func, *args, **kwargs)
    try:
        return await asyncio.wrap_future(future)
    except asyncio.CancelledError:
        if not future.cancel():
            with CancelScope(shield=True), contextlib.suppress(BaseException):
                await asyncio.wrap_future(future)
        raise


@dataclass(frozen=True)
class ThreadPoolStatistics:
    """Worker threads of a pool: how many exist, wait for work, run a job; jobs queued."""

    max_workers: int | None
    threads: int
    idle: int
    busy: int
    queued: int


def worker_thread_statistics() -> ThreadPoolStatistics:
    """Statistics of the default worker pool behind `to_thread.run_sync` and `run_in_thread`
    (its concurrency is bounded by the thread limiter, not by the pool)."""
    threads, idle, busy, queued = default_pool_counts()
    return ThreadPoolStatistics(None, threads, idle, busy, queued)


def _default_workers() -> int:
    return min(32, (os.cpu_count() or 1) + 4)


class ThreadPool:
    """A pool of at most `max_workers` worker threads.

    `async with ThreadPool(4) as pool: await pool.run(fn, *args, **kwargs)`. Cancelling an
    awaited job sets its `CancelToken` and waits for it to return. Leaving the `async with`
    shuts the pool down and waits for running jobs (queued jobs are dropped if the block
    raised), without blocking the event loop.
    """

    def __init__(
        self, max_workers: int | None = None, *, thread_name_prefix: str = "toolcase_rs-pool-"
    ) -> None:
        if max_workers is None:
            max_workers = _default_workers()
        self._native: WorkerPool | None = WorkerPool(max_workers, thread_name_prefix)
        self._executor: concurrent.futures.Executor | None = None
        self.max_workers = max_workers
        self.thread_name_prefix = thread_name_prefix

    @classmethod
    def from_executor(cls, executor: concurrent.futures.Executor) -> ThreadPool:
        """A pool that runs its jobs on `executor` (any `concurrent.futures.Executor`).

        Its `shutdown()` does not shut the executor down: that stays the owner's job.
        """
        if not isinstance(executor, concurrent.futures.Executor):
            raise TypeError(
                "ThreadPool.from_executor() needs a concurrent.futures.Executor, "
                f"got {type(executor).__name__}"
            )
        pool = cls.__new__(cls)
        pool._native = None
        pool._executor = executor
        pool.max_workers = getattr(executor, "_max_workers", 0)
        pool.thread_name_prefix = ""
        return pool

    @property
    def executor(self) -> concurrent.futures.Executor | None:
        """The executor given to `from_executor`, else None (the threads are the library's)."""
        return self._executor

    async def run(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `func(*args, **kwargs)` on a thread of this pool and return its result."""
        if self._native is not None:
            result: T = await self._native.run(func, args, kwargs or None)
            return result
        assert self._executor is not None
        return await run_on_executor(self._executor, func, *args, **kwargs)

    def submit(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> asyncio.Future[T]:
        """Start `func(*args, **kwargs)` now; an `asyncio.Future` (a Task) for its result."""
        return asyncio.ensure_future(self.run(func, *args, **kwargs))

    def map(
        self, func: Callable[..., T], items: Iterable[Any], *, timeout: float | None = None
    ) -> list[T]:
        """Blocking (for sync code, not on a loop thread): `func(item)` for each item, in order."""
        from ._core import run as _run
        from .combinators import map_async

        async def main() -> list[T]:
            async def one(item: Any) -> T:
                return await self.run(func, item)

            if timeout is None:
                return await map_async(one, items, limit=self.max_workers or None)
            return await asyncio.wait_for(
                map_async(one, items, limit=self.max_workers or None), timeout
            )

        return _run(main)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting jobs; `wait`: block until running jobs finish; `cancel_futures`:
        drop queued jobs (their awaiters get `RuntimeError`)."""
        if self._native is not None:
            self._native.shutdown(wait, cancel_futures)

    def statistics(self) -> ThreadPoolStatistics:
        if self._native is None:
            return ThreadPoolStatistics(self.max_workers, 0, 0, 0, 0)
        threads, idle, busy, queued = self._native.counts()
        return ThreadPoolStatistics(self.max_workers, threads, idle, busy, queued)

    async def __aenter__(self) -> ThreadPool:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._native is None:
            return
        native = self._native
        native.shutdown(False, exc_type is not None)
        # Wait for running jobs on a worker of the default pool, not on the loop thread.
        await run_job(native.shutdown, (True, exc_type is not None), None, False)

    def __repr__(self) -> str:
        s = self.statistics()
        return f"<ThreadPool max_workers={s.max_workers} threads={s.threads} busy={s.busy}>"


def run_sync(coro: Coroutine[Any, Any, T], *, loop: asyncio.AbstractEventLoop | None = None) -> T:
    """Run a coroutine from sync code and return its result (toolcase's `run_sync`).

    Without a running loop in this thread it runs on a new loop. Given `loop`, it runs with
    `loop.run_until_complete`. Inside a running loop (Jupyter, a sync helper called from a
    handler) it runs on a new loop in a helper thread, with a copy of the contextvars, and
    blocks this thread until it finishes: the calling loop is frozen meanwhile, so a coroutine
    that needs that loop (a lock held by one of its tasks, a future it resolves) deadlocks.
    """
    if not asyncio.iscoroutine(coro):
        raise TypeError(
            f"run_sync() expects a coroutine object, got {type(coro).__name__}; "
            "call the async function: run_sync(main())"
        )
    if loop is not None:
        return loop.run_until_complete(coro)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}
    ctx = contextvars.copy_context()

    def helper() -> None:
        try:
            box["value"] = ctx.run(asyncio.run, coro)
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=helper, name="toolcase_rs-run_sync", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    result: T = box["value"]
    return result
