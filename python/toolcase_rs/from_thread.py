"""Calling into an event loop from other threads (AnyIO's `from_thread`).

From a worker thread started by this library (`to_thread.run_sync`, `run_in_thread`, a
`ThreadPool` job) the loop is known; from any other thread pass `token=` (what
`toolcase_rs.lowlevel.current_token()` returned on the loop), or use a `BlockingPortal`. The
calling thread waits with the GIL released. Calling from the loop's own thread, or into a loop
that has closed, raises `RuntimeError`; a loop that closes while a call waits makes it raise,
never hang.
"""

from __future__ import annotations

import concurrent.futures
import inspect
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractAsyncContextManager, AbstractContextManager, contextmanager
from types import TracebackType
from typing import Any, TypeVar

from ._toolcase_rs import (
    Event,
    LoopToken,
    TaskGroup,
    call_in_loop,
    check_cancelled as _check_cancelled,
    current_token,
)

__all__ = [
    "BlockingPortal",
    "check_cancelled",
    "run",
    "run_sync",
    "start_blocking_portal",
]

T = TypeVar("T")


#: The loops of the open `ThreadContext`s, innermost last.
_contexts: list[LoopToken] = []


def _context() -> LoopToken | None:
    """The loop of the innermost open `ThreadContext` (for threads that are not worker jobs)."""
    for token in reversed(_contexts):
        if not token.closed:
            return token
    return None


def run(func: Callable[..., Awaitable[T]], *args: Any, token: LoopToken | None = None) -> T:
    """Run the async function `func(*args)` as a task of the loop and return its result.

    If the worker's own job is cancelled (its awaiting task was cancelled), the task started
    here is cancelled too.
    """
    result: T = call_in_loop(func, args, True, token, "from_thread.run()", _context())
    return result


def run_sync(func: Callable[..., T], *args: Any, token: LoopToken | None = None) -> T:
    """Call the sync function `func(*args)` on the loop's thread and return its result."""
    result: T = call_in_loop(func, args, False, token, "from_thread.run_sync()", _context())
    return result


def check_cancelled() -> None:
    """In a worker job: raise the cancelled-exception class if the job's token is set.

    `RuntimeError` in any other thread. For blocking code that wants to sleep until cancelled,
    `current_cancel_token().wait(timeout)` wakes at once instead of polling.
    """
    _check_cancelled()


class _PortalStatus:
    """`task_status` for a task started with `BlockingPortal.start_task`."""

    def __init__(self, future: concurrent.futures.Future[Any]) -> None:
        self._future = future

    def started(self, value: object = None) -> None:
        if self._future.done():
            raise RuntimeError("called 'started' twice on the same task status")
        self._future.set_result(value)


def _settle(future: concurrent.futures.Future[Any], exc: BaseException) -> None:
    if future.done():
        return
    if isinstance(exc, concurrent.futures.CancelledError):
        future.cancel()
        future.set_running_or_notify_cancel()
    else:
        future.set_exception(exc)


class BlockingPortal:
    """Lets other threads run functions in this event loop (AnyIO's `BlockingPortal`).

    Use it with `async with BlockingPortal() as portal:` in the loop, or get one running in a
    thread of its own with `start_blocking_portal()`. Tasks started through it are children of
    the portal's task group: leaving the `async with` waits for them.
    """

    def __init__(self) -> None:
        self._token: LoopToken | None = None
        self._task_group: TaskGroup | None = None
        self._stop_event: Event | None = None
        self._loop_thread: int | None = None

    async def __aenter__(self) -> BlockingPortal:
        self._token = current_token()
        self._loop_thread = threading.get_ident()
        self._stop_event = Event()
        self._task_group = TaskGroup(name="BlockingPortal")
        await self._task_group.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        await self.stop()
        assert self._task_group is not None
        return await self._task_group.__aexit__(exc_type, exc, tb)

    def _check_running(self) -> LoopToken:
        if self._token is None or self._stop_event is None:
            raise RuntimeError("this portal is not running: use it inside `async with`")
        if self._stop_event.is_set():
            raise RuntimeError("this portal has been stopped: it accepts no new calls")
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError(
                "BlockingPortal methods cannot be called from the event loop's own thread: "
                "await the function directly there"
            )
        return self._token

    async def sleep_until_stopped(self) -> None:
        """Wait until `stop()` is called."""
        assert self._stop_event is not None
        await self._stop_event.wait()

    async def stop(self, cancel_remaining: bool = False) -> None:
        """Stop accepting calls; with `cancel_remaining`, cancel the tasks still running.

        The portal's `async with` waits for its tasks when it exits.
        """
        if self._stop_event is not None:
            self._stop_event.set()
        if cancel_remaining and self._task_group is not None:
            self._task_group.cancel_scope.cancel()

    def _spawn(
        self,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        future: concurrent.futures.Future[Any],
        name: object,
        status: _PortalStatus | None,
    ) -> None:
        assert self._task_group is not None
        loop = self._token.event_loop if self._token is not None else None

        async def runner() -> None:
            try:
                if status is not None:
                    value = func(*args, task_status=status)
                else:
                    value = func(*args)
                if inspect.isawaitable(value):
                    value = await value
            except BaseException as exc:
                _settle(future, exc)
                if not isinstance(exc, Exception):
                    raise
            else:
                if not future.done():
                    future.set_result(value)

        handle = self._task_group.start_soon(runner, name=name)

        def on_done(f: concurrent.futures.Future[Any]) -> None:
            if f.cancelled() and loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(handle.cancel)

        future.add_done_callback(on_done)

    def call(self, func: Callable[..., Any], *args: Any) -> Any:
        """Call `func(*args)` in the loop and return its result (awaited, if it is a coroutine)."""
        token = self._check_running()
        if inspect.iscoroutinefunction(func):
            return self.start_task_soon(func, *args).result()

        def call_and_maybe_await() -> Any:
            value = func(*args)
            if inspect.isawaitable(value):
                return ("await", value)
            return ("value", value)

        kind, value = call_in_loop(call_and_maybe_await, (), False, token, "BlockingPortal.call()")
        if kind == "value":
            return value

        async def await_it() -> Any:
            return await value

        return self.start_task_soon(await_it).result()

    def start_task_soon(
        self, func: Callable[..., Awaitable[T] | T], *args: Any, name: object = None
    ) -> concurrent.futures.Future[T]:
        """Start `func(*args)` as a task of the portal; a `concurrent.futures.Future` for its
        result. Cancelling the future cancels the task."""
        token = self._check_running()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        call_in_loop(
            self._spawn, (func, args, future, name, None), False, token, "start_task_soon()"
        )
        return future

    def start_task(
        self, func: Callable[..., Awaitable[T]], *args: Any, name: object = None
    ) -> tuple[concurrent.futures.Future[T], Any]:
        """Start `func(*args, task_status=...)` and wait until it calls `task_status.started()`.

        Returns the future of the task's result and the value given to `started()`.
        """
        token = self._check_running()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        started: concurrent.futures.Future[Any] = concurrent.futures.Future()
        status = _PortalStatus(started)

        def fail_start(f: concurrent.futures.Future[T]) -> None:
            if started.done():
                return
            if f.cancelled():
                started.cancel()
            elif f.exception() is not None:
                started.set_exception(f.exception())
            else:
                started.set_exception(
                    RuntimeError("Task exited without calling task_status.started()")
                )

        future.add_done_callback(fail_start)
        call_in_loop(self._spawn, (func, args, future, name, status), False, token, "start_task()")
        return future, started.result()

    def wrap_async_context_manager(
        self, cm: AbstractAsyncContextManager[T]
    ) -> AbstractContextManager[T]:
        """A sync context manager that enters and exits `cm` in the loop."""
        return _BlockingContextManager(cm, self)


class _BlockingContextManager(AbstractContextManager[T]):
    def __init__(self, cm: AbstractAsyncContextManager[T], portal: BlockingPortal) -> None:
        self._cm = cm
        self._portal = portal
        self._exit_event = Event()
        self._exc_info: tuple[Any, Any, Any] = (None, None, None)
        self._entered: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._task: concurrent.futures.Future[bool | None] | None = None

    async def _run(self) -> bool | None:
        try:
            value = await self._cm.__aenter__()
        except BaseException as exc:
            _settle(self._entered, exc)
            raise
        self._entered.set_result(value)
        try:
            await self._exit_event.wait()
        except BaseException:
            # Cancelled while the sync body runs (the portal stopped): exit with the error.
            return await self._cm.__aexit__(*sys.exc_info())
        return await self._cm.__aexit__(*self._exc_info)

    def __enter__(self) -> T:
        self._task = self._portal.start_task_soon(self._run)
        return self._entered.result()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        self._exc_info = (exc_type, exc, tb)
        self._exit_event.set()
        assert self._task is not None
        return self._task.result()


@contextmanager
def start_blocking_portal(
    backend: str = "asyncio",
    backend_options: dict[str, Any] | None = None,
    *,
    name: str | None = None,
) -> Iterator[BlockingPortal]:
    """Run an event loop with a `BlockingPortal` in a new thread, for the `with` block.

    `backend_options`: `{"use_uvloop": True}` or `{"loop_factory": f}`. On exit the portal is
    stopped (its remaining tasks cancelled if the block raised) and the thread joined.
    """
    if backend != "asyncio":
        raise ValueError(
            f"start_blocking_portal(backend={backend!r}): toolcase_rs runs on asyncio only"
        )
    options = dict(backend_options or {})
    loop_factory = options.pop("loop_factory", None)
    if options.pop("use_uvloop", False):
        import uvloop

        loop_factory = uvloop.new_event_loop
    if options:
        raise ValueError(
            f"start_blocking_portal: unknown backend_options {sorted(options)}; "
            "known: use_uvloop, loop_factory"
        )
    ready: concurrent.futures.Future[BlockingPortal] = concurrent.futures.Future()

    async def main() -> None:
        async with BlockingPortal() as portal:
            ready.set_result(portal)
            await portal.sleep_until_stopped()

    def thread_main() -> None:
        from ._core import run as _run

        try:
            _run(main, loop_factory=loop_factory)
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            else:
                raise

    thread = threading.Thread(target=thread_main, name=name or "toolcase_rs-portal", daemon=True)
    thread.start()
    portal = ready.result()
    cancel_remaining = False
    try:
        yield portal
    except BaseException:
        cancel_remaining = True
        raise
    finally:
        try:
            portal.call(portal.stop, cancel_remaining)
        except RuntimeError:
            pass  # the loop is already gone
        thread.join()
