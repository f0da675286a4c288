"""Regressions: cancel scopes touched from a thread other than their loop's.

Repros (shared/repros/2026-12-02): xthread_scope_setters_silently_ignored.py,
lost_xthread_cancel_eager_child_scope.py, xthread_cancel_races_scope_entry.py,
foreign_thread_close_tears_down_other_threads_scope.py. The old build kept one runtime per
thread and applied a foreign thread's change to that thread's runtime, so the change never
reached the scope's loop (or tore down the foreign thread's own scopes).

Every thread here acts only after a handshake: the loop thread runs a callback that releases it
once the waiting task is suspended, and the thread reports back with
``loop.call_soon_threadsafe`` so the task resumes after the loop has processed whatever the
thread handed to it.
"""

from __future__ import annotations

import asyncio
import gc
import math
import queue
import sys
import threading
import time

import pytest

#: Checkpoints a shielded body passes through to show that it is not cancelled.
PATIENCE = 10


class OtherThread:
    """Call ``fn()`` once in a new thread while the awaiting task is suspended."""

    def __init__(self, fn):
        self.fn = fn
        self.called = False
        self.error: BaseException | None = None

    async def run(self) -> None:
        """Start the thread, wait (a checkpoint of this task) until the loop has run a callback
        the thread scheduled after ``fn`` returned or raised. A cancellation that ``fn``
        caused may be delivered here."""
        loop = asyncio.get_running_loop()
        suspended = threading.Event()
        done = asyncio.Event()

        def target() -> None:
            try:
                if not suspended.wait(5):
                    raise RuntimeError("the loop never ran the handshake callback")
                self.called = True
                self.fn()
            except BaseException as exc:
                self.error = exc
            finally:
                loop.call_soon_threadsafe(done.set)

        thread = threading.Thread(target=target, name="regression-other-thread")
        loop.call_soon(suspended.set)  # runs once this task is suspended in done.wait()
        thread.start()
        try:
            await done.wait()
        finally:
            thread.join(5)

    def check(self) -> None:
        """Re-raise here what ``fn`` raised in the thread."""
        assert self.called
        if self.error is not None:
            raise self.error


# --- CancelScope.deadline / .shield set from another thread ------------------------------------


def new_scope(tc, initial):
    return tc.CancelScope() if initial == "no_deadline" else tc.move_on_after(30)


INITIAL = ["no_deadline", "far_deadline"]


# Pins xthread_scope_setters_silently_ignored.py ("deadline = past, from a thread").
@pytest.mark.parametrize("initial", INITIAL)
async def test_deadline_moved_into_the_past_from_another_thread_cancels_the_body_at_once(
    tc, initial
):
    loop = asyncio.get_running_loop()
    scope = new_scope(tc, initial)
    new_deadline = loop.time() - 1
    setter = OtherThread(lambda: setattr(scope, "deadline", new_deadline))
    slept_through = False
    start = time.monotonic()
    with scope:
        await setter.run()
        await tc.sleep(5)
        slept_through = True
    elapsed = time.monotonic() - start
    setter.check()
    assert scope.deadline == new_deadline
    assert scope.cancelled_caught
    assert not slept_through
    assert elapsed < 2


# Pins xthread_scope_setters_silently_ignored.py ("deadline = now+0.1, from thread").
@pytest.mark.parametrize("initial", INITIAL)
async def test_deadline_moved_near_from_another_thread_fires(tc, initial):
    loop = asyncio.get_running_loop()
    scope = new_scope(tc, initial)
    setter = OtherThread(lambda: setattr(scope, "deadline", loop.time() + 0.1))
    slept_through = False
    start = time.monotonic()
    with scope:
        await setter.run()
        await tc.sleep(5)
        slept_through = True
    elapsed = time.monotonic() - start
    setter.check()
    assert scope.cancelled_caught
    assert not slept_through
    assert elapsed < 2


# Pins xthread_scope_setters_silently_ignored.py ("shield = True, from a thread").
async def test_shield_set_from_another_thread_protects_the_body_from_a_later_outer_cancel(tc):
    inner_body_completed = False
    with tc.CancelScope() as outer:
        with tc.CancelScope() as inner:
            setter = OtherThread(lambda: setattr(inner, "shield", True))
            await setter.run()
            outer.cancel()
            for _ in range(PATIENCE):
                await tc.checkpoint()
            inner_body_completed = True
        await tc.checkpoint()  # the shield is gone: the outer cancellation lands here
        pytest.fail("the outer cancellation was not delivered after the shielded scope")
    setter.check()
    assert inner.shield is True
    assert inner_body_completed
    assert not inner.cancelled_caught
    assert outer.cancelled_caught


# Pins xthread_scope_setters_silently_ignored.py (invalid value from a thread; a control today).
async def test_nan_deadline_set_from_another_thread_raises_there_and_leaves_deadline(tc):
    with tc.move_on_after(30) as scope:
        before = scope.deadline
        setter = OtherThread(lambda: setattr(scope, "deadline", math.nan))
        await setter.run()
        assert isinstance(setter.error, ValueError)
        assert scope.deadline == before
        await tc.checkpoint()
    assert not scope.cancel_called
    assert not scope.cancelled_caught


# --- cancel() from another thread ------------------------------------------------------------


async def run_child_cancelled_from_thread(tc, *, eager, then_loop_cancel):
    """A group child enters a scope (in its eager first step when ``eager``) and sleeps 5 s in
    it; another thread cancels the scope, then (``then_loop_cancel``) the loop thread does."""
    box = {}

    async def child():
        start = time.monotonic()
        with tc.CancelScope() as scope:
            box["scope"] = scope
            await tc.sleep(5)
            box["slept_through"] = True
        box["caught"] = scope.cancelled_caught
        box["elapsed"] = time.monotonic() - start

    async with tc.TaskGroup(eager=eager) as tg:
        tg.start_soon(child)
        while "scope" not in box:  # already there when eager: the first step ran in start_soon
            await asyncio.sleep(0)
        canceller = OtherThread(lambda: box["scope"].cancel())
        await canceller.run()
        if then_loop_cancel:
            box["scope"].cancel()
    canceller.check()
    return box


# Pins lost_xthread_cancel_eager_child_scope.py (eager=True; eager=False is the control).
@pytest.mark.parametrize("eager", [True, False], ids=["eager_first_step", "control_not_eager"])
async def test_cross_thread_cancel_reaches_scope_entered_in_eager_first_step(tc, eager):
    box = await run_child_cancelled_from_thread(tc, eager=eager, then_loop_cancel=False)
    assert box["caught"] is True
    assert "slept_through" not in box
    assert box["elapsed"] < 2


# Pins lost_xthread_cancel_eager_child_scope.py ("then loop-thread cancel=True").
@pytest.mark.parametrize("eager", [True, False], ids=["eager_first_step", "control_not_eager"])
async def test_loop_thread_cancel_after_cross_thread_cancel_reaches_eager_first_step_scope(
    tc, eager
):
    box = await run_child_cancelled_from_thread(tc, eager=eager, then_loop_cancel=True)
    assert box["caught"] is True
    assert "slept_through" not in box
    assert box["elapsed"] < 2


# Pins xthread_cancel_races_scope_entry.py (the forced variant: loop.time() lets the thread in).
def test_cross_thread_cancel_during_scope_entry_cancels_body_at_first_checkpoint(tc):
    in_time = threading.Event()
    cancel_returned = threading.Event()

    class SlowClockLoop(asyncio.SelectorEventLoop):
        """The first ``time()`` call after ``slow`` is set (the one inside the scope's
        ``__enter__``) releases the GIL until the other thread's ``cancel()`` has returned."""

        slow = False

        def time(self) -> float:
            if self.slow:
                self.slow = False
                in_time.set()
                cancel_returned.wait(1.0)  # bounded: a cancel() that must wait for enter()
            return super().time()

    result = {}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        scope = tc.move_on_after(30)

        def other() -> None:
            result["raced"] = in_time.wait(5)
            try:
                scope.cancel()
            finally:
                cancel_returned.set()

        thread = threading.Thread(target=other, name="regression-racing-cancel")
        thread.start()
        loop.slow = True
        start = time.monotonic()
        try:
            with scope:
                await tc.sleep(5)  # cancel() returned before this checkpoint
                result["slept_through"] = True
        finally:
            thread.join(5)
        result["elapsed"] = time.monotonic() - start
        result["caught"] = scope.cancelled_caught
        result["cancel_called"] = scope.cancel_called

    loop = SlowClockLoop()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert result["raced"], "the scope's entry never called loop.time(): the race was not set up"
    assert result["cancel_called"]
    assert result["caught"] is True
    assert "slept_through" not in result
    assert result["elapsed"] < 2


# Pins foreign_thread_close_tears_down_other_threads_scope.py.
def test_closing_in_thread_b_a_coroutine_suspended_in_thread_a_scope_keeps_b_scopes_working(tc):
    handoff: queue.Queue = queue.Queue()
    release_a = threading.Event()
    result = {}
    unraisable = []

    def thread_a() -> None:
        async def inner(fut):
            with tc.CancelScope():
                await fut

        async def main_a() -> None:
            fut = asyncio.get_running_loop().create_future()
            coro = inner(fut)
            coro.send(None)  # runs to `await fut`: the scope is entered in main_a's task
            handoff.put(coro)
            del coro
            release_a.wait(10)

        try:
            asyncio.run(main_a())
        except BaseException as exc:
            result["a"] = f"{type(exc).__name__}: {exc}"

    def thread_b() -> None:
        async def main_b() -> None:
            with tc.CancelScope() as outer_b:
                coro = handoff.get(timeout=10)
                del coro  # the last reference: the coroutine is closed here, in thread B
                gc.collect()
                await asyncio.sleep(0)
                start = time.monotonic()
                with tc.move_on_after(0.01) as inner_b:
                    await tc.sleep(5)
                result["inner_b_caught"] = inner_b.cancelled_caught
                result["inner_b_elapsed"] = time.monotonic() - start
                await tc.checkpoint()
            result["outer_b_caught"] = outer_b.cancelled_caught

        try:
            asyncio.run(main_b())
            result["b"] = "exited normally"
        except BaseException as exc:
            result["b"] = f"{type(exc).__name__}: {exc}"

    # Closing A's scope from B may legitimately complain; this test is only about B's scopes.
    previous_hook = sys.unraisablehook
    sys.unraisablehook = unraisable.append
    try:
        a = threading.Thread(target=thread_a, name="regression-thread-a")
        b = threading.Thread(target=thread_b, name="regression-thread-b")
        a.start()
        b.start()
        b.join(10)
    finally:
        release_a.set()
        a.join(10)
        sys.unraisablehook = previous_hook
        unraisable.clear()
    assert result.get("b") == "exited normally", result
    assert result["inner_b_caught"] is True, result
    assert result["inner_b_elapsed"] < 2, result
    assert result["outer_b_caught"] is False, result
