"""The base of every stream that runs background work (a "pumped" stream).

A pumped stream starts its pumps (tasks that pull from the sources) on the first `__anext__`
(or on `async with`), in a task group owned by one owner task, inside a cancel scope that
carries the consumer's effective deadline and is cancelled when the consumer's own scopes are
(through a cancel token that mirrors the consumer's task). Items come to the consumer through
a bounded queue; a source's error comes through it too, once, as itself, and then the other
sources are closed.

When the consumer stops, the pumps are cancelled and the sources closed: `aclose()` and the
`async with` exit do that and wait for it; a stream dropped after a `break` (garbage
collection) cancels them and lets the owner task finish on its own. No "never retrieved" or
"destroyed but pending" warnings are left behind: the owner task handles every outcome.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any, Generic, TypeVar

from .._toolcase_rs import (
    CancelScope,
    ClosedResourceError,
    EndOfStream,
    Queue,
    TaskGroup,
    current_cancel_token,
    current_effective_deadline,
)

T = TypeVar("T")

_ERROR = object()


async def close_source(source: object) -> None:
    """Close an async iterator if it can be closed (async generators, our streams)."""
    aclose = getattr(source, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:
            pass


def check_stream(stream: object, name: str) -> AsyncIterable[Any]:
    if not hasattr(stream, "__aiter__"):
        raise TypeError(
            f"{name}: expected an async iterable (an async generator, a stream), got "
            f"{type(stream).__name__}"
        )
    return stream


Pump = Callable[[TaskGroup, Callable[[Any], Awaitable[None]]], Awaitable[None]]


class _Core:
    """What the owner task needs; it never refers to the stream object, so a stream that is
    dropped can be collected (and its `__del__` can stop the pumps) while they run."""

    def __init__(self, sources: list[AsyncIterable[Any]], maxsize: int) -> None:
        self.sources = sources
        self.queue: Queue[Any] = Queue(maxsize)
        deadline = current_effective_deadline()
        self.scope = CancelScope(deadline=deadline)
        self.registration = current_cancel_token().on_cancel(self.scope.cancel)

    async def run(self, pump: Pump) -> None:
        queue = self.queue

        async def send(item: Any) -> None:
            await queue.put(item)

        try:
            with self.scope:
                try:
                    async with TaskGroup() as tg:
                        await pump(tg, send)
                except BaseExceptionGroup as group:
                    errors = [e for e in group.exceptions if isinstance(e, Exception)]
                    if not errors:
                        raise
                    await send((_ERROR, errors[0]))
                except Exception as exc:
                    await send((_ERROR, exc))
        except (ClosedResourceError, asyncio.CancelledError):
            pass
        finally:
            with CancelScope(shield=True):
                for source in self.sources:
                    await close_source(source)
            queue.close()
            self.registration.unregister()


class PumpedStream(AsyncIterator[T], Generic[T]):
    """Subclasses implement `_make_pump()`: a function `pump(tg, send)` that starts pump tasks
    in `tg` calling `await send(item)`. It must not refer to the stream object itself."""

    _maxsize = 1

    def __init__(self, sources: list[AsyncIterable[Any]]) -> None:
        self._sources = sources
        self._core: _Core | None = None
        self._owner: asyncio.Task[None] | None = None
        self._finished = False

    def _make_pump(self) -> Pump:
        raise NotImplementedError

    def _start(self) -> _Core:
        if self._core is None:
            self._core = _Core(self._sources, self._maxsize)
            self._owner = asyncio.get_running_loop().create_task(
                self._core.run(self._make_pump()), name=f"{type(self).__name__} pumps"
            )
        return self._core

    def __aiter__(self) -> PumpedStream[T]:
        return self

    async def __anext__(self) -> T:
        if self._finished:
            raise StopAsyncIteration
        core = self._start()
        try:
            item = await core.queue.get()
        except EndOfStream:
            self._finished = True
            raise StopAsyncIteration from None
        if type(item) is tuple and len(item) == 2 and item[0] is _ERROR:
            self._finished = True
            await self.aclose()
            raise item[1]
        return item  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """Cancel the pumps, close the sources, and wait until that is done."""
        self._finished = True
        if self._core is None:
            for source in self._sources:
                await close_source(source)
            return
        self._core.scope.cancel()
        self._core.queue.close()
        owner = self._owner
        if owner is not None and not owner.done():
            with CancelScope(shield=True):
                await asyncio.wait([owner])

    async def __aenter__(self) -> PumpedStream[T]:
        self._start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # Dropped without aclose (a `break` out of `async for`): stop the pumps; the owner
        # task then closes the sources on its own.
        core = getattr(self, "_core", None)
        if core is not None:
            core.scope.cancel()
            core.queue.close()
