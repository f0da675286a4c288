"""Regressions: misuse gets one clear error, and no coroutine is left behind unclosed.

Repros (shared/repros/2026-12-02): fixture_group_across_tasks_message.py,
run_inside_running_loop.py, rejected_coroutines_not_closed.py,
create_task_bad_context_hangs_group.py. Warnings are errors in this suite, so a "coroutine ...
was never awaited" is caught by recording warnings around a ``gc.collect()``.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import warnings

import pytest


async def fetch(i):
    return i


@pytest.fixture
def closed_check(assert_closed_without_warning):
    """``closed_check(coros)``: the conftest check (every coroutine closed, dropping them warns
    nothing); whatever it finds unclosed is closed afterwards so the warning it would give
    later cannot land in another test."""

    def check(coros):
        leftovers = list(coros)
        try:
            assert_closed_without_warning(coros)
        finally:
            for coro in leftovers:
                coro.close()

    return check


def never_awaited(caught):
    return [str(w.message) for w in caught if "never awaited" in str(w.message)]


# --- a task group / scope held across a fixture's yield ---------------------------------------


async def setup_then_teardown_in_other_tasks(gen):
    """What pytest-asyncio does with an async-generator fixture: ``__anext__`` once in a setup
    task, and once more in a teardown task. Returns what the teardown raised."""

    async def step():
        await gen.__anext__()

    await asyncio.create_task(step())
    with pytest.raises(RuntimeError) as info:
        await asyncio.create_task(step())
    return info.value


# Pins fixture_group_across_tasks_message.py (TaskGroup held across the yield).
async def test_task_group_exited_by_another_task_names_the_cross_task_exit_and_cancels_child(
    tc, yield_loop
):
    log = []
    children = []

    async def child():
        children.append(asyncio.current_task())
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            log.append("child cancelled")
            raise

    async def fixture():
        async with tc.TaskGroup() as tg:
            tg.start_soon(child)
            yield

    gen = fixture()
    try:
        error = await setup_then_teardown_in_other_tasks(gen)
        message = str(error)
        assert "must be exited by the task that entered it" in message
        assert "fixture" in message
        assert len(children) == 1
        assert children[0].done(), "the group's child is still running after the teardown"
        assert log == ["child cancelled"]
    finally:
        for task in children:
            task.cancel()
        await asyncio.gather(*children, return_exceptions=True)
    await yield_loop()
    assert asyncio.all_tasks() == {asyncio.current_task()}


# Pins fixture_group_across_tasks_message.py (bare CancelScope held across the yield).
async def test_cancel_scope_exited_by_another_task_names_the_cross_task_exit(tc):
    async def fixture():
        with tc.CancelScope():
            yield

    error = await setup_then_teardown_in_other_tasks(fixture())
    assert "must be exited by the task that entered it" in str(error)


# --- tc.run() misuse -------------------------------------------------------------------------


# Pins run_inside_running_loop.py and the "tc.run(fetch, 1) inside a loop" case of
# rejected_coroutines_not_closed.py.
async def test_run_inside_running_loop_raises_one_runtime_error_and_leaves_no_coroutine(tc):
    async def inner():
        return 1

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(RuntimeError) as info:
            tc.run(inner)
        context = repr(info.value.__context__)
        cause = repr(info.value.__cause__)
        del info  # the traceback's frames may hold the rejected coroutine
        gc.collect()
    assert context == "None"
    assert cause == "None"
    assert never_awaited(caught) == []


# Pins rejected_coroutines_not_closed.py ("tc.run(fetch(1))").
def test_run_rejects_a_coroutine_object_with_type_error_and_closes_it(tc, closed_check):
    coros = [fetch(1)]
    with pytest.raises(TypeError):
        tc.run(coros[0])
    closed_check(coros)


# --- coroutine objects where a function is expected ---------------------------------------------


async def call_and_await(make):
    """``make()``, awaited when it returns an awaitable (the TypeError may come from either)."""
    result = make()
    if inspect.isawaitable(result):
        await result


# Pins rejected_coroutines_not_closed.py ("tg.start_soon(fetch(1))").
async def test_start_soon_rejects_a_coroutine_object_with_type_error_and_closes_it(
    tc, closed_check
):
    coros = [fetch(1)]
    async with tc.TaskGroup() as tg:
        with pytest.raises(TypeError):
            tg.start_soon(coros[0])
    closed_check(coros)


# Pins rejected_coroutines_not_closed.py ("map_async(fetch(1), [1])").
async def test_map_async_rejects_a_coroutine_object_with_type_error_and_closes_it(tc, closed_check):
    coros = [fetch(1)]
    with pytest.raises(TypeError):
        await call_and_await(lambda: tc.map_async(coros[0], [1]))
    closed_check(coros)


# Pins rejected_coroutines_not_closed.py ("retry(fetch(1))").
async def test_retry_rejects_a_coroutine_object_with_type_error_and_closes_it(tc, closed_check):
    coros = [fetch(1)]
    with pytest.raises(TypeError):
        await call_and_await(lambda: tc.retry(coros[0]))
    closed_check(coros)


# Pins rejected_coroutines_not_closed.py ("as_completed(fetch(1))").
async def test_as_completed_rejects_a_coroutine_object_with_type_error_and_closes_it(
    tc, closed_check
):
    coros = [fetch(1)]
    with pytest.raises(TypeError):
        async with tc.as_completed(coros[0]) as stream:
            async for _ in stream:
                pass
    closed_check(coros)


# --- TaskGroup.create_task(context=<not a Context>) --------------------------------------------

BAD_CONTEXT_SCRIPT = """
import gc
import inspect
import warnings

import toolcase_rs as tc


async def ok():
    return 1


async def main():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        coros = [ok()]
        async with tc.TaskGroup() as tg:
            try:
                tg.create_task(coros[0], context=5)
                report(create_task="accepted")
            except TypeError as exc:
                report(create_task="TypeError", message=str(exc))
            report(coro_state=inspect.getcoroutinestate(coros[0]))
            coros.clear()
            gc.collect()
        report(group="exited")
    report(never_awaited=[str(w.message) for w in caught if "never awaited" in str(w.message)])


run(main)
"""


# Pins create_task_bad_context_hangs_group.py (in a subprocess: the old group never exits).
@pytest.mark.timeout(60)
def test_create_task_with_non_context_raises_type_error_at_once_and_group_exits(
    run_script, script_loop
):
    outcome = run_script(BAD_CONTEXT_SCRIPT, script_loop)
    records = outcome.records
    assert records.get("create_task") == "TypeError", outcome.describe()
    assert records["coro_state"] == inspect.CORO_CLOSED, outcome.describe()
    assert records.get("group") == "exited", outcome.describe()
    assert records["never_awaited"] == [], outcome.describe()
