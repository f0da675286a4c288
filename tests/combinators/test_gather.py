"""gather and gather_settled (docs/many-api.md): order, errors, cancellation, structure.

Completion order comes from events (the ``script`` fixture), never from sleeps. Every test
ends by checking that nothing the combinator started is still running.
"""

from __future__ import annotations

import asyncio
import math

import pytest


class Fatal(BaseException):
    """A BaseException that is neither an Exception nor a cancellation (like SystemExit, but
    asyncio does not re-raise it out of the loop)."""


async def value(x):
    return x


async def suspend_then(x, steps=1):
    for _ in range(steps):
        await asyncio.sleep(0)
    return x


async def fail(exc, steps=0):
    for _ in range(steps):
        await asyncio.sleep(0)
    raise exc


# --- gather: results ---------------------------------------------------------------------------


async def test_results_come_in_argument_order_whatever_the_completion_order(tc, script):
    task = asyncio.create_task(tc.gather(script.child("a"), script.child("b"), script.child("c")))
    await script.until_started("a", "b", "c")
    script.release("c")
    await asyncio.sleep(0)
    script.release("a")
    await asyncio.sleep(0)
    script.release("b")
    assert await task == ["a", "b", "c"]
    assert script.finished == ["c", "a", "b"]


async def test_no_awaitables_gives_an_empty_list(tc):
    assert await tc.gather() == []
    assert await tc.gather(return_exceptions=True) == []


async def test_futures_tasks_and_custom_awaitables(tc, leftover_tasks):
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    loop.call_soon(future.set_result, "future")
    task = asyncio.create_task(suspend_then("task"))

    class Custom:
        def __await__(self):
            yield from asyncio.sleep(0).__await__()
            return "custom"

    assert await tc.gather(value(1), future, task, Custom()) == [1, "future", "task", "custom"]
    assert not leftover_tasks()


async def test_the_same_coroutine_twice_runs_once_and_fills_both_places(tc):
    runs = []

    async def once():
        runs.append(1)
        await asyncio.sleep(0)
        return "x"

    coro = once()
    assert await tc.gather(coro, value(0), coro) == ["x", 0, "x"]
    assert runs == [1]


async def test_children_are_tasks_under_the_callers_deadline(tc):
    seen = []

    async def child():
        seen.append((asyncio.current_task(), tc.current_effective_deadline()))

    with tc.move_on_after(100):
        deadline = tc.current_effective_deadline()
        await tc.gather(child(), child())
    assert [d for _, d in seen] == [deadline, deadline]
    assert all(t is not asyncio.current_task() for t, _ in seen)


# --- gather: errors ----------------------------------------------------------------------------


async def test_first_error_cancels_the_others_which_are_awaited_before_it_raises(
    tc, script, leftover_tasks, loop_errors
):
    error = ValueError("boom")
    with loop_errors() as errors:
        task = asyncio.create_task(
            tc.gather(script.child("slow"), script.child("bad", error=error), script.child("b"))
        )
        await script.until_started("slow", "bad", "b")
        script.release("bad")
        with pytest.raises(ValueError) as info:
            await task
        # The error itself, not a group, and not chained to one.
        assert info.value is error
        assert not isinstance(info.value.__context__, BaseExceptionGroup)
        assert sorted(script.cancelled) == ["b", "slow"]
        assert all(t.done() for t in script.tasks.values())
        assert not leftover_tasks()
    assert not errors


async def test_errors_raised_while_being_cancelled_are_dropped(tc, script, leftover_tasks):
    first = ValueError("first")

    async def noisy_cleanup():
        try:
            await asyncio.Event().wait()
        finally:
            raise KeyError("raised during cancellation")

    with pytest.raises(ValueError) as info:
        await tc.gather(noisy_cleanup(), fail(first, steps=1))
    assert info.value is first
    assert not leftover_tasks()


async def test_the_first_error_in_completion_order_wins(tc, script):
    early, late = ValueError("early"), ValueError("late")
    task = asyncio.create_task(
        tc.gather(script.child("late", error=late), script.child("early", error=early))
    )
    await script.until_started("late", "early")
    script.release("early", "late")  # same iteration: "late" runs second in the ready queue
    with pytest.raises(ValueError) as info:
        await task
    assert info.value is script_first_error(script, {"early": early, "late": late})


def script_first_error(script, errors):
    return errors[script.finished[0]]


async def test_a_base_exception_wins_over_ordinary_errors(tc, script):
    ordinary, fatal = ValueError("ordinary"), Fatal()
    task = asyncio.create_task(
        tc.gather(script.child("a", error=ordinary), script.child("b", error=fatal))
    )
    await script.until_started("a", "b")
    script.release("a", "b")
    with pytest.raises(Fatal) as info:
        await task
    assert info.value is fatal


async def test_an_awaitable_cancelled_by_someone_else_is_task_cancelled(tc, script):
    task = asyncio.create_task(tc.gather(script.child("victim"), script.child("ok")))
    await script.until_started("victim", "ok")
    script.tasks["victim"].cancel()
    await asyncio.sleep(0)
    assert "ok" not in script.cancelled  # not a group error: the sibling keeps running
    script.release("ok")
    with pytest.raises(tc.TaskCancelled):
        await task


# --- gather: return_exceptions -----------------------------------------------------------------


async def test_return_exceptions_puts_errors_in_place_and_cancels_nothing(tc, script):
    error = ValueError("x")
    task = asyncio.create_task(
        tc.gather(
            script.child("bad", error=error),
            script.child("ok"),
            return_exceptions=True,
        )
    )
    await script.until_started("bad", "ok")
    script.release("bad")
    for _ in range(5):
        await asyncio.sleep(0)
    assert script.cancelled == []
    script.release("ok")
    assert await task == [error, "ok"]


async def test_return_exceptions_reports_a_foreign_cancellation_in_place(tc, script):
    task = asyncio.create_task(
        tc.gather(script.child("victim"), script.child("ok"), return_exceptions=True)
    )
    await script.until_started("victim", "ok")
    script.tasks["victim"].cancel()
    script.release("ok")
    victim, ok = await task
    assert isinstance(victim, tc.TaskCancelled)
    assert ok == "ok"


async def test_return_exceptions_still_propagates_base_exceptions(tc):
    fatal = Fatal()
    with pytest.raises(Fatal) as info:
        await tc.gather(fail(fatal, steps=1), asyncio.Event().wait(), return_exceptions=True)
    assert info.value is fatal


async def test_return_exceptions_with_the_same_coroutine_twice(tc):
    coro = fail(ValueError("once"))
    first, second = await tc.gather(coro, coro, return_exceptions=True)
    assert first is second


# --- gather: the caller's cancellation ---------------------------------------------------------


@pytest.mark.parametrize("return_exceptions", [False, True])
async def test_native_cancel_of_the_caller_cancels_and_awaits_the_children(
    tc, script, leftover_tasks, return_exceptions
):
    task = asyncio.create_task(
        tc.gather(script.child("a"), script.child("b"), return_exceptions=return_exceptions)
    )
    await script.until_started("a", "b")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(script.cancelled) == ["a", "b"]
    assert not leftover_tasks()


async def test_a_cancelled_scope_around_the_caller_cancels_the_children(tc, script, leftover_tasks):
    async def caller():
        with tc.CancelScope() as scope:
            script.scope = scope
            await tc.gather(script.child("a"), script.child("b"))
        return scope.cancelled_caught

    task = asyncio.create_task(caller())
    await script.until_started("a", "b")
    script.scope.cancel()
    assert await task is True
    assert sorted(script.cancelled) == ["a", "b"]
    assert not leftover_tasks()


async def test_a_deadline_around_gather(tc, leftover_tasks):
    with tc.move_on_after(0.01) as scope:
        await tc.gather(asyncio.sleep(math.inf), asyncio.Event().wait())
    assert scope.cancelled_caught
    assert not leftover_tasks()


# --- gather_settled ----------------------------------------------------------------------------


async def test_gather_settled_returns_every_outcome_in_order(tc, script):
    error = ValueError("no")
    task = asyncio.create_task(
        tc.gather_settled(script.child("bad", error=error), script.child("ok", value=42))
    )
    await script.until_started("bad", "ok")
    script.release("bad")
    for _ in range(5):
        await asyncio.sleep(0)
    assert script.cancelled == []  # a failure cancels nothing
    script.release("ok")
    bad, ok = await task
    assert (bad.is_fulfilled, bad.is_rejected, bad.value, bad.error) == (False, True, None, error)
    assert (ok.is_fulfilled, ok.is_rejected, ok.value, ok.error) == (True, False, 42, None)
    assert bad.status == tc.SettledStatus.REJECTED == "rejected"
    assert ok.status == tc.SettledStatus.FULFILLED == "fulfilled"
    assert ok.unwrap() == 42
    assert bad.unwrap_or("default") == "default"
    assert ok.unwrap_or("default") == 42
    with pytest.raises(ValueError):
        bad.unwrap()


async def test_settled_is_immutable(tc):
    [outcome] = await tc.gather_settled(value(1))
    with pytest.raises(AttributeError):
        outcome.value = 2


async def test_gather_settled_never_raises_for_errors(tc):
    outcomes = await tc.gather_settled(*(fail(ValueError(i)) for i in range(5)))
    assert [o.error.args[0] for o in outcomes] == list(range(5))
    assert await tc.gather_settled() == []


async def test_gather_settled_reports_a_foreign_cancellation_as_rejected(tc, script):
    task = asyncio.create_task(tc.gather_settled(script.child("victim"), script.child("ok")))
    await script.until_started("victim", "ok")
    script.tasks["victim"].cancel()
    script.release("ok")
    victim, ok = await task
    assert victim.is_rejected and isinstance(victim.error, tc.TaskCancelled)
    assert ok.value == "ok"


async def test_gather_settled_honours_the_callers_cancellation(tc, script, leftover_tasks):
    task = asyncio.create_task(tc.gather_settled(script.child("a"), script.child("b")))
    await script.until_started("a", "b")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(script.cancelled) == ["a", "b"]
    assert not leftover_tasks()


async def test_gather_settled_propagates_base_exceptions(tc, leftover_tasks):
    fatal = Fatal()
    with pytest.raises(Fatal) as info:
        await tc.gather_settled(fail(fatal, steps=1), asyncio.Event().wait())
    assert info.value is fatal
    assert not leftover_tasks()


# --- differential: gather vs an AnyIO task group collecting results ----------------------------


@pytest.mark.parametrize("fail_at", [None, 0, 2])
async def test_matches_an_anyio_task_group_equivalent(tc, make_lib, fail_at):
    """AnyIO has no gather: the equivalent is a task group whose children store their results.
    Both must agree on the results, on which error escapes (AnyIO: in a group) and on which
    siblings were cancelled."""
    anyio = make_lib("anyio")

    def scenario():
        events = [asyncio.Event() for _ in range(4)]
        log = []

        async def child(i):
            try:
                await events[i].wait()
            except asyncio.CancelledError:
                log.append(("cancelled", i))
                raise
            if i == fail_at:
                raise ValueError(i)
            log.append(("done", i))
            return i * 10

        async def drive():
            for i in (3, 0, 2, 1):
                for _ in range(3):
                    await asyncio.sleep(0)
                events[i].set()

        return child, drive, log

    child, drive, log_tc = scenario()
    driver = asyncio.create_task(drive())
    try:
        result_tc = await tc.gather(*(child(i) for i in range(4)))
    except ValueError as exc:
        result_tc = ("error", exc.args)
    driver.cancel()

    child, drive, log_anyio = scenario()
    driver = asyncio.create_task(drive())
    results = [None] * 4

    async def store(i):
        results[i] = await child(i)

    try:
        async with anyio.create_task_group() as tg:
            for i in range(4):
                tg.start_soon(store, i)
        result_anyio = results
    except ExceptionGroup as group:
        [exc] = group.exceptions
        result_anyio = ("error", exc.args)
    driver.cancel()

    assert result_tc == result_anyio
    # The same children finished, in the same order; the same ones were cancelled (the order in
    # which cancelled children run their handlers is the loop's business).
    assert [e for e in log_tc if e[0] == "done"] == [e for e in log_anyio if e[0] == "done"]
    assert sorted(e for e in log_tc if e[0] == "cancelled") == sorted(
        e for e in log_anyio if e[0] == "cancelled"
    )
