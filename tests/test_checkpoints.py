"""checkpoint(), sleep(), sleep_until(), sleep_forever(), shield()."""

from __future__ import annotations

import asyncio
import math

import pytest


async def test_checkpoint_yields_to_the_loop_exactly_once(lib):
    runs = []

    async def other():
        for i in range(5):
            runs.append(i)
            await asyncio.sleep(0)

    task = asyncio.create_task(other())
    await lib.checkpoint()
    assert runs == [0]
    await lib.checkpoint()
    assert runs == [0, 1]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def _sleep_yields_once(sleep, seconds):
    runs = []

    async def other():
        runs.append(1)

    task = asyncio.create_task(other())
    await sleep(seconds)
    assert runs == [1]
    await task


async def test_sleep_zero_yields_once(lib):
    await _sleep_yields_once(lib.sleep, 0)


@pytest.mark.parametrize("delay", [-1, -0.001, -math.inf, math.nan])
async def test_negative_or_nan_sleep_is_a_value_error(lib, delay):
    """As in AnyIO 4.16 (and trio): a negative delay is a ValueError, not a zero sleep."""
    with pytest.raises(ValueError):
        await lib.sleep(delay)


@pytest.mark.parametrize("how", ["checkpoint", "sleep", "lock", "event", "queue"])
async def test_checkpoint_in_a_cancelled_scope_passes_through_the_loop_before_raising(tc, how):
    """As trio's checkpoints do: a cancelled checkpoint lets the loop run once, then raises, so
    code that swallows cancellation in a loop cannot starve the other tasks."""
    runs = []

    async def other():
        runs.append(1)

    call = {
        "checkpoint": lambda: tc.checkpoint(),
        "sleep": lambda: tc.sleep(3600),
        "lock": lambda: tc.Lock().acquire(),
        "event": lambda: tc.Event().wait(),
        "queue": lambda: tc.Queue().get(),
    }[how]
    with tc.CancelScope() as scope:
        scope.cancel()
        task = asyncio.create_task(other())
        try:
            await call()
        finally:
            assert runs == [1], "the cancelled checkpoint raised without yielding once"
    assert scope.cancelled_caught
    await task


@pytest.mark.parametrize("how", ["checkpoint", "sleep0", "sleep", "sleep_until", "sleep_forever"])
async def test_sleeps_are_checkpoints(tc, how):
    loop = asyncio.get_running_loop()
    call = {
        "checkpoint": lambda: tc.checkpoint(),
        "sleep0": lambda: tc.sleep(0),
        "sleep": lambda: tc.sleep(3600),
        "sleep_until": lambda: tc.sleep_until(loop.time() + 3600),
        "sleep_forever": lambda: tc.sleep_forever(),
    }[how]
    with tc.CancelScope() as scope:
        scope.cancel()
        await call()
        pytest.fail(f"{how} is not a checkpoint")
    assert scope.cancelled_caught


@pytest.mark.fake_clock
async def test_sleep_until_wakes_when_the_clock_passes(tc, yield_loop):
    loop = asyncio.get_running_loop()
    target = loop.time() + 100
    sleeper = asyncio.create_task(tc.sleep_until(target))
    await yield_loop()
    assert not sleeper.done()
    loop.advance(100)
    await yield_loop()
    assert sleeper.done()
    assert loop.time() >= target
    await sleeper


@pytest.mark.fake_clock
async def test_sleep_wakes_when_the_clock_passes(lib, yield_loop):
    loop = asyncio.get_running_loop()
    sleeper = asyncio.create_task(lib.sleep(50))
    await yield_loop()
    assert not sleeper.done()
    loop.advance(50)
    await yield_loop()
    assert sleeper.done()
    await sleeper


async def test_sleep_until_in_the_past_returns(tc):
    await tc.sleep_until(asyncio.get_running_loop().time() - 10)


async def test_sleep_forever_is_ended_by_a_deadline(lib):
    with lib.move_on_after(0.01) as scope:
        await lib.sleep_forever()
    assert scope.cancelled_caught


@pytest.mark.parametrize("call", ["sleep", "sleep_until"])
async def test_nan_sleep_is_value_error(tc, call):
    with pytest.raises(ValueError):
        await getattr(tc, call)(math.nan)


async def test_shield_returns_the_result_and_defers_cancellation(tc):
    log = []

    async def work():
        for _ in range(3):
            await tc.checkpoint()
        log.append("work done")
        return 5

    with tc.CancelScope() as scope:
        scope.cancel()
        assert await tc.shield(work()) == 5
        log.append("after shield")
        await tc.checkpoint()
        pytest.fail("the cancellation was lost after shield()")
    assert log == ["work done", "after shield"]
    assert scope.cancelled_caught


async def test_shield_of_a_future(tc):
    fut = asyncio.get_running_loop().create_future()
    asyncio.get_running_loop().call_soon(fut.set_result, "ok")
    with tc.CancelScope() as scope:
        scope.cancel()
        assert await tc.shield(fut) == "ok"
    assert scope.cancel_called
