"""Stream combinators (toolcase's names and signatures) whose background work is owned.

Streams that pull from their sources in the background (`merge_streams`, `buffer_stream`,
`backpressure_stream`, `batch_stream`, `timeout_stream`, `map_stream(limit=...)`,
`StreamMerger`) run their pumps in a task group under the consumer's deadline and
cancellation; when the consumer stops (`break`, an error, `aclose()`, `async with` exit, garbage
collection) the pumps are cancelled and the sources closed. They support `async with` and
`aclose()`, which return once that clean-up is done. The others (`chain_streams`,
`interleave_streams`, `zip_streams`, `take_stream`, `skip_stream`, `filter_stream`,
`map_stream` without a limit, `flatten_stream`, `enumerate_stream`, `throttle_stream`) pull
in the consumer's own task and close their sources when they end or are closed.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from .._toolcase_rs import EndOfStream, Event, Queue, RateLimiter, TaskGroup, move_on_after
from ._pump import Pump, PumpedStream, check_stream, close_source

__all__ = [
    "BackpressureController",
    "StreamMerger",
    "backpressure_stream",
    "batch_stream",
    "buffer_stream",
    "chain_streams",
    "enumerate_stream",
    "filter_stream",
    "flatten_stream",
    "interleave_streams",
    "map_stream",
    "merge_streams",
    "skip_stream",
    "take_stream",
    "throttle_stream",
    "timeout_stream",
    "zip_streams",
]

T = TypeVar("T")
R = TypeVar("R")


async def _read_into(source: AsyncIterable[Any], items: Queue[Any]) -> None:
    """Pump `source` into `items`, then close it (its reader then sees the end)."""
    try:
        async for item in source:
            await items.put(item)
    finally:
        items.close()


def _positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{what} must be at least 1, got {value}")
    return value


async def _maybe_await(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


# -- pumped streams ----------------------------------------------------------------------------


class _Merged(PumpedStream[T]):
    """`merge_streams`: items of all sources in arrival order."""

    def __init__(self, sources: list[AsyncIterable[T]], maxsize: int = 1) -> None:
        super().__init__(list(sources))
        self._maxsize = maxsize

    def _make_pump(self) -> Pump:
        sources = self._sources

        async def pump(tg: TaskGroup, send: Callable[[Any], Awaitable[None]]) -> None:
            async def one(source: AsyncIterable[Any]) -> None:
                async for item in source:
                    await send(item)

            for source in sources:
                tg.start_soon(one, source)

        return pump


def merge_streams(*streams: AsyncIterable[T]) -> PumpedStream[T]:
    """Items of every stream as they arrive (one pump per stream)."""
    return _Merged([check_stream(s, "merge_streams()") for s in streams])


def buffer_stream(stream: AsyncIterable[T], maxsize: int = 10) -> PumpedStream[T]:
    """Read ahead up to `maxsize` items of `stream` in the background."""
    return _Merged([check_stream(stream, "buffer_stream()")], _positive_int(maxsize, "maxsize"))


@dataclass
class BackpressureController:
    """High/low water marks for `backpressure_stream` (toolcase's controller).

    The producer pauses when `pending` reaches `high_water` and resumes once the consumer has
    brought it down to `low_water`.
    """

    high_water: int = 10
    low_water: int = 3
    pending: int = 0
    _resume: Event = field(default_factory=Event, repr=False)
    _paused: bool = False

    def __post_init__(self) -> None:
        _positive_int(self.high_water, "high_water")
        if isinstance(self.low_water, bool) or not isinstance(self.low_water, int):
            raise TypeError("low_water must be an int")
        if not 0 <= self.low_water < self.high_water:
            raise ValueError("low_water must be at least 0 and below high_water")

    @property
    def should_pause(self) -> bool:
        return self.pending >= self.high_water

    @property
    def is_paused(self) -> bool:
        return self._paused

    def produced(self, n: int = 1) -> None:
        self.pending += n
        if self.should_pause and not self._paused:
            self._paused = True
            self._resume = Event()

    def consumed(self, n: int = 1) -> None:
        self.pending = max(0, self.pending - n)
        if self._paused and self.pending <= self.low_water:
            self._paused = False
            self._resume.set()

    async def wait_for_resume(self) -> None:
        if self._paused:
            await self._resume.wait()


class _Backpressured(PumpedStream[T]):
    def __init__(
        self, source: AsyncIterable[T], maxsize: int, controller: BackpressureController
    ) -> None:
        super().__init__([source])
        self._maxsize = maxsize
        self.controller = controller

    def _make_pump(self) -> Pump:
        source = self._sources[0]
        controller = self.controller

        async def pump(tg: TaskGroup, send: Callable[[Any], Awaitable[None]]) -> None:
            async def run() -> None:
                async for item in source:
                    await controller.wait_for_resume()
                    controller.produced()
                    await send(item)

            tg.start_soon(run)

        return pump

    async def __anext__(self) -> T:
        item = await super().__anext__()
        self.controller.consumed()
        return item


def backpressure_stream(
    stream: AsyncIterable[T],
    maxsize: int = 10,
    *,
    controller: BackpressureController | None = None,
) -> PumpedStream[T]:
    """Read ahead in the background, pausing the producer at the controller's high water mark
    until the consumer drains it to the low water mark."""
    check_stream(stream, "backpressure_stream()")
    if controller is None:
        controller = BackpressureController(high_water=_positive_int(maxsize, "maxsize"))
    elif not isinstance(controller, BackpressureController):
        raise TypeError("controller must be a BackpressureController")
    return _Backpressured(stream, _positive_int(maxsize, "maxsize"), controller)


class _Batched(PumpedStream[list[T]]):
    def __init__(self, source: AsyncIterable[T], size: int, timeout: float | None) -> None:
        super().__init__([source])
        self._size = size
        self._timeout = timeout

    def _make_pump(self) -> Pump:
        source, size, timeout = self._sources[0], self._size, self._timeout

        async def pump(tg: TaskGroup, send: Callable[[Any], Awaitable[None]]) -> None:
            items: Queue[Any] = Queue(1)

            async def batch() -> None:
                loop = asyncio.get_running_loop()
                async for first in items:
                    current = [first]
                    due = None if timeout is None else loop.time() + timeout
                    while len(current) < size:
                        wait = None if due is None else due - loop.time()
                        if wait is not None and wait <= 0:
                            break
                        with move_on_after(wait):
                            try:
                                current.append(await items.get())
                                continue
                            except EndOfStream:
                                pass
                        break  # the stream ended, or `timeout` passed since `first`
                    await send(current)

            tg.start_soon(_read_into, source, items)
            tg.start_soon(batch)

        return pump


def batch_stream(
    stream: AsyncIterable[T], size: int, *, timeout: float | None = None
) -> PumpedStream[list[T]]:
    """Lists of up to `size` items: one is yielded when full, or when `timeout` seconds have
    passed since its first item (then it may be shorter), or when the stream ends."""
    check_stream(stream, "batch_stream()")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds or None, got {timeout}")
    return _Batched(stream, _positive_int(size, "size"), timeout)


class _TimedOut(PumpedStream[T]):
    def __init__(self, source: AsyncIterable[T], timeout: float, on_timeout: Any) -> None:
        super().__init__([source])
        self._timeout = timeout
        self._on_timeout = on_timeout

    def _make_pump(self) -> Pump:
        source, timeout, on_timeout = self._sources[0], self._timeout, self._on_timeout

        async def pump(tg: TaskGroup, send: Callable[[Any], Awaitable[None]]) -> None:
            items: Queue[Any] = Queue(1)

            async def watch() -> None:
                while True:
                    with move_on_after(timeout) as scope:
                        try:
                            item = await items.get()
                        except EndOfStream:
                            return
                    if not scope.cancelled_caught:
                        await send(item)
                    elif on_timeout is None:
                        raise TimeoutError(f"timeout_stream(): no item within {timeout} s")
                    else:
                        value = on_timeout() if callable(on_timeout) else on_timeout
                        await send(await _maybe_await(value))

            tg.start_soon(_read_into, source, items)
            tg.start_soon(watch)

        return pump


def timeout_stream(
    stream: AsyncIterable[T], timeout: float, *, on_timeout: Any = None
) -> PumpedStream[T]:
    """Items of `stream`; when none arrives within `timeout` seconds, raise `TimeoutError`, or
    yield `on_timeout` (a value, or the result of calling it; an async callable is awaited)
    and keep waiting."""
    check_stream(stream, "timeout_stream()")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    return _TimedOut(stream, timeout, on_timeout)


class _ConcurrentMap(PumpedStream[R]):
    def __init__(
        self, source: AsyncIterable[T], func: Callable[[T], Any], limit: int, ordered: bool
    ) -> None:
        super().__init__([source])
        self._func = func
        self._limit = limit
        self._ordered = ordered
        self._maxsize = limit

    def _make_pump(self) -> Pump:
        source, func, limit, ordered = self._sources[0], self._func, self._limit, self._ordered

        async def pump(tg: TaskGroup, send: Callable[[Any], Awaitable[None]]) -> None:
            slots = asyncio.Semaphore(limit)
            results: dict[int, Any] = {}
            ready = asyncio.Condition()
            next_out = [0]
            count = [0]
            done_reading = [False]

            async def apply(index: int, item: Any) -> None:
                try:
                    value = await _maybe_await(func(item))
                finally:
                    slots.release()
                if not ordered:
                    await send(value)
                    return
                async with ready:
                    results[index] = value
                    ready.notify_all()

            async def emit() -> None:
                while True:
                    async with ready:
                        await ready.wait_for(
                            lambda: (
                                next_out[0] in results
                                or (done_reading[0] and next_out[0] >= count[0])
                            )
                        )
                        if next_out[0] not in results:
                            return
                        value = results.pop(next_out[0])
                        next_out[0] += 1
                    await send(value)

            async def read() -> None:
                async for item in source:
                    await slots.acquire()
                    tg.start_soon(apply, count[0], item)
                    count[0] += 1
                async with ready:
                    done_reading[0] = True
                    ready.notify_all()

            if ordered:
                tg.start_soon(emit)
            tg.start_soon(read)

        return pump


class StreamMerger(PumpedStream[Any]):
    """Merge streams added with `add(stream, *, priority=0)`; `async for item in merger`.

    `on_error`: "propagate" (the first error ends the merge and is raised), "skip" (a failing
    stream is dropped, the others go on), or "stop" (a failing stream ends the merge quietly).
    Streams with a higher `priority` are started, and so read, first.
    """

    def __init__(self, on_error: Literal["propagate", "skip", "stop"] = "propagate") -> None:
        if on_error not in ("propagate", "skip", "stop"):
            raise ValueError(f"on_error must be 'propagate', 'skip' or 'stop', got {on_error!r}")
        super().__init__([])
        self.on_error = on_error
        self._priorities: list[int] = []

    def add(self, stream: AsyncIterable[Any], *, priority: int = 0) -> StreamMerger:
        if self._core is not None:
            raise RuntimeError("StreamMerger.add(): the merge has started; add streams first")
        self._sources.append(check_stream(stream, "StreamMerger.add()"))
        self._priorities.append(priority)
        return self

    def _make_pump(self) -> Pump:
        order = sorted(range(len(self._sources)), key=lambda i: -self._priorities[i])
        sources = [self._sources[i] for i in order]
        on_error = self.on_error

        async def pump(tg: TaskGroup, send: Callable[[Any], Awaitable[None]]) -> None:
            async def one(source: AsyncIterable[Any]) -> None:
                try:
                    async for item in source:
                        await send(item)
                except Exception:
                    if on_error == "propagate":
                        raise
                    if on_error == "stop":
                        tg.cancel_scope.cancel()

            for source in sources:
                tg.start_soon(one, source)

        return pump


# -- streams that pull in the consumer's task --------------------------------------------------


async def chain_streams(*streams: AsyncIterable[T]) -> AsyncIterator[T]:
    """Every item of the first stream, then of the second, ..."""
    for s in streams:
        check_stream(s, "chain_streams()")
    try:
        for s in streams:
            async for item in s:
                yield item
    finally:
        for s in streams:
            await close_source(s)


async def interleave_streams(*streams: AsyncIterable[T]) -> AsyncIterator[T]:
    """One item of each stream in turn; an exhausted stream drops out."""
    iterators = [check_stream(s, "interleave_streams()").__aiter__() for s in streams]
    try:
        active = list(iterators)
        while active:
            for it in list(active):
                try:
                    item = await it.__anext__()
                except StopAsyncIteration:
                    active.remove(it)
                    continue
                yield item
    finally:
        for it in iterators:
            await close_source(it)


async def zip_streams(*streams: AsyncIterable[Any]) -> AsyncIterator[tuple[Any, ...]]:
    """Tuples of one item of each stream; ends with the shortest."""
    iterators = [check_stream(s, "zip_streams()").__aiter__() for s in streams]
    try:
        while iterators:
            row = []
            for it in iterators:
                try:
                    row.append(await it.__anext__())
                except StopAsyncIteration:
                    return
            yield tuple(row)
    finally:
        for it in iterators:
            await close_source(it)


async def take_stream(stream: AsyncIterable[T], n: int) -> AsyncIterator[T]:
    """The first `n` items (then the source is closed)."""
    check_stream(stream, "take_stream()")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    try:
        if n == 0:
            return
        seen = 0
        async for item in stream:
            yield item
            seen += 1
            if seen >= n:
                return
    finally:
        await close_source(stream)


async def skip_stream(stream: AsyncIterable[T], n: int) -> AsyncIterator[T]:
    """Every item after the first `n`."""
    check_stream(stream, "skip_stream()")
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    try:
        seen = 0
        async for item in stream:
            if seen >= n:
                yield item
            seen += 1
    finally:
        await close_source(stream)


async def filter_stream(
    stream: AsyncIterable[T], predicate: Callable[[T], Any]
) -> AsyncIterator[T]:
    """Items for which `predicate(item)` (sync or async) is true."""
    check_stream(stream, "filter_stream()")
    if not callable(predicate):
        raise TypeError("filter_stream(): predicate must be callable")
    try:
        async for item in stream:
            if await _maybe_await(predicate(item)):
                yield item
    finally:
        await close_source(stream)


async def _map_sequential(stream: AsyncIterable[T], func: Callable[[T], Any]) -> AsyncIterator[Any]:
    try:
        async for item in stream:
            yield await _maybe_await(func(item))
    finally:
        await close_source(stream)


def map_stream(
    stream: AsyncIterable[T],
    func: Callable[[T], Any],
    *,
    limit: int | None = None,
    ordered: bool = True,
) -> AsyncIterator[Any]:
    """`func(item)` (sync or async) for each item. With `limit`, up to `limit` calls run at
    once in the background (in input order unless `ordered=False`)."""
    check_stream(stream, "map_stream()")
    if not callable(func):
        raise TypeError("map_stream(): func must be callable")
    if limit is None:
        return _map_sequential(stream, func)
    return _ConcurrentMap(stream, func, _positive_int(limit, "limit"), bool(ordered))


async def flatten_stream(stream: AsyncIterable[Any]) -> AsyncIterator[Any]:
    """The items of each item (an iterable or an async iterable)."""
    check_stream(stream, "flatten_stream()")
    try:
        async for inner in stream:
            if hasattr(inner, "__aiter__"):
                async for item in inner:
                    yield item
            else:
                for item in inner:
                    yield item
    finally:
        await close_source(stream)


async def enumerate_stream(
    stream: AsyncIterable[T], start: int = 0
) -> AsyncIterator[tuple[int, T]]:
    """`(index, item)` pairs, counting from `start`."""
    check_stream(stream, "enumerate_stream()")
    try:
        index = start
        async for item in stream:
            yield index, item
            index += 1
    finally:
        await close_source(stream)


async def throttle_stream(
    stream: AsyncIterable[T], rate: float, *, per: float = 1.0, burst: int = 1
) -> AsyncIterator[T]:
    """At most `rate` items per `per` seconds (at most `burst` back to back), on the native
    rate limiter."""
    check_stream(stream, "throttle_stream()")
    if not per > 0:
        raise ValueError(f"per must be a positive number of seconds, got {per!r}")
    limiter = RateLimiter(rate / per, burst=burst)
    try:
        async for item in stream:
            await limiter.acquire()
            yield item
    finally:
        await close_source(stream)
