"""Regression: ``Queue.close()`` racing a putter that was granted a buffer slot but has not run.

Repro: /work/shared/repros/2026-12-02/queue_close_strands_granted_put.py. ``Queue(maxsize=1)``
is full and a putter waits; a consumer takes the buffered item (which grants the putter the
freed slot) and waits for the next one; ``close()`` runs before the putter does. The old build
lets that ``put()`` return OK after the consumer was already ended with ``EndOfStream``: the
item sits in the closed queue and nobody receives it.

The order of events comes from the loop's FIFO ready queue: the consumer's first step (take
"a", grant the putter, wait again) runs in one loop iteration, the test's ``sleep(0)`` resumes
right after it, and the putter's wake-up, scheduled during the consumer's step, runs later.
"""

from __future__ import annotations

import asyncio

import pytest


@pytest.fixture
def Queue(tc):
    return tc.Queue


async def _close_while_granted_put_pending(tc, Queue, yield_loop):
    """Run the repro's scenario; returns (put outcome, what the consumer got, qsize)."""
    q = Queue(maxsize=1)
    q.put_nowait("a")
    got: list[object] = []

    async def consumer() -> None:
        async for item in q:
            got.append(item)

    putter = asyncio.create_task(q.put("b"))
    for _ in range(10):
        await asyncio.sleep(0)
        if q.statistics().tasks_waiting_send == 1:
            break
    assert q.statistics().tasks_waiting_send == 1, "setup: the putter should be parked"
    consuming = asyncio.create_task(consumer())
    await asyncio.sleep(0)  # the consumer's first step runs: it takes "a" and waits again
    assert got[:1] == ["a"], "setup: the consumer should have taken the buffered item"
    q.close()
    put_outcome: object
    async with asyncio.timeout(10):
        try:
            await putter
        except tc.ClosedResourceError as exc:
            put_outcome = exc
        else:
            put_outcome = "ok"
        await consuming
    await yield_loop()
    return put_outcome, got, q.qsize()


# Pins queue_close_strands_granted_put.py (the invariant).
async def test_close_never_lets_a_put_succeed_for_an_item_nobody_receives(tc, Queue, yield_loop):
    """No put() returns OK for an item nobody can receive: the put raised ClosedResourceError, or
    the consumer received the item before its iteration ended; nothing is left stranded."""
    put_outcome, got, left = await _close_while_granted_put_pending(tc, Queue, yield_loop)
    put_raised = isinstance(put_outcome, tc.ClosedResourceError)
    assert put_raised or got == ["a", "b"], (
        f"put() returned OK but the consumer's iteration ended with only {got!r}"
    )
    assert put_raised or left == 0, f"{left} item(s) stranded in the closed queue"


# Pins queue_close_strands_granted_put.py (the chosen behaviour).
async def test_close_makes_a_granted_but_not_yet_run_put_raise_closed(tc, Queue, yield_loop):
    """The granted-but-not-yet-run put raises ClosedResourceError; the consumer got ["a"]."""
    put_outcome, got, left = await _close_while_granted_put_pending(tc, Queue, yield_loop)
    assert isinstance(put_outcome, tc.ClosedResourceError), f"put() -> {put_outcome!r}"
    assert got == ["a"]
    assert left == 0
