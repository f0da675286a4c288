"""Small helpers of the public API that are plain compositions of the native core.

Nothing here is on a hot path; each function is a few lines over asyncio or the Rust
`CancelScope` / `TaskGroup`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from ._toolcase_rs import CancelScope, TaskGroup

__all__ = [
    "create_task_group",
    "current_task",
    "effective_deadline",
    "get_cancelled_exc_class",
    "is_cancelled",
    "run",
    "shield",
]

T = TypeVar("T")


def create_task_group(*, name: object = None, eager: bool = False) -> TaskGroup:
    """Create a `TaskGroup` (AnyIO's spelling); use it with `async with`."""
    return TaskGroup(name=name, eager=eager)


async def shield(awaitable: Awaitable[T]) -> T:
    """Await `awaitable` protected from cancellation coming from outside.

    The awaitable runs inside `CancelScope(shield=True)`: cancelling an enclosing scope or task
    group does not interrupt it (a native `Task.cancel()` still does). Once it finishes, a
    pending outer cancellation is delivered at the caller's next checkpoint.
    """
    with CancelScope(shield=True):
        return await awaitable
    # A shielding scope nobody cancels never swallows anything.
    raise AssertionError("unreachable")


def get_cancelled_exc_class() -> type[BaseException]:
    """The exception class used for cancellation: `asyncio.CancelledError`."""
    return asyncio.CancelledError


def is_cancelled(exc: BaseException) -> bool:
    """True if `exc` is a cancellation (`asyncio.CancelledError`)."""
    return isinstance(exc, asyncio.CancelledError)


def current_task() -> asyncio.Task[Any] | None:
    """The running `asyncio.Task`, or None outside one (also when no loop runs)."""
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None


def effective_deadline() -> float:
    """Alias of `current_effective_deadline()`."""
    from ._toolcase_rs import current_effective_deadline

    return current_effective_deadline()


def run(
    main: Callable[..., Coroutine[Any, Any, T]],
    *args: Any,
    loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
) -> T:
    """Run `main(*args)` on a new event loop and return its result.

    Args:
        main: an async function.
        *args: its positional arguments.
        loop_factory: makes the loop (for example `uvloop.new_event_loop`); default asyncio's.

    Raises:
        RuntimeError: called while an event loop is already running in this thread (use
            `await main(*args)` there instead).
        TypeError: `main` is a coroutine object rather than an async function.
    """
    if asyncio.iscoroutine(main):
        main.close()  # it would never run: no "never awaited" warning on top of the error
        raise TypeError(
            "run() expects an async function and its arguments, got a coroutine object; "
            "pass the function itself: run(main, *args)"
        )
    if asyncio._get_running_loop() is not None:
        raise RuntimeError(
            "run() cannot be called from a running event loop; inside async code, await the "
            "function instead: `await main(*args)`"
        )
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(main(*args))
