"""retry: call an async function again after a failure, with exponential backoff.

What it owns: `retry` and the checks of its arguments. Plain Python; no state between calls;
runs on the event loop thread of the caller, in the caller's own task (no child tasks).

Invariants:
- Cancellation is never retried: `CancelledError` and other `BaseException`s that are not
  `Exception`s propagate at once, and `retry_on` may not name them.
- Deadlines are re-read before every sleep: a sleep never outlasts the caller's effective
  deadline (the last error is raised instead), and every sleep is a checkpoint, so cancelling
  the caller interrupts it. A caller whose scope is already cancelled sees that cancellation,
  not the error.

Rejected alternative: reading the deadline once up front (lionagi's `retry`): a deadline set
or moved by an outer scope while the attempts run would be missed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from .._toolcase_rs import checkpoint, current_effective_deadline, current_time, sleep as _sleep
from ._arguments import _check_async_callable
from ._errors import _CancelledError

__all__ = ["retry"]

T = TypeVar("T")


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
    _check_async_callable(fn, "retry")
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
