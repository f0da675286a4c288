"""Shared machinery for the combinators of spec section 3 (docs/many-api.md).

What lives here (exposed as fixtures, so test modules import nothing from here):

* ``leftover_tasks()``: the tasks other than the current one that are not done. Every
  combinator is structured, so after it returns or raises this must be empty.
* ``Gauge``: an instrumented in-flight counter (``async with gauge:``) with the maximum seen,
  for "``limit`` is never exceeded".
* ``Script``: children whose completion order the test dictates with events, recording who
  started, finished, and observed cancellation, so order comes from events, never from sleeps.
* ``loop_errors()``: what reaches the loop's exception handler, such as "Task exception was
  never retrieved" (cpython #99933); it must stay empty.
* ``autojump``: on the fake-clock loop, a background task that moves the clock to the next
  scheduled timer whenever the loop would otherwise sleep (trio's autojump clock), so deadline
  tests run in no wall-clock time.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest


def _leftover_tasks() -> set[asyncio.Task[Any]]:
    current = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t is not current and not t.done()}


@pytest.fixture
def leftover_tasks() -> Callable[[], set[asyncio.Task[Any]]]:
    """``leftover_tasks()``: the not-done tasks other than the current one."""
    return _leftover_tasks


class Gauge:
    """Counts how many holders are inside ``async with gauge:`` now, and the most ever."""

    def __init__(self) -> None:
        self.now = 0
        self.max = 0
        self.entered = 0

    async def __aenter__(self) -> Gauge:
        self.now += 1
        self.entered += 1
        self.max = max(self.max, self.now)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.now -= 1


@pytest.fixture
def gauge() -> Gauge:
    return Gauge()


class Script:
    """Children that finish when the test says so, and a record of what happened to each.

    ``script.child(name, value=..., error=...)`` is a coroutine that records ``started``,
    waits for ``script.release(name)``, then returns ``value`` or raises ``error``. A child
    cancelled while waiting records ``cancelled`` and re-raises.
    """

    def __init__(self) -> None:
        self.events: dict[str, asyncio.Event] = {}
        self.started: list[str] = []
        self.finished: list[str] = []
        self.cancelled: list[str] = []
        self.tasks: dict[str, asyncio.Task[Any]] = {}  # the task each child ran in

    def _event(self, name: str) -> asyncio.Event:
        return self.events.setdefault(name, asyncio.Event())

    async def child(self, name: str, value: object = None, error: BaseException | None = None):
        event = self._event(name)
        self.started.append(name)
        task = asyncio.current_task()
        assert task is not None
        self.tasks[name] = task
        try:
            await event.wait()
        except asyncio.CancelledError:
            self.cancelled.append(name)
            raise
        self.finished.append(name)
        if error is not None:
            raise error
        return name if value is None else value

    def release(self, *names: str) -> None:
        for name in names:
            self._event(name).set()

    async def until_started(self, *names: str, patience: int = 50) -> None:
        """Yield to the loop until every named child has started."""
        for _ in range(patience):
            if all(n in self.started for n in names):
                return
            await asyncio.sleep(0)
        pytest.fail(f"children {names} did not start (started: {self.started})")


@pytest.fixture
def script() -> Script:
    return Script()


@contextlib.contextmanager
def _loop_errors() -> Iterator[list[dict[str, Any]]]:
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        yield errors
        gc.collect()  # "Task exception was never retrieved" is reported when a task is freed
    finally:
        loop.set_exception_handler(previous)


@pytest.fixture
def loop_errors() -> Callable[[], contextlib.AbstractContextManager[list[dict[str, Any]]]]:
    """``with loop_errors() as errors:`` collects what reaches the loop's exception handler
    (for instance "Task exception was never retrieved"), after a final ``gc.collect()``."""
    return _loop_errors


@contextlib.asynccontextmanager
async def _autojump() -> AsyncIterator[asyncio.AbstractEventLoop]:
    loop = asyncio.get_running_loop()
    assert hasattr(loop, "advance"), "autojump needs the fake_clock marker"

    async def drive() -> None:
        while True:
            # Let every ready callback run first: only jump when the loop would sleep.
            for _ in range(5):
                await asyncio.sleep(0)
            scheduled = [h for h in loop._scheduled if not h.cancelled()]  # type: ignore[attr-defined]
            if scheduled:
                when = min(h.when() for h in scheduled)
                if when > loop.time():
                    loop.advance(when - loop.time())  # type: ignore[attr-defined]

    driver = asyncio.create_task(drive())
    try:
        yield loop
    finally:
        driver.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await driver


@pytest.fixture
def autojump() -> Callable[[], contextlib.AbstractAsyncContextManager[asyncio.AbstractEventLoop]]:
    """``async with autojump() as loop:`` jumps the fake clock to each next timer."""
    return _autojump
