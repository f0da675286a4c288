"""Argument checking for the combinators, and closing the coroutines they will never run.

What it owns: turning the awaitables a combinator is given into coroutine objects a task can
run (`_coroutines`), the `limit` and `timeout` checks every combinator shares, and
`_close_unstarted`, which keeps the promise that no coroutine passed in is left un-awaited:
bad arguments close every coroutine already passed, so none warns "coroutine was never
awaited". Stateless; runs on the caller's thread (the event loop thread, or wherever a
`CompletionStream` is built), and touches only the objects it is handed.

Invariants:
- A coroutine that has started (running or suspended) belongs to a task and is never closed
  here; only coroutines still in `CORO_CREATED` are.
- Every error raised here is raised before any child starts, after closing every coroutine
  passed (and every wrapper made so far).

Rejected alternative: wrapping every awaitable in a small coroutine. It costs a frame per
child, and the wrapper may never start (then the awaitable inside it is "never awaited").
Coroutines are used as they are; only other awaitables (futures, objects with `__await__`) get
the `_await` wrapper.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Awaitable, Coroutine, Iterable
from types import CoroutineType
from typing import Any, TypeVar, cast

T = TypeVar("T")


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


def _check_async_callable(fn: object, name: str) -> None:
    """`fn` must be something to call (an async function), not a coroutine object.

    Raises:
        TypeError: `fn` is a coroutine object (it is closed first, so it does not also warn
            "never awaited"), or not callable.
    """
    if inspect.iscoroutine(fn):
        fn.close()
        raise TypeError(
            f"{name}() expected an async function, got the coroutine object {fn!r}; pass the "
            f"function itself ({name}(fn, ...)), not the result of calling it"
        )
    if not callable(fn):
        raise TypeError(f"{name}(): fn must be callable, not {type(fn).__name__!r}")


def _not_awaitable(fn: object, result: object, name: str) -> TypeError:
    """The error for a function that returned something that cannot be awaited."""
    return TypeError(
        f"{name}(): {getattr(fn, '__qualname__', repr(fn))} returned {type(result).__name__!r}, "
        "which is not awaitable; pass an async function (`async def`), or wrap a plain "
        "function (for example in an async def that calls it)"
    )


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
