"""race and first_success: run every awaitable, the first finisher of a given kind wins.

What it owns: `race` (the first awaitable to finish wins, whether it returned or raised) and
`first_success` (the first one to *return* wins; errors are collected while the others keep
running). Both are one implementation, `_first_finisher`: run every awaitable as a child of
one native `TaskGroup` (in `_contender`), let the first child that decides cancel the group's
scope, wait for the rest, then read the outcome. They differ only in what decides
(`_Contest.errors` is None for `race`: an error decides too) and in how an undecided contest
is reported. No state between calls; runs on the event loop thread of the caller.

Invariants:
- Structured: when either returns or raises, every child has finished (the losers were
  cancelled and awaited). The caller's cancel scopes and deadlines reach the children; a
  cancelled caller cancels them, waits for them, then sees its own cancellation.
- Exactly one child decides: the first to set `decided`. Whatever the others return or raise
  afterwards (typically while being cancelled) is dropped.
- A coroutine passed twice runs once. A child cancelled by someone else never decides: for
  `race` only "everyone was cancelled" becomes a `TaskCancelled`; for `first_success` it
  contributes a `TaskCancelled` to the "all failed" group.
- `first_success`'s "all failed" outcome is one `ExceptionGroup` of every error, in argument
  order (the one place a combinator raises a group).

Hot path (budget in the benchmark suite `benches/suite_many.py`, row `race`): per child, one
coroutine frame (`_contender`) around the awaitable and one `tg.spawn`; the decision is two
attribute writes and a `scope.cancel()`, with no task, future or callback per child. `race`
keeps no handles and passes no index (only `first_success` reads them).

Rejected alternatives:
- Two near-copies of the task-group code, one per combinator (what this replaced). Sharing
  costs `race` one coroutine frame per call (`race` awaits `_first_finisher`): about 0.3 us
  of a 64 us race of 3, within the benchmark's noise.
- A shared runner that returns a result object for each combinator to interpret, with the
  handles always kept: 2 us (3 %) slower per race of 3, measured. The outcome is read in
  `_first_finisher` itself instead.
- `asyncio.wait(FIRST_COMPLETED)` and cancelling the pending tasks: the caller's cancel
  scopes would not reach the children, and a done-callback per child costs more than the
  shared decision object.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable
from typing import Any, NoReturn, TypeVar

from .._toolcase_rs import CancelScope, TaskGroup, TaskHandle, current_time
from ._arguments import _check_timeout, _close_unstarted, _coroutines
from ._errors import _CANCELLED, _cancelled, _first_error, _raise

__all__ = ["first_success", "race"]

T = TypeVar("T")


class _Contest:
    """What the children of one `race` or `first_success` share: the decision, once made."""

    __slots__ = ("decided", "error", "errors", "scope", "value")

    def __init__(self, scope: CancelScope, errors: list[Exception | None] | None) -> None:
        self.decided = False  # set once, by the first child to decide; then `scope` is cancelled
        self.value: Any = None
        self.error: BaseException | None = None  # race: the winner raised this
        # None for race (an error decides); first_success: the errors, by position.
        self.errors = errors
        self.scope = scope  # the task group's: cancelling it cancels every other child


async def _contender(aw: Awaitable[Any], index: int, contest: _Contest) -> None:
    try:
        value = await aw
    except Exception as exc:
        errors = contest.errors
        if errors is not None:
            errors[index] = exc  # first_success: skipped, the others keep running
        elif not contest.decided:  # race: an error decides too
            contest.decided = True
            contest.error = exc
            contest.scope.cancel()
        # An error a loser raises once the contest is decided is dropped.
        return
    if not contest.decided:
        contest.decided = True
        contest.value = value
        contest.scope.cancel()


async def _first_finisher(
    aws: tuple[Awaitable[T], ...], timeout: float | None, name: str, collect: bool
) -> T:
    """The implementation of `race` (`collect=False`) and `first_success` (`collect=True`).

    Runs every awaitable as a child of one task group until one decides (race: the first to
    return or raise; first_success: the first to return), cancels and awaits the rest, then
    returns the winner's value, re-raises its error, or raises what an undecided contest
    means for `name` (see the docstrings of `race` and `first_success`).
    """
    if timeout is not None:
        timeout = _check_timeout(timeout, name, aws)
    coros = _coroutines(aws, name)
    if not coros:
        raise ValueError(f"{name}() needs at least one awaitable")
    if len(set(coros)) != len(coros):
        coros = list(dict.fromkeys(coros))
    error: BaseException | None = None
    deadline = math.inf
    handles: list[TaskHandle[Any]] = []
    try:
        async with TaskGroup() as tg:
            scope = tg.cancel_scope
            if timeout is not None:
                deadline = current_time() + max(timeout, 0.0)
                scope.deadline = deadline
            spawn = tg.spawn
            if collect:
                contest = _Contest(scope, [None] * len(coros))
                handles = [spawn(_contender(c, i, contest)) for i, c in enumerate(coros)]
            else:  # the hot path of a budgeted benchmark: no index, no handles kept
                contest = _Contest(scope, None)
                for coro in coros:
                    spawn(_contender(coro, 0, contest))
    except BaseExceptionGroup as group:
        error = _first_error(group)
    except BaseException:
        _close_unstarted(coros)
        raise
    if error is not None:
        _close_unstarted(coros)
        _raise(error)
    if contest.decided:
        if contest.error is not None:
            _raise(contest.error)
        return contest.value  # type: ignore[no-any-return]
    timed_out = timeout is not None and current_time() >= deadline
    if contest.errors is None:
        if timed_out:
            raise TimeoutError(f"race() timed out after {timeout} s")
        raise _cancelled("every awaitable passed to race()")
    _no_success(contest.errors, handles, timeout, timed_out)


def _no_success(
    failures: list[Exception | None],
    handles: list[TaskHandle[Any]],
    timeout: float | None,
    timed_out: bool,
) -> NoReturn:
    """Raise what an undecided `first_success` means: a timeout, or every awaitable failed."""
    errors: list[Exception] = []
    for failure, handle in zip(failures, handles, strict=True):
        if failure is not None:
            errors.append(failure)
        elif handle.state == _CANCELLED and not timed_out:
            errors.append(_cancelled("this awaitable"))
    if timed_out:
        cause = ExceptionGroup("errors before the timeout", errors) if errors else None
        raise TimeoutError(f"first_success() timed out after {timeout} s") from cause
    raise ExceptionGroup(f"all {len(failures)} awaitables passed to first_success() failed", errors)


async def race(*aws: Awaitable[T], timeout: float | None = None) -> T:
    """Return the outcome of the first awaitable to finish; cancel and await the others.

    The first to finish wins whether it returned or raised: its result is returned, or its
    exception re-raised. The losers are cancelled and awaited before `race` returns; errors
    they raise while being cancelled are dropped. A loser cancelled by something else does
    not finish the race.

    Args:
        *aws: at least one awaitable (the same one twice runs once).
        timeout: seconds (None: no limit); a non-positive timeout expires at once, but a
            result available without waiting still wins.

    Raises:
        ValueError: no awaitables, or a NaN timeout.
        TypeError: an argument is not awaitable (every coroutine passed is closed).
        TimeoutError: nothing finished within `timeout` (every awaitable was cancelled and
            awaited).
        TaskCancelled: every awaitable was cancelled by something else.
        asyncio.CancelledError: the caller was cancelled (all cancelled and awaited).
    """
    return await _first_finisher(aws, timeout, "race", False)


async def first_success(*aws: Awaitable[T], timeout: float | None = None) -> T:
    """Return the first result that is not an error; cancel and await the others.

    Awaitables that raise an `Exception` are skipped while the others keep running.

    Args:
        *aws: at least one awaitable (the same one twice runs once).
        timeout: seconds (None: no limit).

    Raises:
        ExceptionGroup: every awaitable failed; the group holds their errors in argument
            order (an awaitable cancelled by something else contributes a `TaskCancelled`).
        TimeoutError: no success within `timeout`; its `__cause__` is an `ExceptionGroup` of
            the errors seen so far, if any.
        ValueError: no awaitables, or a NaN timeout.
        TypeError: an argument is not awaitable (every coroutine passed is closed).
        asyncio.CancelledError: the caller was cancelled (all cancelled and awaited).
    """
    return await _first_finisher(aws, timeout, "first_success", True)
