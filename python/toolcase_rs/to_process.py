"""Running functions in worker processes (AnyIO's `to_process`)."""

from __future__ import annotations

import os
import weakref
from asyncio import AbstractEventLoop, get_running_loop
from collections.abc import Callable
from typing import Any, TypeVar

from ._processes import _to_process_run_sync
from ._toolcase_rs import CapacityLimiter

__all__ = ["current_default_process_limiter", "run_sync"]

T = TypeVar("T")

_limiters: weakref.WeakKeyDictionary[AbstractEventLoop, CapacityLimiter] = (
    weakref.WeakKeyDictionary()
)


def current_default_process_limiter() -> CapacityLimiter:
    """The limiter that bounds process jobs of the running loop (the CPU count), as in AnyIO."""
    try:
        loop = get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "current_default_process_limiter() needs a running event loop: call it from async code"
        ) from None
    limiter = _limiters.get(loop)
    if limiter is None:
        limiter = CapacityLimiter(os.cpu_count() or 1, fast_acquire=True)
        _limiters[loop] = limiter
    return limiter


async def run_sync(
    func: Callable[..., T],
    *args: Any,
    cancellable: bool = False,
    limiter: CapacityLimiter | None = None,
) -> T:
    """Run `func(*args)` in a worker process of the default pool and return its result.

    Without `cancellable` the job is shielded: cancelling the caller waits for it to finish
    (and delivers the cancellation after). With it, cancelling kills the worker process and
    raises at once.
    """
    if limiter is None:
        limiter = current_default_process_limiter()
    result: T = await _to_process_run_sync(func, *args, cancellable=cancellable, limiter=limiter)
    return result
