"""Regressions: unusual event loops, and loops that end with work still pending.

Repros (shared/repros/2026-12-02): loop_without_add_reader_panics.py,
abandoned_tasks_kept_alive_by_runtime.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
import threading
import warnings
import weakref

import pytest

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is optional on exotic platforms
    uvloop = None

PATIENCE = 10


# --- a loop without add_reader -----------------------------------------------------------------


class NoReaderLoop(asyncio.SelectorEventLoop):
    """``add_reader`` raises ``NotImplementedError``, as ``AbstractEventLoop``'s default does."""

    def add_reader(self, fd, callback, *args):
        raise NotImplementedError


def run_on_no_reader_loop(main):
    with asyncio.Runner(loop_factory=NoReaderLoop) as runner:
        return runner.run(asyncio.wait_for(main(), 5))


async def parked_waiter(event):
    """A task waiting in ``event.wait()``, returned once it is parked there (or has failed)."""

    async def wait():
        return await event.wait()

    waiter = asyncio.create_task(wait())
    for _ in range(PATIENCE):
        if waiter.done() or event.statistics().tasks_waiting == 1:
            break
        await asyncio.sleep(0)
    return waiter


# Pins loop_without_add_reader_panics.py (set() from another task).
def test_event_wait_on_loop_without_add_reader_is_woken_by_set_from_another_task(tc):
    async def main():
        event = tc.Event()
        waiter = await parked_waiter(event)

        async def setter():
            event.set()

        await asyncio.create_task(setter())
        return await waiter

    assert run_on_no_reader_loop(main) is True


# Pins loop_without_add_reader_panics.py (set() from another thread).
def test_event_wait_on_loop_without_add_reader_is_woken_by_set_from_another_thread(tc):
    thread_errors = []

    async def main():
        loop = asyncio.get_running_loop()
        event = tc.Event()
        waiter = await parked_waiter(event)
        loop_waiting = threading.Event()

        def setter():
            try:
                if loop_waiting.wait(5):
                    event.set()
            except BaseException as exc:
                thread_errors.append(exc)

        thread = threading.Thread(target=setter, name="regression-event-setter")
        loop.call_soon(loop_waiting.set)  # runs once this task is suspended below
        thread.start()
        try:
            return await waiter
        finally:
            loop_waiting.set()  # the waiter may have failed before this task ever suspended
            thread.join(5)

    assert run_on_no_reader_loop(main) is True
    assert not thread_errors


# --- tasks abandoned on a closed loop ------------------------------------------------------------


async def parked_plain(tc):
    await asyncio.Event().wait()


async def parked_in_cancel_scope(tc):
    with tc.CancelScope():
        await asyncio.Event().wait()


async def parked_holding_lock(tc):
    lock = tc.Lock()
    async with lock:
        await asyncio.Event().wait()


LOOP_FACTORIES = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop if uvloop is not None else None,
}


@contextlib.contextmanager
def quiet_abandonment():
    """Silence, for the block only, what abandoning a pending task makes asyncio say: the
    "Task was destroyed but it is pending!" log, warnings, and errors raised while the garbage
    collector closes the task's coroutine (whatever closing a scope without its loop reports)."""
    logger = logging.getLogger("asyncio")
    was_disabled = logger.disabled
    logger.disabled = True
    previous_hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        sys.unraisablehook = previous_hook
        logger.disabled = was_disabled


def abandon_task_on_closed_loop(tc, loop_factory, body):
    """Run ``body`` as a task until it is parked, then close its loop without cancelling it.
    Returns weak references to the loop and to the task."""
    loop = loop_factory()
    refs = []

    async def main():
        task = asyncio.ensure_future(body(tc))
        refs.append(weakref.ref(task))
        for _ in range(3):
            await asyncio.sleep(0)
        assert not task.done()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()  # the parked task is neither finished nor cancelled
    return weakref.ref(loop), refs[0]


# Pins abandoned_tasks_kept_alive_by_runtime.py (parked_plain is the control).
@pytest.mark.parametrize("loop_name", list(LOOP_FACTORIES))
@pytest.mark.parametrize("body", [parked_plain, parked_in_cancel_scope, parked_holding_lock])
def test_task_abandoned_pending_on_closed_loop_and_the_loop_are_not_kept_alive(tc, loop_name, body):
    if LOOP_FACTORIES[loop_name] is None:
        pytest.skip("uvloop is not installed")
    with quiet_abandonment():
        loop_ref, task_ref = abandon_task_on_closed_loop(tc, LOOP_FACTORIES[loop_name], body)
        for _ in range(3):
            gc.collect()
    assert task_ref() is None, "the abandoned task is still alive"
    assert loop_ref() is None, "the closed loop is still alive"
