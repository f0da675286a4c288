"""Regressions: delivering cancellation and deadlines to tasks.

Repros (shared/repros/2026-12-02): delivery_stops_at_first_failed_cancel.py,
uvloop_deadline_rearm_busy_wait.py, swallow_loop_freezes_event_loop.py.
"""

from __future__ import annotations

import asyncio

import pytest

#: Loop iterations given to something that must happen "within a loop iteration or two".
PATIENCE = 10


# --- one failing Task.cancel() -----------------------------------------------------------------


class PickyTask(asyncio.Task):
    """A task whose ``cancel()`` raises when it is named "picky"."""

    def cancel(self, msg=None):
        if self.get_name() == "picky":
            raise RuntimeError("this task refuses cancel()")
        return super().cancel(msg)


# Pins delivery_stops_at_first_failed_cancel.py.
async def test_failing_task_cancel_does_not_stop_delivery_to_the_other_children(tc, task_factory):
    loop = asyncio.get_running_loop()
    reported = []
    previous_handler = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    release = asyncio.Event()
    started = []
    cancelled = []
    cancel_raised = []
    seen = {}

    async def picky():
        started.append("picky")
        await release.wait()  # not cancellable through the group: the test releases it

    async def sleeper(n):
        started.append(n)
        try:
            await release.wait()
        except asyncio.CancelledError:
            cancelled.append(n)
            raise

    try:
        with task_factory(PickyTask):
            async with tc.TaskGroup() as tg:
                tg.start_soon(picky, name="picky")  # first, so it is delivered to first
                for i in range(3):
                    tg.start_soon(sleeper, i, name=f"child{i}")
                while len(started) < 4:
                    await asyncio.sleep(0)
                try:
                    tg.cancel()
                except RuntimeError as exc:
                    cancel_raised.append(exc)
                with tc.CancelScope(shield=True):
                    for _ in range(PATIENCE):
                        if len(cancelled) == 3:
                            break
                        await asyncio.sleep(0)
                    seen["cancelled"] = sorted(cancelled)
                    release.set()  # lets picky (and, if the bug is back, the others) finish
    finally:
        loop.set_exception_handler(previous_handler)
    assert seen["cancelled"] == [0, 1, 2], "delivery stopped at the failing cancel()"
    assert not cancel_raised, f"tg.cancel() raised {cancel_raised[0]!r}"
    errors = [context.get("exception") for context in reported]
    assert any(
        isinstance(exc, RuntimeError) and "refuses cancel()" in str(exc) for exc in errors
    ), reported


# --- deadline timer re-arming -----------------------------------------------------------------

DEADLINES = 50


# Pins uvloop_deadline_rearm_busy_wait.py (the default loop passes today).
async def test_each_expiring_deadline_arms_the_deadline_timer_a_bounded_number_of_times(tc):
    loop = asyncio.get_running_loop()
    original_call_at = loop.call_at
    original_call_later = loop.call_later
    arms = 0
    in_call_later = False

    def is_deadline_timer(callback):
        return type(callback).__name__ == "DeadlineTimer"

    def call_at(when, callback, *args, **kwargs):
        nonlocal arms
        if is_deadline_timer(callback) and not in_call_later:
            arms += 1
        return original_call_at(when, callback, *args, **kwargs)

    def call_later(delay, callback, *args, **kwargs):
        # The stdlib loop's call_later goes through call_at: count such an arm once.
        nonlocal arms, in_call_later
        if is_deadline_timer(callback):
            arms += 1
        in_call_later = True
        try:
            return original_call_later(delay, callback, *args, **kwargs)
        finally:
            in_call_later = False

    loop.call_at = call_at
    loop.call_later = call_later
    caught = []
    try:
        for i in range(DEADLINES):
            # Deadlines off the millisecond grid: uvloop's timers fire up to 1 ms early.
            with tc.move_on_after(0.0034 + i * 1.3e-5) as scope:
                await tc.sleep_forever()
            caught.append(scope.cancelled_caught)
    finally:
        del loop.call_at
        del loop.call_later
    assert all(caught)
    assert arms >= 1, "no DeadlineTimer was armed: this test no longer sees the deadline timer"
    assert arms <= 2 * DEADLINES + 5


# --- a task that swallows its cancellation in a loop ----------------------------------------------

SWALLOWS = 200
MIN_HEARTBEATS = 50

WAITS = {
    "sleep": lambda tc: lambda: tc.sleep(1),
    "checkpoint": lambda tc: tc.checkpoint,
    "lock_acquire": lambda tc: tc.Lock().acquire,
    "event_wait": lambda tc: tc.Event().wait,
    "queue_get": lambda tc: tc.Queue().get,
}


# Pins swallow_loop_freezes_event_loop.py (bounded: the swallower stops after SWALLOWS).
@pytest.mark.parametrize("wait", list(WAITS))
async def test_task_swallowing_cancellation_in_a_loop_does_not_starve_other_tasks(tc, wait):
    heartbeats = 0
    stop = False

    async def heartbeat():
        nonlocal heartbeats
        while not stop:
            await asyncio.sleep(0)
            heartbeats += 1

    beating = asyncio.create_task(heartbeat())
    await asyncio.sleep(0)  # the heartbeat task is running
    make_wait = WAITS[wait](tc)
    swallowed = 0
    start_beats = heartbeats
    with tc.CancelScope() as scope:
        scope.cancel()
        for _ in range(SWALLOWS):
            try:
                await make_wait()
            except asyncio.CancelledError:
                swallowed += 1
    beats = heartbeats - start_beats
    stop = True
    await beating
    assert swallowed == SWALLOWS
    assert beats >= MIN_HEARTBEATS, f"the other task ran {beats} times during {SWALLOWS} swallows"
