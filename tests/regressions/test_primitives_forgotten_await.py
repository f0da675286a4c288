"""Regression: an awaitable of ours dropped without ``await`` is silent.

Repro: /work/shared/repros/2026-12-02/forgotten_await_is_silent.py. ``tc.sleep(0.2)``,
``lock.acquire()``, ``q.put(1)``, ``ev.wait()`` ... without ``await`` do nothing, and nothing
says so; asyncio's own coroutines warn "coroutine '...' was never awaited". An awaitable that
would have done work and is dropped unawaited must emit a ``RuntimeWarning`` that says "was
never awaited" and names the operation, and (as now) must not have done anything.

The warning is raised in a finaliser: under ``filterwarnings = error`` it would become an
unraisable exception, so every drop happens inside ``warnings.catch_warnings(record=True)``
and no such object outlives that block.
"""

from __future__ import annotations

import asyncio
import gc
import warnings

import pytest

# (id, operation name the warning must contain, factory of the dropped awaitable)
DROPPED = [
    ("sleep", "sleep", lambda tc: tc.sleep(0.2)),
    ("checkpoint", "checkpoint", lambda tc: tc.checkpoint()),
    ("Lock.acquire", "acquire", lambda tc: tc.Lock().acquire()),
    ("Semaphore.acquire", "acquire", lambda tc: tc.Semaphore(1).acquire()),
    ("CapacityLimiter.acquire", "acquire", lambda tc: tc.CapacityLimiter(1).acquire()),
    ("Event.wait", "wait", lambda tc: tc.Event().wait()),
    ("Queue.put", "put", lambda tc: tc.Queue().put(1)),
    ("Queue.get", "get", lambda tc: tc.Queue().get()),
    ("RateLimiter.acquire", "acquire", lambda tc: tc.RateLimiter(10).acquire()),
]


def _drop(make) -> list[warnings.WarningMessage]:
    """Create an awaitable with ``make()``, drop it unawaited; the warnings that emitted."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        awaitable = make()
        del awaitable
        gc.collect()
    return caught


def _never_awaited(caught: list[warnings.WarningMessage]) -> list[str]:
    return [
        str(w.message)
        for w in caught
        if issubclass(w.category, RuntimeWarning) and "was never awaited" in str(w.message)
    ]


# Pins forgotten_await_is_silent.py: each dropped awaitable warns, naming its operation.
@pytest.mark.parametrize(
    ("operation", "make"),
    [(name, make) for _, name, make in DROPPED],
    ids=[label for label, _, _ in DROPPED],
)
async def test_dropped_unawaited_awaitable_warns_never_awaited_naming_the_operation(
    tc, operation, make
):
    messages = _never_awaited(_drop(lambda: make(tc)))
    assert messages, "dropped without await, and no 'was never awaited' RuntimeWarning"
    assert any(operation in m for m in messages), messages


# Control for forgotten_await_is_silent.py: asyncio.sleep() dropped unawaited warns.
async def test_dropped_asyncio_sleep_warns_never_awaited_control():
    """Passes on the old build too: it shows the capture works."""
    messages = _never_awaited(_drop(lambda: asyncio.sleep(0.2)))
    assert any("sleep" in m for m in messages), messages


# Pins forgotten_await_is_silent.py: a dropped awaitable did nothing (a guard for the fix).
async def test_dropped_unawaited_awaitables_do_nothing(tc):
    """No lock taken, no item put or taken, no permit or token used, no waiter left registered.
    Passes on the old build: it keeps the fix (a warning) from doing work at drop time."""
    lock = tc.Lock()
    sem = tc.Semaphore(1)
    limiter = tc.CapacityLimiter(1)
    event = tc.Event()
    q = tc.Queue()
    full = tc.Queue()
    full.put_nowait("kept")
    for make in (
        lock.acquire,
        sem.acquire,
        limiter.acquire,
        event.wait,
        lambda: q.put(1),
        q.get,
        full.get,
    ):
        _drop(make)
    assert not lock.locked()
    assert lock.statistics().tasks_waiting == 0
    assert sem.value == 1
    assert sem.statistics().tasks_waiting == 0
    assert limiter.borrowed_tokens == 0
    assert event.statistics().tasks_waiting == 0
    assert q.qsize() == 0
    assert q.statistics().tasks_waiting_receive == 0
    assert full.qsize() == 1
    assert full.get_nowait() == "kept"


# Pins forgotten_await_is_silent.py: a dropped RateLimiter.acquire() keeps no reservation.
async def test_dropped_unawaited_rate_limiter_acquire_uses_no_slot(tc):
    """The old build reserves at the call, and keeps the slot if the acquire is admitted at once."""
    # One token a second, burst 2: the dropped acquire is surely admitted at once, and if it
    # kept its token the second of the next two waits about a second.
    rl = tc.RateLimiter(1, burst=2)
    _drop(rl.acquire)
    assert rl.statistics().tasks_waiting == 0
    with tc.move_on_after(0.5) as scope:
        await rl.acquire()
        await rl.acquire()
    assert not scope.cancelled_caught, "the dropped acquire used one of the burst's tokens"
