"""Adapters and decorators between sync and async code (toolcase's interop names).

`sync_to_async` / `threadpool` / `processpool` / `AsyncAdapter` make a sync function awaitable
(it runs on a worker thread or process); `async_to_sync` / `SyncAdapter` make an async
function callable from sync code (through `run_sync`). `ThreadContext` lets plain threads
started inside it call back into its loop with `from_thread` without passing a token.
"""

from __future__ import annotations

import concurrent.futures
import functools
import importlib
import inspect
import sys
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar, overload

from ._processes import ProcessPool, run_in_process
from ._threads import ThreadPool, run_in_thread, run_sync
from ._toolcase_rs import LoopToken, current_token
from .from_thread import _contexts

__all__ = [
    "AsyncAdapter",
    "SyncAdapter",
    "ThreadContext",
    "async_to_sync",
    "processpool",
    "sync_to_async",
    "threadpool",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def _require_sync(func: object, name: str) -> None:
    if not callable(func):
        raise TypeError(f"{name}() needs a callable, got {type(func).__name__}")
    if inspect.iscoroutinefunction(func):
        raise TypeError(
            f"{name}() makes a sync function awaitable, but "
            f"{getattr(func, '__qualname__', func)!r} is already async"
        )


def _require_async(func: object, name: str) -> None:
    if not callable(func):
        raise TypeError(f"{name}() needs a callable, got {type(func).__name__}")
    if inspect.iscoroutine(func):
        func.close()
        raise TypeError(f"{name}() needs an async function, got a coroutine object")


def sync_to_async(func: Callable[..., T]) -> Callable[..., Coroutine[Any, Any, T]]:
    """Decorator: an async function that runs `func` on a worker thread (`run_in_thread`)."""
    _require_sync(func, "sync_to_async")

    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> T:
        return await run_in_thread(func, *args, **kwargs)

    return wrapper


def async_to_sync(func: Callable[..., Awaitable[T]]) -> Callable[..., T]:
    """Decorator: a sync function that runs the async `func` to completion (`run_sync`)."""
    _require_async(func, "async_to_sync")

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        return run_sync(func(*args, **kwargs))  # type: ignore[arg-type]

    return wrapper


@dataclass
class AsyncAdapter:
    """`await AsyncAdapter(func)(*args, **kwargs)` runs the sync `func` on a worker thread, or
    on `executor` (any `concurrent.futures.Executor`) when given."""

    func: Callable[..., Any]
    executor: concurrent.futures.Executor | None = None

    def __post_init__(self) -> None:
        _require_sync(self.func, "AsyncAdapter")
        if self.executor is not None and not isinstance(self.executor, concurrent.futures.Executor):
            raise TypeError(
                "AsyncAdapter(executor=) needs a concurrent.futures.Executor, "
                f"got {type(self.executor).__name__}"
            )

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.executor is None:
            return await run_in_thread(self.func, *args, **kwargs)
        return await ThreadPool.from_executor(self.executor).run(self.func, *args, **kwargs)


@dataclass
class SyncAdapter:
    """`SyncAdapter(async_fn)(*args, **kwargs)` runs the async function to completion from
    sync code (`run_sync`: also inside a running loop, on a helper thread)."""

    func: Callable[..., Awaitable[Any]]

    def __post_init__(self) -> None:
        _require_async(self.func, "SyncAdapter")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return run_sync(self.func(*args, **kwargs))  # type: ignore[arg-type]


def _decorator(
    name: str,
    func: Callable[..., Any] | None,
    pool: Any,
    pool_type: type,
    default_run: Callable[..., Awaitable[Any]],
    for_pickle: bool,
) -> Any:
    if pool is not None and not isinstance(pool, pool_type):
        raise TypeError(f"{name}(pool=) needs a {pool_type.__name__}, got {type(pool).__name__}")

    runner: Any = pool

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        _require_sync(fn, name)

        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            target: Callable[..., Any] = fn
            if for_pickle and _lookup(fn.__module__, fn.__qualname__) is not fn:
                # The module attribute is the wrapper now: send a reference that finds the
                # original through it.
                target = _WrappedRef(fn.__module__, fn.__qualname__)
            if runner is None:
                return await default_run(target, *args, **kwargs)
            return await runner.run(target, *args, **kwargs)

        return wrapper

    return decorate if func is None else decorate(func)


def _lookup(module: str, qualname: str) -> Any:
    obj: Any = sys.modules.get(module)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    return obj


@dataclass(frozen=True)
class _WrappedRef:
    """A picklable reference to the function a decorator wrapped at `module.qualname`."""

    module: str
    qualname: str

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        importlib.import_module(self.module)
        obj = _lookup(self.module, self.qualname)
        return inspect.unwrap(obj)(*args, **kwargs)


@overload
def threadpool(func: F) -> Callable[..., Coroutine[Any, Any, Any]]: ...
@overload
def threadpool(
    func: None = None, *, pool: ThreadPool | None = None
) -> Callable[[F], Callable[..., Coroutine[Any, Any, Any]]]: ...
def threadpool(func: Callable[..., Any] | None = None, *, pool: ThreadPool | None = None) -> Any:
    """Decorator (bare, or `@threadpool(pool=...)`): the sync function becomes async and runs
    on a worker thread of `pool` (default: the library's worker threads)."""
    return _decorator("threadpool", func, pool, ThreadPool, run_in_thread, False)


@overload
def processpool(func: F) -> Callable[..., Coroutine[Any, Any, Any]]: ...
@overload
def processpool(
    func: None = None, *, pool: ProcessPool | None = None
) -> Callable[[F], Callable[..., Coroutine[Any, Any, Any]]]: ...
def processpool(func: Callable[..., Any] | None = None, *, pool: ProcessPool | None = None) -> Any:
    """Decorator (bare, or `@processpool(pool=...)`): the sync function becomes async and runs
    in a worker process of `pool` (default: the pool behind `run_in_process`). Decorate
    module-level functions: the worker finds the original through the module."""
    return _decorator("processpool", func, pool, ProcessPool, run_in_process, True)


class ThreadContext:
    """`async with ThreadContext() as ctx:`: while it is open, any thread (not only the
    library's workers) can call `from_thread.run(...)` / `run_sync(...)` into this loop
    without `token=`. `ctx.loop` is the loop."""

    def __init__(self) -> None:
        self._token: LoopToken | None = None

    @property
    def loop(self) -> Any:
        if self._token is None:
            raise RuntimeError("ThreadContext.loop: the context is not entered")
        return self._token.event_loop

    @property
    def token(self) -> LoopToken | None:
        return self._token

    async def __aenter__(self) -> ThreadContext:
        self._token = current_token()
        _contexts.append(self._token)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None and self._token in _contexts:
            _contexts.reverse()
            _contexts.remove(self._token)
            _contexts.reverse()
        self._token = None
