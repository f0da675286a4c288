"""Regression: bad arguments the old build accepted silently.

Repro: /work/shared/repros/2026-12-02/bad_input_accepted_silently.py. docs/sync-api.md
("Misuse"): ``ValueError`` for bad counts, ``TypeError`` for wrong types. The old build accepts
``Queue(True)``, ``Condition.notify(-1 / 1.5 / True)``, ``Barrier.wait(timeout='soon' / nan)``,
reports ``notify(None)`` as "'<' not supported", and a cross-thread ``scope.deadline = x``
that raises still changes the deadline.
"""

from __future__ import annotations

import math
import threading

import pytest


# Pins bad_input_accepted_silently.py: Queue(True) is a TypeError.
def test_queue_rejects_a_bool_maxsize(tc):
    """Semaphore, CapacityLimiter and Barrier already reject bools; the old Queue took True as 1."""
    with pytest.raises(TypeError, match=r"\S"):
        tc.Queue(True)


# Control for bad_input_accepted_silently.py: Semaphore(True) is already a TypeError.
def test_semaphore_rejects_a_bool_initial_value_control(tc):
    with pytest.raises(TypeError, match=r"\S"):
        tc.Semaphore(True)


# Pins bad_input_accepted_silently.py: Condition.notify(-1) is a ValueError.
async def test_condition_notify_rejects_a_negative_count(tc):
    cond = tc.Condition()
    async with cond:
        with pytest.raises(ValueError, match=r"\S"):
            cond.notify(-1)


# Pins bad_input_accepted_silently.py: notify(1.5 / True / None) is a clear TypeError.
@pytest.mark.parametrize("n", [1.5, True, None], ids=["float", "bool", "None"])
async def test_condition_notify_rejects_a_non_int_count_with_a_clear_message(tc, n):
    """The message says what ``n`` must be, not "'<' not supported between ..."."""
    cond = tc.Condition()
    async with cond:
        with pytest.raises(TypeError) as info:
            cond.notify(n)
    message = str(info.value)
    assert "not supported between" not in message, message
    assert "int" in message, message


# Pins bad_input_accepted_silently.py: Barrier(1).wait(timeout='soon') is a TypeError.
async def test_barrier_wait_rejects_a_non_number_timeout(tc):
    """Checked even though the wait completes at once (one party)."""
    barrier = tc.Barrier(1)
    with pytest.raises(TypeError, match=r"\S"):
        await barrier.wait(timeout="soon")


# Pins bad_input_accepted_silently.py: Barrier(1).wait(timeout=nan) is a ValueError.
async def test_barrier_wait_rejects_a_nan_timeout(tc):
    barrier = tc.Barrier(1)
    with pytest.raises(ValueError, match=r"\S"):
        await barrier.wait(timeout=math.nan)


# Pins bad_input_accepted_silently.py: a cross-thread deadline setter that raises changes nothing.
async def test_failed_cross_thread_deadline_assignment_leaves_the_deadline_unchanged(tc):
    """``scope.deadline = 123.0`` from another thread on an active scope: if it raises,
    ``.deadline`` reads what it did before (the old build raises RuntimeError and stores 123.0
    anyway)."""
    with tc.CancelScope() as scope:
        before = scope.deadline
        errors: list[BaseException] = []

        def other() -> None:
            try:
                scope.deadline = 123.0
            except Exception as exc:
                errors.append(exc)

        thread = threading.Thread(target=other)
        thread.start()
        thread.join(10)
        assert not thread.is_alive()
        after = scope.deadline
    if errors:
        assert after == before, f"the setter raised {errors[0]!r} yet .deadline is now {after}"
