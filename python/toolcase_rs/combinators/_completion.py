"""as_completed and CompletionStream: outcomes in completion order, from a helper task.

What it owns: `CompletionStream` (an async iterator and async context manager), its helper
task (`_host`), the children that feed it (`_deliver`, `_pump`) and `as_completed`, which
builds one. The awaitables run in one helper task on the event loop of the task that started
the stream; the consumer's `__anext__` takes outcomes from a queue the children fill
(`_Feed`). The only code that may run on another thread is `CompletionStream.__del__` (the
garbage collector can fire in any thread); it only calls `CancelScope.cancel()`, which is
thread-safe.

Invariants:
- Structured, with one documented exception: leaving through `async with` exit, `aclose()`,
  an error raised by the stream, or the consumer being cancelled while it waits, cancels what
  is still running *and waits for it*. A stream abandoned without any of these (a `break` in
  a bare `async for`, or garbage collection) is cancelled at once and finishes within a loop
  iteration or two, but nobody can await it.
- The children run under the effective deadline of the task that started the stream (copied
  into the helper's own scope); `-inf` there means "already cancelled".
- The helper and the children hold the `_Feed`, never the stream, so an abandoned stream can
  be garbage-collected (its `__del__` then cancels the feed's scope).
- No coroutine passed in is left un-awaited: a stream that stops early closes the ones it never
  started (and cancels futures it never awaited); no child's exception goes unretrieved.

Rejected alternatives:
- An async generator holding a task group: when a consumer `break`s, the generator is
  finalised later in *another* task (the loop's asyncgen hook), so the task group would be
  exited from the wrong task (the trio/AnyIO "yield inside a nursery" problem). The stream
  instead runs its children in a helper task that it owns and can cancel from anywhere.
- A task group entered in the consumer's own task (in `__aenter__`): the bare `async for` form
  has no `__aexit__`, and a scope left entered on the consumer's task would break the
  consumer's scope nesting. The helper task copies the consumer's effective deadline into its
  own scope instead.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections import deque
from collections.abc import Awaitable, Collection, Coroutine, Iterable, Iterator
from enum import StrEnum
from types import CoroutineType, TracebackType
from typing import Any, Generic, Literal, TypeVar, cast, overload

from .._toolcase_rs import CancelScope, TaskGroup, current_effective_deadline
from ._arguments import _check_limit, _close_unstarted, _coroutines
from ._errors import _cancelled, _CancelledError, _first_error, _raise

__all__ = ["CompletionStream", "as_completed"]

T = TypeVar("T")
Y = TypeVar("Y")


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
            if inspect.iscoroutine(aws):
                aws.close()  # it would never run: no "never awaited" warning on top
                raise TypeError(
                    "as_completed() expects an iterable of awaitables, got one coroutine "
                    "object; pass a list: as_completed([coro, ...])"
                )
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
