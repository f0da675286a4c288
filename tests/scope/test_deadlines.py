"""Deadlines: move_on_*/fail_*, deadline changes while active, effective deadlines, the clock.

Where a deadline has to pass, the test either runs on the fake-clock loop (``fake_clock``
marker, the clock moves only when the test says so) or uses a deadline of a few tens of
milliseconds with no bound on how late it fires.
"""

from __future__ import annotations

import asyncio
import math

import pytest

INF = math.inf
NEVER = 3600  # a sleep that only a cancellation can end


# --- expiry ---------------------------------------------------------------------------------------


async def test_move_on_after_expires_and_catches(lib):
    with lib.move_on_after(0.02) as scope:
        await lib.sleep(NEVER)
        pytest.fail("the deadline did not fire")
    assert scope.cancel_called
    assert scope.cancelled_caught
    assert asyncio.current_task().cancelling() == 0


async def test_fail_after_raises_timeout_error_caused_by_cancellation(lib):
    with pytest.raises(TimeoutError) as info:
        with lib.fail_after(0.02):
            await lib.sleep(NEVER)
    error = info.value
    assert isinstance(error.__cause__ or error.__context__, asyncio.CancelledError)
    assert asyncio.current_task().cancelling() == 0


async def test_fail_after_cause_is_the_cancellation(tc):
    """toolcase_rs-only: the contract names ``__cause__`` (AnyIO only sets ``__context__``)."""
    with pytest.raises(TimeoutError) as info:
        with tc.fail_after(0):
            await tc.checkpoint()
    assert isinstance(info.value.__cause__, asyncio.CancelledError)


async def test_fail_after_reason_is_in_the_message(lib):
    with pytest.raises(TimeoutError, match="too slow"):
        with lib.fail_after(0, reason="too slow"):
            await lib.checkpoint()


@pytest.mark.parametrize("factory", ["move_on_after", "fail_after", "move_on_at", "fail_at"])
async def test_none_disables_the_deadline(lib, factory):
    with getattr(lib, factory)(None) as scope:
        assert scope.deadline == INF
        assert lib.current_effective_deadline() == INF
        await lib.sleep(0)
    assert not scope.cancel_called


@pytest.mark.parametrize("factory", ["move_on_at", "move_on_after"])
async def test_past_deadline_at_enter_cancels_at_first_checkpoint(lib, factory):
    when = lib.current_time() - 1 if factory == "move_on_at" else -1
    ran = False
    with getattr(lib, factory)(when) as scope:
        ran = True
        await lib.checkpoint()
        pytest.fail("a scope entered past its deadline let the body pass a checkpoint")
    assert ran
    assert scope.cancelled_caught


@pytest.mark.parametrize("factory", ["fail_at", "fail_after"])
async def test_fail_with_past_deadline_raises_timeout_error(lib, factory):
    when = lib.current_time() - 1 if factory == "fail_at" else 0
    with pytest.raises(TimeoutError):
        with getattr(lib, factory)(when):
            await lib.checkpoint()


async def test_fail_after_raises_only_for_its_own_expiry(lib):
    with lib.fail_after(NEVER) as scope:
        await lib.checkpoint()
    assert not scope.cancel_called

    # Cancelled by hand (not by its deadline) and caught: no TimeoutError either.
    with lib.fail_after(NEVER) as scope:
        scope.cancel()
        await lib.checkpoint()
    assert scope.cancelled_caught


async def test_nested_fail_after_only_the_expired_one_converts(lib):
    with pytest.raises(TimeoutError):
        with lib.fail_after(NEVER) as outer:
            with lib.fail_after(0) as inner:
                await lib.checkpoint()
    assert inner.cancelled_caught
    assert not outer.cancel_called
    assert not outer.cancelled_caught


async def test_shielded_fail_after_ignores_outer_cancellation(lib):
    with lib.CancelScope() as outer:
        outer.cancel()
        with lib.fail_after(NEVER, shield=True) as inner:
            await lib.checkpoint()
            await lib.sleep(0)
        assert inner.shield
        await lib.checkpoint()
        pytest.fail("the outer cancellation was lost")
    assert outer.cancelled_caught


async def test_move_on_after_deadline_is_relative_to_now(lib):
    loop = asyncio.get_running_loop()
    before = loop.time()
    with lib.move_on_after(5) as scope:  # created and entered in one statement
        after = loop.time()
        assert before + 5 <= scope.deadline <= after + 5


# --- the fake clock: deadlines changing while active ----------------------------------------------


def _fake_loop() -> asyncio.AbstractEventLoop:
    loop = asyncio.get_running_loop()
    assert hasattr(loop, "advance"), "this test needs the fake_clock marker"
    return loop


@pytest.mark.fake_clock
async def test_deadline_fires_when_the_clock_passes_it(lib, yield_loop):
    loop = _fake_loop()
    with lib.move_on_at(loop.time() + 10) as scope:
        await yield_loop()  # before the deadline: not cancelled
        loop.advance(10)
        await yield_loop()
        pytest.fail("the deadline did not fire after the clock passed it")
    assert scope.cancelled_caught


@pytest.mark.fake_clock
async def test_deadline_set_on_an_active_unbounded_scope_fires(lib, yield_loop):
    loop = _fake_loop()
    with lib.CancelScope() as scope:
        await yield_loop()
        scope.deadline = loop.time() + 5
        assert lib.current_effective_deadline() == scope.deadline
        loop.advance(5)
        await yield_loop()
        pytest.fail("a deadline set while active did not fire")
    assert scope.cancelled_caught


@pytest.mark.fake_clock
async def test_deadline_moved_into_the_past_cancels_at_next_checkpoint(lib):
    loop = _fake_loop()
    with lib.move_on_at(loop.time() + 10) as scope:
        scope.deadline = loop.time() - 1
        await lib.checkpoint()
        pytest.fail("a deadline moved into the past did not cancel")
    assert scope.cancelled_caught


@pytest.mark.fake_clock
async def test_deadline_removed_while_active_never_fires(lib, yield_loop):
    loop = _fake_loop()
    with lib.move_on_at(loop.time() + 10) as scope:
        scope.deadline = INF
        loop.advance(1e6)
        await yield_loop()
    assert not scope.cancel_called
    assert not scope.cancelled_caught


@pytest.mark.fake_clock
async def test_fail_after_on_fake_clock(lib, yield_loop):
    loop = _fake_loop()
    with pytest.raises(TimeoutError):
        with lib.fail_after(30):
            await yield_loop()
            loop.advance(30)
            await yield_loop()
    assert asyncio.current_task().cancelling() == 0


@pytest.mark.fake_clock
@pytest.mark.parametrize("make", ["move_on_after", "fail_after", "CancelScope(timeout=)"])
async def test_relative_deadline_is_computed_at_entry(tc, make):
    """toolcase_rs-only (a documented difference from AnyIO's move_on_after)."""
    loop = _fake_loop()
    scope = {
        "move_on_after": lambda: tc.move_on_after(10),
        "fail_after": lambda: tc.fail_after(10),
        "CancelScope(timeout=)": lambda: tc.CancelScope(timeout=10),
    }[make]()
    loop.advance(100)
    before = loop.time()
    with scope:
        after = loop.time()
        assert before + 10 <= scope.deadline <= after + 10


@pytest.mark.fake_clock
async def test_timeout_keyword_fires(tc, yield_loop):
    loop = _fake_loop()
    with tc.CancelScope(timeout=10) as scope:
        await yield_loop()
        loop.advance(10)
        await yield_loop()
        pytest.fail("CancelScope(timeout=...) did not fire")
    assert scope.cancelled_caught


@pytest.mark.parametrize("factory", ["fail_after", "move_on_after"])
async def test_scope_factories_support_async_with(tc, factory):
    """toolcase_rs-only: the returned CancelScope also works with ``async with``."""
    if factory == "fail_after":
        with pytest.raises(TimeoutError):
            async with tc.fail_after(0):
                await tc.checkpoint()
    else:
        async with tc.move_on_after(0) as scope:
            await tc.checkpoint()
        assert scope.cancelled_caught


# --- effective deadline and clock -----------------------------------------------------------------


async def test_effective_deadline_outside_any_scope_is_infinite(lib):
    assert lib.current_effective_deadline() == INF


async def test_effective_deadline_is_the_nearest(lib):
    now = lib.current_time()
    with lib.move_on_at(now + 200):
        assert lib.current_effective_deadline() == now + 200
        with lib.move_on_at(now + 100):
            assert lib.current_effective_deadline() == now + 100
            with lib.move_on_at(now + 300):
                assert lib.current_effective_deadline() == now + 100
        assert lib.current_effective_deadline() == now + 200


async def test_effective_deadline_stops_at_a_shield(lib):
    now = lib.current_time()
    with lib.move_on_at(now + 100):
        with lib.CancelScope(shield=True):
            assert lib.current_effective_deadline() == INF
        with lib.CancelScope(deadline=now + 300, shield=True):
            assert lib.current_effective_deadline() == now + 300


async def test_effective_deadline_of_a_cancelled_chain_is_minus_infinity(lib):
    with lib.CancelScope() as outer:
        with lib.move_on_at(lib.current_time() + 100):
            outer.cancel()
            assert lib.current_effective_deadline() == -INF
            with lib.CancelScope(shield=True):
                assert lib.current_effective_deadline() == INF


async def test_effective_deadline_alias(tc):
    assert tc.effective_deadline is tc.current_effective_deadline or (
        tc.effective_deadline() == tc.current_effective_deadline()
    )
    with tc.move_on_at(tc.current_time() + 100):
        assert tc.effective_deadline() == tc.current_effective_deadline()


async def test_current_time_is_the_loop_clock(lib):
    loop = asyncio.get_running_loop()
    before = loop.time()
    now = lib.current_time()
    after = loop.time()
    assert before <= now <= after


@pytest.mark.fake_clock
async def test_current_time_follows_a_custom_loop_clock(lib):
    loop = _fake_loop()
    loop.advance(1e6)
    before = loop.time()
    now = lib.current_time()
    after = loop.time()
    assert before <= now <= after


async def test_minus_infinity_deadline_cancels_at_the_first_checkpoint(lib):
    """A deadline of -inf is in the past like any other: the body is cancelled at once."""
    reached = False
    with lib.CancelScope(deadline=-math.inf) as scope:
        await lib.checkpoint()
        reached = True
    assert not reached
    assert scope.cancel_called
    assert scope.cancelled_caught


async def test_fail_at_minus_infinity_raises_timeout(lib):
    with pytest.raises(TimeoutError):
        with lib.fail_at(-math.inf):
            await lib.checkpoint()
