"""map_async (alias bounded_map): apply an async function to every item, at most `limit` at once.

What it owns: `map_async`, its workers, and the progress hook. Plain Python over the native
`TaskGroup`; no state between calls. Runs on the event loop thread of the caller; the progress
callback runs in whichever worker finished the item, on that same thread.

Invariants:
- Structured: when `map_async` returns or raises, every worker has finished; the caller's
  cancel scopes and deadlines reach the calls in flight.
- No item starts after another one failed: a failing worker cancels the group's scope itself,
  at once, and every worker checks that scope before it starts an item. (The task group alone
  would only learn of the failure from the failed task's done-callback, one loop iteration
  later, and a worker that had not run yet would still take its first item.) Items not yet
  pulled are never pulled.
- The first error is raised itself, as in `gather` (see `_errors`).

Hot path (budgets in the benchmark suite `benches/suite_many.py`, rows `map-limit` and
`fan-out`): with a limit, `limit` workers pull `(index, item)` pairs from one shared iterator,
so there is no task, no semaphore and no wrapper per item: the per-item cost is one
`await fn(item)`.

Rejected alternative: a task (or a semaphore acquisition) per item. 5,000 items with limit 50
cost 5,000 task creations and 5,000 semaphore hand-offs (each an extra loop iteration);
workers keep memory bounded for generators and give backpressure for free. Unbounded
`map_async` (limit=None) does use one child per item.
"""

from __future__ import annotations

import concurrent.futures
import inspect
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sized
from typing import Any, Protocol, TypeVar

from .._threads import run_on_executor
from .._toolcase_rs import CancelScope, TaskGroup
from ._arguments import _check_async_callable, _check_limit, _not_awaitable
from ._errors import _first_error, _raise

__all__ = ["bounded_map", "map_async"]

T = TypeVar("T")
R = TypeVar("R")


class _Bar(Protocol):
    def update(self, n: int = 1, /) -> object: ...


#: `progress(done, total)`: `done` items finished so far, `total` items (None when unknown).
ProgressCallback = Callable[[int, "int | None"], object]


def _progress_hook(progress: object, total: int | None) -> Callable[[], object] | None:
    """A zero-argument function to call once per finished item, or None for no progress."""
    if progress is None:
        return None
    update = getattr(progress, "update", None)
    if callable(update):  # tqdm-like: bar.update(1) per item
        return lambda: update(1)
    if callable(progress):
        done = 0

        def tick() -> object:
            nonlocal done
            done += 1
            return progress(done, total)

        return tick
    raise TypeError(
        "map_async(): progress must be a callable (done, total) or an object with an "
        f"update(n) method, not {type(progress).__name__!r}"
    )


# The workers: each checks the scope before it starts an item (see the module note).


async def _worker(
    fn: Callable[[Any], Awaitable[Any]],
    pulls: Iterator[tuple[int, Any]],
    out: dict[int, Any],
    tick: Callable[[], object] | None,
    scope: CancelScope,
) -> None:
    try:
        for index, item in pulls:
            if scope.cancel_called:
                return
            aw = fn(item)
            try:
                out[index] = await aw
            except TypeError:
                if not inspect.isawaitable(aw):
                    raise _not_awaitable(fn, aw, "map_async") from None
                raise
            if tick is not None:
                tick()
    except Exception:
        scope.cancel()
        raise


async def _worker_unordered(
    fn: Callable[[Any], Awaitable[Any]],
    pulls: Iterator[Any],
    out: list[Any],
    tick: Callable[[], object] | None,
    scope: CancelScope,
) -> None:
    append = out.append
    try:
        for item in pulls:
            if scope.cancel_called:
                return
            aw = fn(item)
            try:
                append(await aw)
            except TypeError:
                if not inspect.isawaitable(aw):
                    raise _not_awaitable(fn, aw, "map_async") from None
                raise
            if tick is not None:
                tick()
    except Exception:
        scope.cancel()
        raise


async def _apply(
    fn: Callable[[Any], Awaitable[Any]],
    index: int,
    item: Any,
    out: dict[int, Any] | list[Any],
    tick: Callable[[], object] | None,
    scope: CancelScope,
) -> None:
    # One item of an unbounded map_async; `out` is a list (append) when unordered. A task that
    # had not started when another item failed does not start its item at all.
    if scope.cancel_called:
        return
    try:
        aw = fn(item)
        try:
            result = await aw
        except TypeError:
            if not inspect.isawaitable(aw):
                raise _not_awaitable(fn, aw, "map_async") from None
            raise
    except Exception:
        scope.cancel()
        raise
    if type(out) is list:
        out.append(result)
    else:
        out[index] = result
    if tick is not None:
        tick()


def _on_executor(fn: Any, executor: concurrent.futures.Executor) -> Any:
    """`fn(item)` on `executor`, as an async function (see `map_async(executor=)`)."""
    if not isinstance(executor, concurrent.futures.Executor):
        raise TypeError(
            "map_async(executor=): expected a concurrent.futures.Executor, "
            f"got {type(executor).__name__}"
        )
    if inspect.iscoroutine(fn):
        fn.close()
        raise TypeError("map_async(executor=): fn must be a sync function, got a coroutine")
    if not callable(fn):
        raise TypeError(f"map_async(): fn must be callable, not {type(fn).__name__!r}")
    if inspect.iscoroutinefunction(fn):
        raise TypeError(
            "map_async(executor=): fn must be a sync function (the executor runs it); "
            f"{getattr(fn, '__qualname__', fn)!r} is async"
        )

    async def on_executor(item: Any) -> Any:
        return await run_on_executor(executor, fn, item)

    return on_executor


async def map_async(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T],
    *,
    limit: int | None = None,
    ordered: bool = True,
    progress: ProgressCallback | _Bar | None = None,
    executor: concurrent.futures.Executor | None = None,
) -> list[R]:
    """Apply an async function to every item, at most `limit` at a time, and collect results.

    With a limit, `limit` worker tasks (fewer if there are fewer items) pull items from one
    iterator over `items`, one at a time, as they finish the previous one: no task is created
    per item, a generator is consumed only as fast as the work goes (bounded memory, and
    backpressure on the producer), and 100,000+ items cost one `await fn(item)` each. Without
    a limit, every item gets its own child task at once (a generator is still consumed item
    by item, without building a list first).

    The first error cancels the work in flight; the workers are awaited, then that error is
    raised itself (as in `gather`); items not yet pulled are never pulled.

    Args:
        fn: called as `fn(item)`; must return an awaitable.
        items: any iterable (a list, a generator, ...).
        limit: at most this many `fn` calls in flight (an int >= 1), or None for no limit.
        ordered: results in input order (default), or in completion order if false.
        progress: a callback `progress(done, total)` called after each item (`total` is
            `len(items)`, or None when `items` has no length), or an object with an
            `update(n)` method such as a tqdm bar (`update(1)` per item). It runs in the
            worker; an exception it raises is an error like any other.
        executor: run a *sync* `fn` on this `concurrent.futures.Executor` (a process pool, a
            Dask cluster's `Client.get_executor()`, ...) instead: `limit`, order, progress
            and cancellation work the same. Cancelling the caller cancels the executor's
            futures that have not started and waits for the running ones to finish.

    Returns:
        The results of `fn`, in input order (or completion order).

    Raises:
        TypeError: `fn` is not callable, `items` is not iterable, `limit` is not an int, or
            `progress` is neither callable nor has `update`.
        ValueError: `limit` < 1.
        asyncio.CancelledError: the caller was cancelled (workers cancelled and awaited).

    Cancel safety: cancelling the caller cancels the calls in flight and waits for them; the
    rest of `items` is left unconsumed.
    """
    if executor is not None:
        fn = _on_executor(fn, executor)
    else:
        _check_async_callable(fn, "map_async")
    limit = _check_limit(limit, "map_async")
    total = len(items) if isinstance(items, Sized) else None
    tick = _progress_hook(progress, total)
    iterator = iter(items)
    ordered_out: dict[int, Any] = {}
    unordered_out: list[Any] = []
    error: BaseException | None = None
    try:
        async with TaskGroup() as tg:
            spawn = tg.spawn
            scope = tg.cancel_scope
            out = ordered_out if ordered else unordered_out
            if limit is None:
                for index, item in enumerate(iterator):
                    spawn(_apply(fn, index, item, out, tick, scope))
            else:
                workers = limit if total is None else min(limit, total)
                if ordered:
                    pulls = enumerate(iterator)
                    for _ in range(workers):
                        spawn(_worker(fn, pulls, ordered_out, tick, scope))
                else:
                    for _ in range(workers):
                        spawn(_worker_unordered(fn, iterator, unordered_out, tick, scope))
    except BaseExceptionGroup as group:
        error = _first_error(group)
    if error is not None:
        _raise(error)
    if not ordered:
        return unordered_out
    return list(map(ordered_out.__getitem__, range(len(ordered_out))))


bounded_map = map_async
