"""Which error a combinator raises, and how: shared by gather, race, map_async and the stream.

What it owns: the rule that turns a failed task group into the one error a combinator raises
(`_first_error`), raising a captured error without chaining (`_raise`), and the `TaskCancelled`
that stands for a child cancelled by someone else (`_cancelled`). Stateless; runs on the event
loop thread of the caller (or of a `CompletionStream`'s helper task).

Invariants:
- The first error, in completion order, is raised *itself*, not wrapped in a group (like
  `asyncio.gather` and lionagi's unwrapping); a `KeyboardInterrupt`/`SystemExit` among the
  errors wins over ordinary exceptions. Errors that other children raise while being cancelled
  because of the first one are dropped: they are consequences of it. (`first_success` is the
  exception: its "all failed" outcome is one `ExceptionGroup` of every error, in input order;
  that is built in `_race`.)
- Cancellation is never an "error": `CancelledError` always propagates, and a child cancelled
  by someone else (a native `task.cancel()`) is reported as `TaskCancelled`.

Rejected alternative: raising a `BaseExceptionGroup` from `gather`/`map_async`. Callers of a
gather expect the error itself (asyncio, lionagi); a task group is there for those who want
every error.
"""

from __future__ import annotations

import asyncio
from typing import NoReturn

from .._toolcase_rs import TaskCancelled

_CancelledError = asyncio.CancelledError
_CANCELLED = "cancelled"  # TaskState value of a child cancelled by someone else


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error a combinator raises for a failed task group: see the module note."""
    errors = group.exceptions  # completion order (the group records them as they happen)
    for error in errors:
        if not isinstance(error, Exception | _CancelledError):
            return error  # KeyboardInterrupt, SystemExit: they win
    for error in errors:
        if not isinstance(error, _CancelledError):
            return error
    return group


def _raise(error: BaseException) -> NoReturn:
    # Raise an error captured earlier, outside any `except` block, so Python does not chain the
    # group (or anything else) as its __context__; drop the frame's reference afterwards.
    try:
        raise error
    finally:
        del error


def _cancelled(what: str) -> TaskCancelled:
    return TaskCancelled(f"{what} was cancelled (by something other than this combinator)")
