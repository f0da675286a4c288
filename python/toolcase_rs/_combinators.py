"""Waiting on many: gather, race, first_success, map_async, as_completed, retry (spec section 3).

What this module owns: the combinators that run several awaitables at once and hand back their
outcomes, and `retry`. Everything is plain Python over the native `TaskGroup` / `CancelScope`;
nothing here keeps state between calls. It runs on the event loop thread of the caller (and, for
`CompletionStream`, in one helper task on that loop). The only code that may run elsewhere is
`CompletionStream.__del__` (the garbage collector can fire in any thread); it only calls
`CancelScope.cancel()`, which is thread-safe.

Invariants:
- Structured: when a combinator returns or raises, every task it started has finished. The one
  documented exception is a `CompletionStream` that is abandoned without `async with`,
  `aclose()` or exhaustion (a `break` in a bare `async for`, or garbage collection): its work is
  cancelled at once and finishes within a loop iteration or two, but nobody can await it.
- Children run in a native `TaskGroup`, so the caller's cancel scopes and deadlines reach them,
  and a caller that is cancelled cancels them, waits for them, then sees its own cancellation.
- Errors: the first error (in completion order) is raised *itself*, not wrapped in a group,
  like `asyncio.gather` and lionagi's unwrapping; a `KeyboardInterrupt`/`SystemExit` among the
  errors wins over ordinary exceptions. Errors that other children raise while being cancelled
  because of the first one are dropped (they are consequences of it). `first_success` is the
  exception: its "all failed" outcome is one `ExceptionGroup` of every error, in input order.
- Cancellation is never an "error" and never retried: `CancelledError` always propagates, and a
  child cancelled by someone else (a native `task.cancel()`) is reported as `TaskCancelled`.
- No coroutine passed in is left un-awaited: bad arguments close every coroutine already passed
  (no "coroutine was never awaited" warning), and a stream that stops early closes the ones it
  never started.
- Every child task's outcome is retrieved, so no "Task exception was never retrieved" warning.

Hot paths (budgets in the benchmark suite `_bench_many`): `gather` spawns the coroutines
themselves with `tg.spawn` (no wrapper coroutine) and reads results from the handles;
`map_async` runs `limit` workers that pull `(index, item)` pairs from one shared iterator, so
there is no task, no semaphore and no wrapper per item.

Rejected alternatives:
- A task (or a semaphore acquisition) per item in `map_async`: 5,000 items with limit 50 cost
  5,000 task creations and 5,000 semaphore hand-offs (each an extra loop iteration); workers
  make the per-item cost one `await fn(item)`, keep memory bounded for generators, and give
  backpressure for free. Unbounded `map_async` (limit=None) does use one child per item.
- `as_completed` as an async generator holding a task group: when a consumer `break`s, the
  generator is finalised later in *another* task (the loop's asyncgen hook), so the task group
  would be exited from the wrong task (the trio/AnyIO "yield inside a nursery" problem). The
  stream instead runs its children in a helper task that it owns and can cancel from anywhere.
- `as_completed` with a task group entered in the consumer's own task (in `__aenter__`): the
  bare `async for` form has no `__aexit__`, and a scope left entered on the consumer's task
  would break the consumer's scope nesting. The helper task copies the consumer's effective
  deadline into its own scope instead.
- Wrapping every awaitable in a small coroutine for `gather`: it costs a frame per child and
  the coroutine may never start (then the awaitable inside it is "never awaited"). Coroutines
  are spawned as they are; only other awaitables (futures, objects with `__await__`) get a
  wrapper.
- Raising a `BaseExceptionGroup` from `gather`/`map_async`: callers of a gather expect the
  error itself (asyncio, lionagi). A task group is there for those who want every error.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import random
from collections import deque
from collections.abc import (
    Awaitable,
    Callable,
    Collection,
    Coroutine,
    Iterable,
    Iterator,
    Sized,
)
from dataclasses import dataclass
from enum import StrEnum
from types import CoroutineType, TracebackType
from typing import Any, Generic, Literal, NoReturn, Protocol, TypeVar, cast, overload

from ._toolcase_rs import (
    CancelScope,
    TaskCancelled,
    TaskGroup,
    checkpoint,
    current_effective_deadline,
    current_time,
    sleep as _sleep,
)

__all__ = [
    "CompletionStream",
    "Settled",
    "SettledStatus",
    "as_completed",
    "bounded_map",
    "first_success",
    "gather",
    "gather_settled",
    "map_async",
    "race",
    "retry",
]

T = TypeVar("T")
R = TypeVar("R")
Y = TypeVar("Y")

_CancelledError = asyncio.CancelledError
_CANCELLED = "cancelled"  # TaskState value of a child cancelled by someone else


# ---------------------------------------------------------------------------------------------
# Arguments


def _close_unstarted(objects: Iterable[object]) -> None:
    """Close every coroutine in `objects` that has not started, so none warns "never awaited".

    A coroutine that is running or suspended belongs to a task and is left alone.
    """
    for obj in objects:
        if inspect.iscoroutine(obj) and inspect.getcoroutinestate(obj) == inspect.CORO_CREATED:
            obj.close()


async def _await(awaitable: Awaitable[T]) -> T:
    # The coroutine a non-coroutine awaitable (a Future, an object with __await__) runs in.
    return await awaitable


def _coroutines(
    aws: tuple[object, ...] | list[object], name: str
) -> list[Coroutine[Any, Any, Any]]:
    """The awaitables of a combinator as coroutine objects that a task can run.

    Coroutines are used as they are; other awaitables are wrapped in `_await`.

    Raises:
        TypeError: an argument is not awaitable. Every coroutine passed (and every wrapper made
            so far) is closed first, so none of them warns "never awaited".
    """
    if set(map(type, aws)) <= {CoroutineType}:  # the common case, checked at C speed
        return cast(list[Coroutine[Any, Any, Any]], list(aws))
    out: list[Coroutine[Any, Any, Any]] = []
    for position, aw in enumerate(aws):
        if type(aw) is CoroutineType:
            out.append(aw)
        elif inspect.isawaitable(aw):
            out.append(_await(aw))
        else:
            _close_unstarted(aws)
            _close_unstarted(out)
            raise TypeError(
                f"{name}() expects awaitables; argument {position} is "
                f"{type(aw).__name__!r}, which is not awaitable"
            )
    return out


def _check_limit(limit: object, name: str) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(
            f"{name}(): limit must be a positive int or None, not {type(limit).__name__!r}"
        )
    if limit < 1:
        raise ValueError(f"{name}(): limit must be >= 1 (or None for no limit), got {limit}")
    return limit


def _check_timeout(timeout: object, name: str, aws: tuple[object, ...]) -> float:
    """`timeout` (not None) as a float; a bad one closes the coroutines in `aws`."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        _close_unstarted(aws)
        raise TypeError(
            f"{name}(): timeout must be a number of seconds or None, not {type(timeout).__name__!r}"
        )
    if math.isnan(timeout):
        _close_unstarted(aws)
        raise ValueError(f"{name}(): timeout must not be NaN")
    return float(timeout)


# ---------------------------------------------------------------------------------------------
# Errors


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error a combinator raises for a failed task group: see the module note."""
    errors = group.exceptions  # completion order (the group records them as they happen)
    for error in errors:
        if not isinstance(error, Exception | _CancelledError):
            return error  # KeyboardInterrupt, SystemExit: they win
    for error in errors:
        if not isinstance(error, _CancelledError):
            return error
    return group


def _raise(error: BaseException) -> NoReturn:
    # Raise an error captured earlier, outside any `except` block, so Python does not chain the
    # group (or anything else) as its __context__; drop the frame's reference afterwards.
    try:
        raise error
    finally:
        del error


def _cancelled(what: str) -> TaskCancelled:
    return TaskCancelled(f"{what} was cancelled (by something other than this combinator)")


# ---------------------------------------------------------------------------------------------
# gather, gather_settled


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


# ---------------------------------------------------------------------------------------------
# race, first_success


class _Finish:
    """Where racing children put the outcome that decides a race; shared by every racer."""

    __slots__ = ("decided", "error", "errors", "scope", "value")

    def __init__(self, scope: CancelScope, n: int = 0) -> None:
        self.decided = False  # set once, by the first child to decide; then `scope` is cancelled
        self.value: Any = None
        self.error: BaseException | None = None  # race: the winner raised this
        self.errors: list[Exception | None] = [None] * n  # first_success: errors by position
        self.scope = scope


async def _racer(aw: Awaitable[Any], finish: _Finish) -> None:
    try:
        value = await aw
    except Exception as exc:
        # An error a loser raises while being cancelled is dropped: the race is decided.
        if not finish.decided:
            finish.decided = True
            finish.error = exc
            finish.scope.cancel()
        return
    if not finish.decided:
        finish.decided = True
        finish.value = value
        finish.scope.cancel()


async def _success(aw: Awaitable[Any], index: int, finish: _Finish) -> None:
    try:
        value = await aw
    except Exception as exc:
        finish.errors[index] = exc
        return
    if not finish.decided:
        finish.decided = True
        finish.value = value
        finish.scope.cancel()


async def race(*aws: Awaitable[T], timeout: float | None = None) -> T:
    """Return the outcome of the first awaitable to finish; cancel and await the others.

    The first to finish wins whether it returned or raised: its result is returned, or its
    exception re-raised. The losers are cancelled and awaited before `race` returns; errors
    they raise while being cancelled are dropped. A loser cancelled by something else does
    not finish the race.

    Args:
        *aws: at least one awaitable (the same one twice runs once).
        timeout: seconds (None: no limit); a non-positive timeout expires at once, but a
            result available without waiting still wins.

    Raises:
        ValueError: no awaitables, or a NaN timeout.
        TypeError: an argument is not awaitable (every coroutine passed is closed).
        TimeoutError: nothing finished within `timeout` (every awaitable was cancelled and
            awaited).
        TaskCancelled: every awaitable was cancelled by something else.
        asyncio.CancelledError: the caller was cancelled (all cancelled and awaited).
    """
    if timeout is not None:
        timeout = _check_timeout(timeout, "race", aws)
    coros = _coroutines(aws, "race")
    if not coros:
        raise ValueError("race() needs at least one awaitable")
    if len(set(coros)) != len(coros):
        coros = list(dict.fromkeys(coros))
    # The hot path of a budgeted benchmark: written out rather than shared with first_success.
    error: BaseException | None = None
    deadline = math.inf
    try:
        async with TaskGroup() as tg:
            scope = tg.cancel_scope
            if timeout is not None:
                deadline = current_time() + max(timeout, 0.0)
                scope.deadline = deadline
            finish = _Finish(scope)
            spawn = tg.spawn
            for coro in coros:
                spawn(_racer(coro, finish))
    except BaseExceptionGroup as group:
        error = _first_error(group)
    except BaseException:
        _close_unstarted(coros)
        raise
    if error is not None:
        _close_unstarted(coros)
        _raise(error)
    if finish.decided:
        if finish.error is not None:
            _raise(finish.error)
        return finish.value  # type: ignore[no-any-return]
    if timeout is not None and current_time() >= deadline:
        raise TimeoutError(f"race() timed out after {timeout} s")
    raise _cancelled("every awaitable passed to race()")


async def first_success(*aws: Awaitable[T], timeout: float | None = None) -> T:
    """Return the first result that is not an error; cancel and await the others.

    Awaitables that raise an `Exception` are skipped while the others keep running.

    Args:
        *aws: at least one awaitable (the same one twice runs once).
        timeout: seconds (None: no limit).

    Raises:
        ExceptionGroup: every awaitable failed; the group holds their errors in argument
            order (an awaitable cancelled by something else contributes a `TaskCancelled`).
        TimeoutError: no success within `timeout`; its `__cause__` is an `ExceptionGroup` of
            the errors seen so far, if any.
        ValueError: no awaitables, or a NaN timeout.
        TypeError: an argument is not awaitable (every coroutine passed is closed).
        asyncio.CancelledError: the caller was cancelled (all cancelled and awaited).
    """
    if timeout is not None:
        timeout = _check_timeout(timeout, "first_success", aws)
    coros = _coroutines(aws, "first_success")
    if not coros:
        raise ValueError("first_success() needs at least one awaitable")
    if len(set(coros)) != len(coros):
        coros = list(dict.fromkeys(coros))
    error: BaseException | None = None
    deadline = math.inf
    try:
        async with TaskGroup() as tg:
            scope = tg.cancel_scope
            if timeout is not None:
                deadline = current_time() + max(timeout, 0.0)
                scope.deadline = deadline
            finish = _Finish(scope, len(coros))
            handles = [tg.spawn(_success(c, i, finish)) for i, c in enumerate(coros)]
    except BaseExceptionGroup as group:
        error = _first_error(group)
    except BaseException:
        _close_unstarted(coros)
        raise
    if error is not None:
        _close_unstarted(coros)
        _raise(error)
    if finish.decided:
        return finish.value  # type: ignore[no-any-return]
    timed_out = timeout is not None and current_time() >= deadline
    errors: list[Exception] = []
    for failure, handle in zip(finish.errors, handles, strict=True):
        if failure is not None:
            errors.append(failure)
        elif handle.state == _CANCELLED and not timed_out:
            errors.append(_cancelled("this awaitable"))
    if timed_out:
        cause = ExceptionGroup("errors before the timeout", errors) if errors else None
        raise TimeoutError(f"first_success() timed out after {timeout} s") from cause
    raise ExceptionGroup(f"all {len(coros)} awaitables passed to first_success() failed", errors)


# ---------------------------------------------------------------------------------------------
# map_async


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


# The workers of map_async. A worker whose item fails cancels the group's scope itself, at
# once, and every worker checks that scope before it starts an item: so no item starts after
# another one failed (the task group alone would only learn of the failure from the failed
# task's done-callback, one loop iteration later, and a worker that had not run yet would
# still take its first item).


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
            out[index] = await fn(item)
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
            append(await fn(item))
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
        result = await fn(item)
    except Exception:
        scope.cancel()
        raise
    if type(out) is list:
        out.append(result)
    else:
        out[index] = result
    if tick is not None:
        tick()


async def map_async(
    fn: Callable[[T], Awaitable[R]],
    items: Iterable[T],
    *,
    limit: int | None = None,
    ordered: bool = True,
    progress: ProgressCallback | _Bar | None = None,
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
    limit = _check_limit(limit, "map_async")
    if not callable(fn):
        raise TypeError(f"map_async(): fn must be callable, not {type(fn).__name__!r}")
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


# ---------------------------------------------------------------------------------------------
# as_completed, CompletionStream


class _StreamState(StrEnum):
    """Lifecycle of a `CompletionStream`."""

    CREATED = "created"  #: nothing started yet
    RUNNING = "running"  #: the helper task runs the awaitables
    CLOSED = "closed"  #: closed, exhausted or failed: iteration stops


class _Feed:
    """What a `CompletionStream` shares with its helper task and the children.

    The helper and the children hold this, never the stream, so an abandoned stream can be
    garbage-collected (its `__del__` then cancels `scope`). Loop thread only, except
    `scope.cancel()`.
    """

    __slots__ = (
        "cancel_on_error",
        "failure",
        "finished",
        "host",
        "owned",
        "pulls",
        "ready",
        "scope",
        "waiter",
    )

    def __init__(
        self,
        scope: CancelScope,
        cancel_on_error: bool,
        pulls: Iterator[tuple[int, Awaitable[Any]]],
        owned: list[Coroutine[Any, Any, Any]] | None,
    ) -> None:
        # Outcomes not yet taken by the consumer: (index, value or error, ok), completion order.
        self.ready: deque[tuple[int, Any, bool]] = deque()
        self.waiter: asyncio.Future[None] | None = None  # the consumer parks on it when empty
        self.finished = False  # set by the helper when every child is done
        self.failure: BaseException | None = None  # a BaseException that ended the helper
        self.host: asyncio.Task[None] | None = None
        self.scope = scope  # the helper's scope: cancelling it cancels every child
        self.cancel_on_error = cancel_on_error
        # Where the children take their next awaitable from (shared by the workers).
        self.pulls = pulls
        # The coroutines, when we were given a collection: the ones never taken are closed.
        self.owned = owned

    def push(self, outcome: tuple[int, Any, bool]) -> None:
        self.ready.append(outcome)
        self.wake()

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close_unused(self) -> None:
        """Close the coroutines of an owned source that no child took (loop thread only)."""
        if self.owned is not None:
            for _, aw in self.pulls:
                _drop(aw)


def _numbered(aws: Iterable[object]) -> Iterator[tuple[int, Awaitable[Any]]]:
    # Lazily pulled awaitables of a non-collection source, checked one by one.
    for index, aw in enumerate(aws):
        if type(aw) is CoroutineType or inspect.isawaitable(aw):
            yield index, aw
        else:
            raise TypeError(
                f"as_completed() expects awaitables; item {index} is "
                f"{type(aw).__name__!r}, which is not awaitable"
            )


def _drop(aw: Awaitable[Any]) -> None:
    # An awaitable the stream will never await: close a coroutine, cancel a future.
    if isinstance(aw, asyncio.Future):
        aw.cancel()
    else:
        _close_unstarted((aw,))


async def _deliver(feed: _Feed, index: int, aw: Awaitable[Any]) -> None:
    if feed.scope.cancel_called:  # stopped before this child ran: do not start its awaitable
        _drop(aw)
        return
    try:
        value = await aw
    except Exception as exc:
        feed.push((index, exc, False))
        if feed.cancel_on_error:
            feed.scope.cancel()
    except _CancelledError:
        if not feed.scope.cancel_called:  # cancelled by someone else: report it
            feed.push((index, _cancelled("this awaitable"), False))
            if feed.cancel_on_error:
                feed.scope.cancel()
        raise
    else:
        feed.push((index, value, True))


async def _pump(feed: _Feed, pulls: Iterator[tuple[int, Awaitable[Any]]]) -> None:
    for index, aw in pulls:
        await _deliver(feed, index, aw)
        if feed.scope.cancel_called:
            return


async def _host(feed: _Feed, limit: int | None) -> None:
    """The helper task of a `CompletionStream`: runs the awaitables, feeds their outcomes."""
    pulls = feed.pulls
    try:
        with feed.scope:
            if not feed.scope.cancel_called:
                async with TaskGroup() as tg:
                    if limit is None:
                        for index, aw in pulls:
                            tg.spawn(_deliver(feed, index, aw))
                    else:
                        for _ in range(limit):
                            tg.spawn(_pump(feed, pulls))
    except BaseExceptionGroup as group:
        feed.failure = _first_error(group)
    except _CancelledError:
        raise  # the helper itself was cancelled natively (loop shutdown): end cancelled
    except BaseException as exc:  # the source iterator raised while spawning, in this task
        feed.failure = exc
    finally:
        feed.finished = True
        feed.close_unused()
        feed.wake()


async def _wait_finished(task: asyncio.Task[Any]) -> None:
    """Wait until `task` is done, whatever happens to the caller meanwhile.

    Shielded from the caller's cancel scopes; a native cancellation of the caller that gets
    through the shield is re-raised once the task is done.
    """
    interrupted: BaseException | None = None
    with CancelScope(shield=True):
        while not task.done():
            try:
                await asyncio.wait((task,))
            except _CancelledError as exc:
                interrupted = exc
    if interrupted is not None:
        _raise(interrupted)


class CompletionStream(Generic[Y]):
    """Run awaitables concurrently and iterate over their outcomes in completion order.

    Use it as an async context manager around an `async for`, or as a bare async iterator::

        async with CompletionStream(aws, limit=10) as stream:
            async for index, result in stream:
                ...

    The awaitables run in a helper task owned by the stream (started on `async with` or on
    the first `__anext__`), at most `limit` at a time, under the effective deadline of the
    task that started the stream. Outcomes are yielded as `(index, result)` pairs
    (`with_index=True`, the default, as lionagi's `CompletionStream`) or as bare results.

    An awaitable's exception is raised from the iteration at its place in completion order;
    the stream then cancels everything still running, waits for it, and stops (with
    `return_exceptions=True` the exception is yielded in its place instead and nothing is
    cancelled). An awaitable cancelled by something else is reported as a `TaskCancelled`.

    Leaving early: `async with` exit, `aclose()`, an error raised by the stream, or the
    consumer being cancelled while it waits for the next outcome, each cancel what is still
    running *and wait for it*. A `break` out of a bare `async for`, or dropping the stream,
    cancels it when the stream is garbage-collected; it then finishes within a loop iteration
    or two, but nothing can wait for it: use `async with` when that matters. Coroutines never
    started are closed (no "never awaited" warning) and no child's exception goes unretrieved.

    Args:
        aws: an iterable of awaitables. A collection (list, tuple, ...) is checked up front;
            any other iterable (a generator) is consumed lazily, one awaitable per free slot,
            and a non-awaitable item is raised as a `TypeError` when it is reached.
        limit: at most this many awaitables running at once (int >= 1), or None.
        with_index: yield `(index, result)` pairs (index in `aws`) instead of results.
        return_exceptions: yield exceptions in place of results instead of raising them.

    Raises:
        TypeError: `aws` is not iterable or (for a collection) holds a non-awaitable; `limit`
            is not an int. Every coroutine of a collection is closed.
        ValueError: `limit` < 1.
        RuntimeError: entering the stream twice.
    """

    @overload
    def __init__(
        self: CompletionStream[tuple[int, T]],
        aws: Iterable[Awaitable[T]],
        *,
        limit: int | None = None,
        with_index: Literal[True] = True,
        return_exceptions: Literal[False] = False,
    ) -> None: ...
    @overload
    def __init__(
        self: CompletionStream[T],
        aws: Iterable[Awaitable[T]],
        *,
        limit: int | None = None,
        with_index: Literal[False],
        return_exceptions: Literal[False] = False,
    ) -> None: ...
    @overload
    def __init__(
        self: CompletionStream[Any],
        aws: Iterable[Awaitable[Any]],
        *,
        limit: int | None = None,
        with_index: bool = True,
        return_exceptions: bool = False,
    ) -> None: ...
    def __init__(
        self,
        aws: Iterable[Awaitable[Any]],
        *,
        limit: int | None = None,
        with_index: bool = True,
        return_exceptions: bool = False,
    ) -> None:
        self._state = _StreamState.CREATED
        self._feed: _Feed | None = None
        self._owned: list[Coroutine[Any, Any, Any]] | None = None
        if isinstance(aws, Collection):
            try:
                self._limit = _check_limit(limit, "as_completed")
            except BaseException:
                _close_unstarted(aws)
                raise
            self._owned = _coroutines(list(aws), "as_completed")
            self._pulls: Iterator[tuple[int, Awaitable[Any]]] = enumerate(self._owned)
        else:
            self._limit = _check_limit(limit, "as_completed")
            if not isinstance(aws, Iterable):
                raise TypeError(
                    f"as_completed() expects an iterable of awaitables, not {type(aws).__name__!r}"
                )
            self._pulls = _numbered(aws)
        self._with_index = with_index
        self._return_exceptions = return_exceptions

    def __repr__(self) -> str:
        limit = "" if self._limit is None else f" limit={self._limit}"
        return f"<{type(self).__name__} {self._state.value}{limit}>"

    def _start(self) -> _Feed:
        loop = asyncio.get_running_loop()
        deadline = current_effective_deadline()
        # The children run under the starting task's deadline; -inf means "already cancelled"
        # and is spelled as a cancelled scope.
        scope = CancelScope(deadline=deadline if deadline > -math.inf else math.inf)
        if deadline == -math.inf:
            scope.cancel()
        feed = _Feed(scope, not self._return_exceptions, self._pulls, self._owned)
        feed.host = loop.create_task(_host(feed, self._limit), name=f"{self!r} runner")
        self._feed = feed
        self._state = _StreamState.RUNNING
        return feed

    async def __aenter__(self) -> CompletionStream[Y]:
        if self._state is not _StreamState.CREATED:
            raise RuntimeError(
                f"a CompletionStream can be entered (or started) only once; it is {self._state}"
            )
        self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __aiter__(self) -> CompletionStream[Y]:
        return self

    async def __anext__(self) -> Y:
        feed = self._feed
        if feed is None:
            if self._state is _StreamState.CLOSED:
                raise StopAsyncIteration
            feed = self._start()
        ready = feed.ready
        while not ready:
            if self._state is _StreamState.CLOSED:
                raise StopAsyncIteration
            if feed.finished:
                await self.aclose()
                failure, feed.failure = feed.failure, None
                if failure is not None:
                    _raise(failure)
                raise StopAsyncIteration
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            feed.waiter = waiter
            try:
                await waiter
            except BaseException:
                # The consumer is cancelled (or interrupted) while it waits: stop the rest.
                feed.waiter = None
                await self.aclose()
                raise
            feed.waiter = None
        if self._state is _StreamState.CLOSED:
            raise StopAsyncIteration
        index, payload, ok = ready.popleft()
        if not ok and not self._return_exceptions:
            await self.aclose()
            _raise(payload)
        if self._with_index:
            return cast(Y, (index, payload))
        return cast(Y, payload)

    async def aclose(self) -> None:
        """Cancel whatever is still running and wait for it; iteration then stops.

        Idempotent. Waits even if the caller is cancelled meanwhile (it is shielded), then
        lets that cancellation continue.
        """
        state, self._state = self._state, _StreamState.CLOSED
        feed = self._feed
        if feed is None:
            if state is _StreamState.CREATED and self._owned is not None:
                _close_unstarted(self._owned)
            return
        feed.scope.cancel()
        host = feed.host
        if host is not None and not host.done():
            await _wait_finished(host)
        feed.close_unused()

    def __del__(self) -> None:
        # Runs in whatever thread the garbage collector runs in: only thread-safe calls here.
        feed = getattr(self, "_feed", None)
        if feed is None:
            owned = getattr(self, "_owned", None)
            if owned is not None and getattr(self, "_state", None) is _StreamState.CREATED:
                _close_unstarted(owned)
            return
        host = feed.host
        if host is not None and not host.done():
            try:
                feed.scope.cancel()
            except Exception:  # a closed loop at interpreter exit: nothing left to cancel
                pass


@overload
def as_completed(
    aws: Iterable[Awaitable[T]],
    *,
    limit: int | None = None,
    with_index: Literal[False] = False,
    return_exceptions: Literal[False] = False,
) -> CompletionStream[T]: ...
@overload
def as_completed(
    aws: Iterable[Awaitable[T]],
    *,
    limit: int | None = None,
    with_index: Literal[True],
    return_exceptions: Literal[False] = False,
) -> CompletionStream[tuple[int, T]]: ...
@overload
def as_completed(
    aws: Iterable[Awaitable[Any]],
    *,
    limit: int | None = None,
    with_index: bool = False,
    return_exceptions: bool = False,
) -> CompletionStream[Any]: ...
def as_completed(
    aws: Iterable[Awaitable[Any]],
    *,
    limit: int | None = None,
    with_index: bool = False,
    return_exceptions: bool = False,
) -> CompletionStream[Any]:
    """Iterate over the results of awaitables in the order they complete.

    A `CompletionStream` that yields bare results (`with_index=False`, the default here) or
    `(index, result)` pairs. Use it with `async with` (leaving the block cancels and awaits
    whatever is still running) or as a bare `async for` iterator; see `CompletionStream`.

    Example::

        async with as_completed([fetch(u) for u in urls], limit=10) as results:
            async for page in results:
                if good(page):
                    break  # the other fetches are cancelled and awaited on exit
    """
    return CompletionStream(
        aws, limit=limit, with_index=with_index, return_exceptions=return_exceptions
    )


# ---------------------------------------------------------------------------------------------
# retry


def _exception_types(value: object, name: str) -> tuple[type[BaseException], ...]:
    types = value if isinstance(value, tuple) else (value,)
    for t in types:
        if not (isinstance(t, type) and issubclass(t, BaseException)):
            raise TypeError(
                f"retry(): {name} must be an exception class or a tuple of them, got {t!r}"
            )
    return cast(tuple[type[BaseException], ...], types)


def _check_number(value: object, name: str, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"retry(): {name} must be a number, not {type(value).__name__!r}")
    if not (math.isfinite(value) and value >= minimum):
        raise ValueError(f"retry(): {name} must be a finite number >= {minimum}, got {value}")
    return float(value)


async def retry(
    fn: Callable[..., Awaitable[T]],
    *args: Any,
    attempts: int = 3,
    backoff: float = 0.1,
    max_backoff: float = 2.0,
    backoff_factor: float = 2.0,
    jitter: float = 0.1,
    retry_on: type[Exception] | tuple[type[Exception], ...] = (Exception,),
    exclude: type[BaseException] | tuple[type[BaseException], ...] = (),
    **kwargs: Any,
) -> T:
    """Call `await fn(*args, **kwargs)` until it succeeds, with exponential backoff.

    Attempt k (k = 1, 2, ...) that fails with an error in `retry_on` (and not in `exclude`)
    is followed by a sleep of `min(max_backoff, backoff * backoff_factor ** (k - 1))`, times
    `1 + jitter * random()`, then attempt k + 1. Cancellation and `BaseException`s that are
    not `Exception`s are never retried.

    Deadlines: before each sleep, `current_effective_deadline()` is read again. If the sleep
    would end at or past it, no further attempt is made and the last error is raised at once
    (an attempt that could not even start before the deadline is not started). So sleeps never
    outlast the deadline, and they are checkpoints: cancelling the caller interrupts them.
    If the caller's scope is already cancelled, that cancellation is raised instead.

    Args:
        fn: an async callable (anything returning an awaitable).
        *args, **kwargs: passed to `fn` on every attempt. The keywords below belong to
            `retry` itself and cannot be passed through.
        attempts: how many attempts at most (int >= 1).
        backoff: the first sleep, in seconds (>= 0).
        max_backoff: cap on a sleep before jitter (>= 0).
        backoff_factor: growth of the sleep per attempt (>= 1).
        jitter: up to this fraction of random extra sleep (>= 0; 0.1 = up to 10 %).
        retry_on: exception classes to retry; `Exception` subclasses only.
        exclude: exception classes never retried even if `retry_on` matches them.

    Returns:
        What the first successful attempt returned.

    Raises:
        BaseException: the last attempt's error, unchanged (or the first error not in
            `retry_on`, or in `exclude`, at once).
        TypeError: `fn` is not callable; `attempts` is not an int; an argument has the wrong
            type.
        ValueError: `attempts` < 1; a negative or non-finite backoff, jitter or
            `backoff_factor` < 1; `retry_on` covers `asyncio.CancelledError` (for example
            `BaseException`) or holds another `BaseException` that is not an `Exception`.
    """
    if not callable(fn):
        raise TypeError(f"retry(): fn must be callable, not {type(fn).__name__!r}")
    if isinstance(attempts, bool) or not isinstance(attempts, int):
        raise TypeError(f"retry(): attempts must be an int, not {type(attempts).__name__!r}")
    if attempts < 1:
        raise ValueError(f"retry(): attempts must be >= 1, got {attempts}")
    delay = _check_number(backoff, "backoff", 0.0)
    cap = _check_number(max_backoff, "max_backoff", 0.0)
    factor = _check_number(backoff_factor, "backoff_factor", 1.0)
    spread = _check_number(jitter, "jitter", 0.0)
    retried = _exception_types(retry_on, "retry_on")
    for t in retried:
        if issubclass(_CancelledError, t):
            raise ValueError(
                f"retry(): retry_on must not cover asyncio.CancelledError ({t.__name__} does); "
                "cancellation is never retried"
            )
        if not issubclass(t, Exception):
            raise ValueError(
                f"retry(): retry_on must hold Exception subclasses only; {t.__name__} is a "
                "BaseException, which is never retried"
            )
    excluded = _exception_types(exclude, "exclude")
    attempt = 1
    while True:
        try:
            return await fn(*args, **kwargs)
        except retried as exc:
            if attempt >= attempts or (excluded and isinstance(exc, excluded)):
                raise
            sleep_for = min(cap, delay)
            if spread:
                sleep_for *= 1.0 + spread * random.random()
            deadline = current_effective_deadline()
            if deadline == -math.inf:
                await checkpoint()  # our scope is cancelled: raise that, not the error
                raise
            if current_time() + sleep_for >= deadline:
                raise
        attempt += 1
        delay = min(cap, delay * factor)
        await _sleep(sleep_for)
