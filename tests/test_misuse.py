"""Every bad input and misuse the contract names, and the error it must raise."""

from __future__ import annotations

import asyncio
import contextlib
import math

import pytest

NAN = math.nan


async def noop():
    pass


# --- spawning: bad arguments ----------------------------------------------------------------------


async def test_start_soon_non_callable_is_type_error(tc):
    async with tc.TaskGroup() as tg:
        with pytest.raises(TypeError):
            tg.start_soon(42)
        coro = noop()
        with pytest.raises(TypeError):
            tg.start_soon(coro)  # a coroutine object is not a callable
        coro.close()


async def test_start_soon_function_not_returning_a_coroutine_is_type_error(tc):
    async with tc.TaskGroup() as tg:
        with pytest.raises(TypeError):
            tg.start_soon(lambda: 42)


@pytest.mark.parametrize("bad", [42, "text", None], ids=["int", "str", "None"])
async def test_spawn_rejects_non_callable_non_coroutine(tc, bad):
    async with tc.TaskGroup() as tg:
        with pytest.raises(TypeError):
            tg.spawn(bad)


async def test_spawn_coroutine_with_args_is_type_error(tc):
    coro = noop()
    async with tc.TaskGroup() as tg:
        with pytest.raises(TypeError):
            tg.spawn(coro, 1)
    coro.close()


async def test_spawn_function_not_returning_a_coroutine_is_type_error(tc):
    async with tc.TaskGroup() as tg:
        with pytest.raises(TypeError):
            tg.spawn(lambda: 42)


@pytest.mark.parametrize("bad", ["function", "int"])
async def test_create_task_requires_a_coroutine_object(tc, bad):
    arg = {"function": noop, "int": 42}[bad]
    async with tc.TaskGroup() as tg:
        with pytest.raises(TypeError):
            tg.create_task(arg)


async def test_type_errors_leave_the_group_usable(tc):
    async with tc.TaskGroup() as tg:
        with pytest.raises(TypeError):
            tg.start_soon(42)
        handle = tg.start_soon(asyncio.sleep, 0, "ok")
    assert handle.result() == "ok"


# --- spawning into a group that is not open -------------------------------------------------------

SPAWN_METHODS = ["start_soon", "spawn_fn", "spawn_coro", "create_task"]


def _spawn(tg, method, created):
    """Spawn ``noop`` with ``method``; record every coroutine object created in ``created``."""

    def make():
        coro = noop()
        created.append(coro)
        return coro

    if method == "start_soon":
        return tg.start_soon(make)
    if method == "spawn_fn":
        return tg.spawn(make)
    if method == "spawn_coro":
        return tg.spawn(make())
    return tg.create_task(make())


async def _group_in_state(tc, state):
    tg = tc.TaskGroup()
    if state == "exited":
        async with tg:
            pass
    return tg


@pytest.mark.parametrize("state", ["not_entered", "exited"])
@pytest.mark.parametrize("method", SPAWN_METHODS)
async def test_spawn_into_closed_group_closes_the_coroutine(
    tc, state, method, assert_closed_without_warning
):
    tg = await _group_in_state(tc, state)
    created = []
    with pytest.raises(RuntimeError):
        _spawn(tg, method, created)
    assert_closed_without_warning(created)


@pytest.mark.parametrize("state", ["not_entered", "exited"])
async def test_start_on_closed_group_is_runtime_error(tc, state, assert_closed_without_warning):
    tg = await _group_in_state(tc, state)
    created = []

    def make(*, task_status):
        coro = noop()
        created.append(coro)
        return coro

    with pytest.raises(RuntimeError):
        await tg.start(make)
    assert_closed_without_warning(created)


# --- cancel scopes --------------------------------------------------------------------------------


async def test_scope_cannot_be_entered_twice_while_active(lib):
    with lib.CancelScope() as scope:
        with pytest.raises(RuntimeError):
            with scope:
                pass


async def test_scope_cannot_be_reentered_after_exit(tc):
    """toolcase_rs-only: AnyIO allows re-entering an exited scope; the contract does not."""
    scope = tc.CancelScope()
    with scope:
        pass
    with pytest.raises(RuntimeError):
        with scope:
            pass


async def test_exit_out_of_order_is_runtime_error(lib):
    outer = lib.CancelScope()
    inner = lib.CancelScope()
    outer.__enter__()
    inner.__enter__()
    with pytest.raises(RuntimeError):
        outer.__exit__(None, None, None)
    for scope in (inner, outer):  # close whatever the failed exit left open
        with contextlib.suppress(RuntimeError):
            scope.__exit__(None, None, None)
    assert lib.current_effective_deadline() == math.inf
    with lib.CancelScope() as fresh:  # the task's scope stack is usable again
        fresh.cancel()
        await lib.checkpoint()
    assert fresh.cancelled_caught
    await asyncio.sleep(0)
    assert asyncio.current_task().cancelling() == 0


async def test_misnested_exit_closes_the_scopes_inside(tc):
    """Exiting an outer scope while an inner one is still open raises RuntimeError and closes
    both (as trio does), so no deadline of the abandoned inner scope can fire later (PITFALLS
    row 9). AnyIO instead raises and leaves both open; the contract states the difference."""
    outer = tc.CancelScope()
    inner = tc.move_on_after(0.01)
    outer.__enter__()
    inner.__enter__()
    with pytest.raises(RuntimeError, match="innermost"):
        outer.__exit__(None, None, None)
    with pytest.raises(RuntimeError, match="not active"):
        inner.__exit__(None, None, None)
    with pytest.raises(RuntimeError, match="not active"):
        outer.__exit__(None, None, None)
    # The inner deadline was disarmed with it: nothing is delivered to this task later.
    await asyncio.sleep(0.03)
    assert asyncio.current_task().cancelling() == 0
    assert not inner.cancel_called


async def test_exit_from_another_task_is_runtime_error(lib):
    scope = lib.CancelScope()
    with scope:
        errors = []

        async def intruder():
            try:
                scope.__exit__(None, None, None)
            except RuntimeError as exc:
                errors.append(exc)

        await asyncio.create_task(intruder())
        assert len(errors) == 1
    assert not scope.cancel_called


def test_enter_outside_a_running_loop_is_runtime_error(tc):
    scope = tc.CancelScope()
    with pytest.raises(RuntimeError):
        with scope:
            pass


async def test_enter_outside_a_task_is_runtime_error(tc):
    """Inside a running loop but in a plain callback (no current task)."""
    loop = asyncio.get_running_loop()
    outcome = loop.create_future()

    def callback():
        try:
            with tc.CancelScope():
                pass
        except BaseException as exc:
            outcome.set_result(exc)
        else:
            outcome.set_result(None)

    loop.call_soon(callback)
    assert isinstance(await outcome, RuntimeError)


async def test_deadline_and_timeout_together_is_value_error(tc):
    with pytest.raises(ValueError):
        tc.CancelScope(deadline=tc.current_time() + 1, timeout=1)


NAN_SCOPES = {
    "CancelScope(deadline=nan)": lambda lib: lib.CancelScope(deadline=NAN),
    "move_on_at(nan)": lambda lib: lib.move_on_at(NAN),
    "fail_at(nan)": lambda lib: lib.fail_at(NAN),
    "move_on_after(nan)": lambda lib: lib.move_on_after(NAN),
    "fail_after(nan)": lambda lib: lib.fail_after(NAN),
}


@pytest.mark.parametrize("make", list(NAN_SCOPES), ids=list(NAN_SCOPES))
async def test_nan_deadline_is_value_error(lib, make):
    """At creation or at the latest at entry (toolcase_rs computes relative deadlines there)."""
    with pytest.raises(ValueError):
        with NAN_SCOPES[make](lib):
            pass


async def test_nan_deadline_assignment_is_value_error(lib):
    with lib.CancelScope() as scope:
        with pytest.raises(ValueError):
            scope.deadline = NAN
        assert scope.deadline == math.inf


async def test_nan_timeout_is_value_error(tc):
    with pytest.raises(ValueError):
        with tc.CancelScope(timeout=NAN):
            pass


# --- handles --------------------------------------------------------------------------------------


async def test_result_before_done_is_invalid_state_error(tc):
    async with tc.TaskGroup() as tg:
        handle = tg.start_soon(asyncio.sleep, 0)
        with pytest.raises(asyncio.InvalidStateError):
            handle.result()
