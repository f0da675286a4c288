"""gather and gather_settled: run every awaitable, hand back every result in argument order.

What it owns: `gather`, `gather_settled` and their outcome type `Settled`/`SettledStatus`.
Plain Python over the native `TaskGroup`; no state between calls. Runs on the event loop
thread of the caller.

Invariants:
- Structured: when `gather`/`gather_settled` returns or raises, every child has finished. The
  children run in one native `TaskGroup`, so the caller's cancel scopes and deadlines reach
  them, and a cancelled caller cancels them, waits for them, then sees its own cancellation.
- A coroutine passed twice runs once and fills both places (as in `asyncio.gather`): two tasks
  must never drive one coroutine.
- Every child's outcome is read from its Task, so no "Task exception was never retrieved".

Hot path (budget in the benchmark suite `benches/suite_many.py`): `gather` spawns the
coroutines themselves in one native call (`tg._spawn_tasks`, no wrapper coroutine, no handle
objects) and reads the results from the Tasks.

Rejected alternatives:
- Wrapping every awaitable in a small coroutine: a frame per child, and a wrapper that never
  starts leaves its awaitable "never awaited" (see `_arguments`).
- Raising a `BaseExceptionGroup`: callers of a gather expect the error itself (see `_errors`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, Literal, TypeVar, cast, overload

from .._toolcase_rs import TaskGroup
from ._arguments import _close_unstarted, _coroutines
from ._errors import _cancelled, _first_error, _raise

__all__ = ["Settled", "SettledStatus", "gather", "gather_settled"]

T = TypeVar("T")
R = TypeVar("R")


async def _capture(aw: Awaitable[T]) -> T | Exception:
    try:
        return await aw
    except Exception as exc:
        return exc


class SettledStatus(StrEnum):
    """How an awaitable passed to `gather_settled` ended."""

    FULFILLED = "fulfilled"  #: it returned a value
    REJECTED = "rejected"  #: it raised an exception


@dataclass(frozen=True, slots=True)
class Settled(Generic[T]):
    """The outcome of one awaitable of `gather_settled`: a value or an error, never both."""

    status: SettledStatus
    value: T | None = None
    error: Exception | None = None

    @property
    def is_fulfilled(self) -> bool:
        """True if the awaitable returned (its result is `value`)."""
        return self.status is SettledStatus.FULFILLED

    @property
    def is_rejected(self) -> bool:
        """True if the awaitable raised (the exception is `error`)."""
        return self.status is SettledStatus.REJECTED

    def unwrap(self) -> T:
        """The value; re-raises the error of a rejected outcome."""
        if self.error is not None:
            raise self.error
        return cast(T, self.value)

    def unwrap_or(self, default: R) -> T | R:
        """The value, or `default` for a rejected outcome."""
        return cast(T, self.value) if self.error is None else default


async def _settle(aw: Awaitable[T]) -> Settled[T]:
    try:
        value = await aw
    except Exception as exc:
        return Settled(SettledStatus.REJECTED, None, exc)
    return Settled(SettledStatus.FULFILLED, value, None)


async def _run_all(
    coros: list[Coroutine[Any, Any, Any]],
    wrap: Callable[[Coroutine[Any, Any, Any]], Coroutine[Any, Any, Any]] | None = None,
) -> list[asyncio.Task[Any]]:
    """Run every coroutine (through `wrap`, if given) as a child of one task group.

    Returns the finished Tasks in argument order (no handles: this is the bulk path). A
    coroutine passed twice runs once and its Task fills both places (as in `asyncio.gather`;
    two tasks must never drive one coroutine).
    """
    unique = coros if len(set(coros)) == len(coros) else list(dict.fromkeys(coros))
    children = unique if wrap is None else list(map(wrap, unique))
    error: BaseException | None = None
    try:
        async with TaskGroup() as tg:
            handles = tg._spawn_tasks(children)
    except BaseExceptionGroup as group:
        error = _first_error(group)
    except BaseException:
        _close_unstarted(coros)
        raise
    if error is not None:
        _close_unstarted(coros)
        _raise(error)
    if unique is not coros:
        by_coro = dict(zip(map(id, unique), handles, strict=True))
        handles = [by_coro[id(c)] for c in coros]
    return handles


@overload
async def gather(*aws: Awaitable[T], return_exceptions: Literal[False] = False) -> list[T]: ...
@overload
async def gather(*aws: Awaitable[T], return_exceptions: bool) -> list[T | Exception]: ...
async def gather(*aws: Awaitable[Any], return_exceptions: bool = False) -> list[Any]:
    """Run awaitables concurrently and return their results in argument order.

    Each awaitable runs as a child task of a task group. The first one to raise cancels the
    others; they are awaited, then that first error is raised *itself* (not an exception
    group; a `KeyboardInterrupt`/`SystemExit` wins over ordinary errors; errors the others
    raise while being cancelled are dropped). The same awaitable passed twice runs once and
    fills both places.

    Args:
        *aws: coroutines, futures or other awaitables.
        return_exceptions: if true, an awaitable's exception takes its place in the result
            list and nothing is cancelled (`BaseException`s that are not `Exception`s still
            propagate).

    Returns:
        The results, in argument order (`[]` for no arguments).

    Raises:
        TypeError: an argument is not awaitable (every coroutine passed is closed).
        TaskCancelled: an awaitable was cancelled by something else (a native
            `task.cancel()`); with `return_exceptions=True` it takes its place instead.
        asyncio.CancelledError: the caller was cancelled; every child was cancelled and
            awaited first.

    Cancel safety: cancelling the caller cancels every awaitable and waits for them.
    """
    coros = _coroutines(aws, "gather")
    if not coros:
        return []
    if not return_exceptions:
        tasks = await _run_all(coros)
        try:
            return [task.result() for task in tasks]
        except asyncio.CancelledError:  # a child's outcome: result() never waits
            raise _cancelled("an awaitable passed to gather()") from None
    tasks = await _run_all(coros, _capture)
    return [t.result() if not t.cancelled() else _cancelled("this awaitable") for t in tasks]


async def gather_settled(*aws: Awaitable[T]) -> list[Settled[T]]:
    """Run awaitables concurrently and return every outcome, in argument order.

    Never raises for an awaitable's `Exception`: each outcome is a `Settled` with
    `.is_fulfilled`, `.value` and `.error`. Nothing is cancelled because of a failure. An
    awaitable cancelled by something else is rejected with a `TaskCancelled` error.

    Raises:
        TypeError: an argument is not awaitable (every coroutine passed is closed).
        asyncio.CancelledError: the caller was cancelled (children cancelled and awaited).
        BaseException: a child raised a `BaseException` that is not an `Exception`
            (`KeyboardInterrupt`, `SystemExit`); the others were cancelled and awaited.
    """
    coros = _coroutines(aws, "gather_settled")
    if not coros:
        return []
    tasks = await _run_all(coros, _settle)
    return [
        t.result()
        if not t.cancelled()
        else Settled(SettledStatus.REJECTED, None, _cancelled("this awaitable"))
        for t in tasks
    ]
