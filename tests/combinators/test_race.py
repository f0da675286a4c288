"""race and first_success (docs/many-api.md): who wins, what happens to the losers.

Completion order comes from events (``script``); timeouts run on the fake-clock loop with the
autojump driver, so they take no wall-clock time.
"""

from __future__ import annotations

import asyncio

import pytest


async def fail(exc, steps=0):
    for _ in range(steps):
        await asyncio.sleep(0)
    raise exc


# --- race --------------------------------------------------------------------------------------


async def test_first_to_finish_wins_and_losers_are_cancelled_and_awaited(
    tc, script, leftover_tasks
):
    task = asyncio.create_task(tc.race(script.child("a"), script.child("b"), script.child("c")))
    await script.until_started("a", "b", "c")
    script.release("b")
    assert await task == "b"
    assert sorted(script.cancelled) == ["a", "c"]
    assert all(t.done() for t in script.tasks.values())
    assert not leftover_tasks()


async def test_a_first_finisher_that_raised_has_its_error_re_raised(tc, script, leftover_tasks):
    error = ValueError("first")
    task = asyncio.create_task(tc.race(script.child("bad", error=error), script.child("slow")))
    await script.until_started("bad", "slow")
    script.release("bad")
    with pytest.raises(ValueError) as info:
        await task
    assert info.value is error
    assert not isinstance(info.value.__context__, BaseExceptionGroup)
    assert script.cancelled == ["slow"]
    assert not leftover_tasks()


async def test_errors_of_losers_while_being_cancelled_are_dropped(tc, leftover_tasks):
    async def noisy_loser():
        try:
            await asyncio.Event().wait()
        finally:
            raise KeyError("cleanup")

    async def winner():
        await asyncio.sleep(0)
        return "won"

    assert await tc.race(noisy_loser(), winner()) == "won"
    assert not leftover_tasks()


async def test_a_result_available_at_once_wins(tc):
    async def now():
        return "now"

    assert await tc.race(now(), asyncio.Event().wait()) == "now"
    assert await tc.race(now(), asyncio.Event().wait(), timeout=0) == "now"


@pytest.mark.fake_clock
async def test_timeout_raises_timeout_error_after_cancelling_everything(
    tc, script, autojump, leftover_tasks
):
    async with autojump() as loop:
        start = loop.time()
        with pytest.raises(TimeoutError):
            await tc.race(script.child("a"), script.child("b"), timeout=30)
        assert loop.time() - start == pytest.approx(30, abs=1e-3)
    assert sorted(script.cancelled) == ["a", "b"]
    assert not leftover_tasks()


@pytest.mark.fake_clock
async def test_a_timeout_does_not_fire_when_someone_wins_first(tc, script, autojump):
    async def slow_winner():
        await asyncio.sleep(10)
        return "winner"

    async with autojump():
        assert await tc.race(slow_winner(), script.child("parked"), timeout=30) == "winner"


async def test_the_same_coroutine_twice_runs_once(tc):
    runs = []

    async def once():
        runs.append(1)
        await asyncio.sleep(0)
        return "x"

    coro = once()
    assert await tc.race(coro, coro) == "x"
    assert runs == [1]


async def test_non_coroutine_awaitables_race_too(tc, leftover_tasks):
    loop = asyncio.get_running_loop()
    never = loop.create_future()
    soon = loop.create_future()
    loop.call_soon(soon.set_result, "future")
    assert await tc.race(never, soon) == "future"
    assert never.cancelled()  # a losing future is cancelled
    assert not leftover_tasks()


async def test_native_cancel_of_the_caller_cancels_and_awaits_the_racers(
    tc, script, leftover_tasks
):
    task = asyncio.create_task(tc.race(script.child("a"), script.child("b")))
    await script.until_started("a", "b")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(script.cancelled) == ["a", "b"]
    assert not leftover_tasks()


async def test_a_loser_cancelled_by_someone_else_does_not_end_the_race(tc, script):
    task = asyncio.create_task(tc.race(script.child("victim"), script.child("ok")))
    await script.until_started("victim", "ok")
    script.tasks["victim"].cancel()
    for _ in range(5):
        await asyncio.sleep(0)
    assert not task.done()
    script.release("ok")
    assert await task == "ok"


async def test_every_racer_cancelled_by_someone_else_is_task_cancelled(tc, script):
    task = asyncio.create_task(tc.race(script.child("a"), script.child("b")))
    await script.until_started("a", "b")
    script.tasks["a"].cancel()
    script.tasks["b"].cancel()
    with pytest.raises(tc.TaskCancelled):
        await task


async def test_race_needs_an_awaitable(tc):
    with pytest.raises(ValueError, match="at least one"):
        await tc.race()


# --- first_success -----------------------------------------------------------------------------


async def test_first_success_skips_failures(tc, script, leftover_tasks):
    task = asyncio.create_task(
        tc.first_success(
            script.child("bad", error=ValueError("bad")),
            script.child("good"),
            script.child("slow"),
        )
    )
    await script.until_started("bad", "good", "slow")
    script.release("bad")
    for _ in range(5):
        await asyncio.sleep(0)
    assert not task.done()  # a failure does not end it
    assert script.cancelled == []
    script.release("good")
    assert await task == "good"
    assert script.cancelled == ["slow"]
    assert not leftover_tasks()


async def test_first_success_all_failing_raises_every_error_in_argument_order(tc, script):
    errors = {name: ValueError(name) for name in "abc"}
    task = asyncio.create_task(tc.first_success(*(script.child(n, error=errors[n]) for n in "abc")))
    await script.until_started("a", "b", "c")
    for name in "cab":  # completion order differs from argument order
        script.release(name)
        await asyncio.sleep(0)
    with pytest.raises(ExceptionGroup) as info:
        await task
    assert list(info.value.exceptions) == [errors["a"], errors["b"], errors["c"]]
    assert "all 3" in str(info.value)


async def test_first_success_counts_a_foreign_cancellation_as_a_failure(tc, script):
    task = asyncio.create_task(
        tc.first_success(script.child("victim"), script.child("bad", error=ValueError()))
    )
    await script.until_started("victim", "bad")
    script.tasks["victim"].cancel()
    script.release("bad")
    with pytest.raises(ExceptionGroup) as info:
        await task
    victim, bad = info.value.exceptions
    assert isinstance(victim, tc.TaskCancelled)
    assert isinstance(bad, ValueError)


@pytest.mark.fake_clock
async def test_first_success_timeout_chains_the_errors_so_far(tc, script, autojump):
    error = ValueError("early failure")
    async with autojump():
        with pytest.raises(TimeoutError) as info:
            await tc.first_success(fail(error, steps=1), script.child("parked"), timeout=5)
    assert isinstance(info.value.__cause__, ExceptionGroup)
    assert list(info.value.__cause__.exceptions) == [error]
    assert script.cancelled == ["parked"]


async def test_first_success_honours_the_callers_cancellation(tc, script, leftover_tasks):
    task = asyncio.create_task(tc.first_success(script.child("a"), script.child("b")))
    await script.until_started("a", "b")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(script.cancelled) == ["a", "b"]
    assert not leftover_tasks()


async def test_first_success_needs_an_awaitable(tc):
    with pytest.raises(ValueError, match="at least one"):
        await tc.first_success()


# --- differential: race vs the AnyIO task-group idiom ------------------------------------------


@pytest.mark.parametrize("winner", [0, 1, 2])
@pytest.mark.parametrize("winner_fails", [False, True])
async def test_race_matches_the_anyio_first_cancels_the_scope_idiom(
    tc, make_lib, winner, winner_fails
):
    """AnyIO has no race; its idiom is a task group whose first finisher cancels the group's
    scope. Same winner, same outcome, same losers cancelled."""
    anyio = make_lib("anyio")

    def scenario():
        events = [asyncio.Event() for _ in range(3)]
        log = []

        async def racer(i):
            try:
                await events[i].wait()
            except asyncio.CancelledError:
                log.append(("cancelled", i))
                raise
            if winner_fails:
                raise ValueError(i)
            return i

        return events, racer, log

    events, racer, log_tc = scenario()
    task = asyncio.create_task(tc.race(*(racer(i) for i in range(3))))
    for _ in range(3):
        await asyncio.sleep(0)
    events[winner].set()
    try:
        outcome_tc = ("value", await task)
    except ValueError as exc:
        outcome_tc = ("error", exc.args)

    events, racer, log_anyio = scenario()
    box = []

    async def first(i):
        try:
            box.append(("value", await racer(i)))
        except ValueError as exc:
            box.append(("error", exc.args))
        tg.cancel_scope.cancel()

    async def release():
        for _ in range(3):
            await asyncio.sleep(0)
        events[winner].set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(release)
        for i in range(3):
            tg.start_soon(first, i)
    outcome_anyio = box[0]

    assert outcome_tc == outcome_anyio
    assert sorted(log_tc) == sorted(log_anyio)
