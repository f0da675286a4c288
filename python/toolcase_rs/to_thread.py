"""Running sync functions in worker threads (AnyIO's `to_thread`).

The worker threads are owned by the library's Rust core; the await suspends on a native future
of the loop and the completion comes back through the loop's port, batched with every other
cross-thread completion. The function runs with a copy of the caller's contextvars.
"""

from __future__ import annotations

import warnings
import weakref
from asyncio import AbstractEventLoop, get_running_loop
from collections.abc import Callable
from typing import Any, TypeVar

from ._toolcase_rs import CapacityLimiter, run_job

__all__ = ["current_default_thread_limiter", "run_sync"]

T = TypeVar("T")

_DEFAULT_TOKENS = 40
_default_limiters: weakref.WeakKeyDictionary[AbstractEventLoop, CapacityLimiter] = (
    weakref.WeakKeyDictionary()
)


def current_default_thread_limiter() -> CapacityLimiter:
    """The capacity limiter that bounds worker threads of the running loop (40 by default).

    One per event loop, as in AnyIO; set `limiter.total_tokens` to change the bound. Shared by
    `to_thread.run_sync` and `run_in_thread` when they are not given a limiter.
    """
    try:
        loop = get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "current_default_thread_limiter() needs a running event loop: call it from async code"
        ) from None
    limiter = _default_limiters.get(loop)
    if limiter is None:
        # Taking it never yields: the job's own await is the checkpoint.
        limiter = CapacityLimiter(_DEFAULT_TOKENS, fast_acquire=True)
        _default_limiters[loop] = limiter
    return limiter


def _check_limiter(limiter: object) -> None:
    if not (hasattr(limiter, "__aenter__") and hasattr(limiter, "__aexit__")):
        raise TypeError(
            "limiter must be a CapacityLimiter (or None for the default thread limiter), "
            f"got {type(limiter).__name__}"
        )


async def run_sync(
    func: Callable[..., T],
    *args: Any,
    abandon_on_cancel: bool = False,
    cancellable: bool | None = None,
    limiter: CapacityLimiter | None = None,
) -> T:
    """Run `func(*args)` in a worker thread and return its result.

    Args:
        func: a sync callable.
        *args: its positional arguments.
        abandon_on_cancel: on cancellation, raise at once and leave the thread to finish on
            its own (its result is dropped). Without it the await waits for `func` to return;
            in both cases the job's `CancelToken` (`current_cancel_token()` in the worker) is
            set, so blocking code that watches it can stop early.
        cancellable: AnyIO's older name of `abandon_on_cancel`.
        limiter: bounds how many jobs run at once (default: `current_default_thread_limiter()`).
    """
    if cancellable is not None:
        warnings.warn(
            "The `cancellable=` keyword argument to `to_thread.run_sync` is deprecated; "
            "use `abandon_on_cancel=` instead",
            DeprecationWarning,
            stacklevel=2,
        )
        abandon_on_cancel = bool(cancellable)
    return await _run(func, args, None, abandon_on_cancel, limiter)


async def _run(
    func: Callable[..., T],
    args: tuple[Any, ...],
    kwargs: dict[str, Any] | None,
    abandon_on_cancel: bool,
    limiter: CapacityLimiter | None,
) -> T:
    """A job on the default worker threads, under `limiter` (shared with `run_in_thread`)."""
    if limiter is None:
        limiter = current_default_thread_limiter()
    else:
        _check_limiter(limiter)
    async with limiter:
        result: T = await run_job(func, args, kwargs, abandon_on_cancel)
        return result
