"""TaskGroup: children, failure propagation, error shapes, waiting on every exit path.

Differential against AnyIO where AnyIO defines the behaviour; the toolcase_rs-only tests at the
end cover the contract's own additions (names, spawn/create_task, native child cancels).
"""

from __future__ import annotations

import asyncio
import contextvars

import pytest

GROUP_MESSAGE = "unhandled errors in a TaskGroup"


async def park():
    await asyncio.Event().wait()


def leaf_types(group: BaseExceptionGroup) -> list[type]:
    """Types of the non-group exceptions in ``group``, depth first."""
    leaves = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            leaves.extend(leaf_types(exc))
        else:
            leaves.append(type(exc))
    return leaves


# --- running children -----------------------------------------------------------------------------


async def test_group_waits_for_all_children(lib):
    finished = []

    async def child(i, release):
        await release.wait()
        finished.append(i)

    release = asyncio.Event()
    async with lib.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(child, i, release)
        release.set()
    assert sorted(finished) == [0, 1, 2]


async def test_children_are_plain_asyncio_tasks(lib):
    seen = {}

    async def child():
        seen["task"] = asyncio.current_task()
        seen["listed"] = seen["task"] in asyncio.all_tasks()

    async with lib.create_task_group() as tg:
        tg.start_soon(child)
    assert isinstance(seen["task"], asyncio.Task)
    assert seen["task"] is not asyncio.current_task()
    assert seen["listed"]


async def test_children_run_after_the_spawner_yields(lib):
    order = []

    async def child():
        order.append("child")

    async with lib.create_task_group() as tg:
        tg.start_soon(child)
        order.append("body")
    assert order == ["body", "child"]


# --- failure --------------------------------------------------------------------------------------


async def test_first_failure_cancels_siblings_and_body(lib):
    cancelled = []
    sibling_started = asyncio.Event()

    async def sibling():
        sibling_started.set()
        try:
            await park()
        except lib.get_cancelled_exc_class():
            cancelled.append("sibling")
            raise

    async def failing():
        await sibling_started.wait()
        raise ValueError("boom")

    with pytest.raises(ExceptionGroup) as info:
        async with lib.create_task_group() as tg:
            tg.start_soon(sibling)
            tg.start_soon(failing)
            try:
                await park()
            except lib.get_cancelled_exc_class():
                cancelled.append("body")
                raise
    assert sorted(cancelled) == ["body", "sibling"]
    assert str(info.value).startswith(GROUP_MESSAGE)
    assert leaf_types(info.value) == [ValueError]


async def test_single_body_error_is_wrapped(lib):
    with pytest.raises(ExceptionGroup) as info:
        async with lib.create_task_group():
            raise ValueError("body")
    assert info.value.message == GROUP_MESSAGE
    assert leaf_types(info.value) == [ValueError]


async def test_error_shape_is_one_flat_group(lib):
    async def failing():
        raise KeyError

    with pytest.raises(ExceptionGroup) as info:
        async with lib.create_task_group() as tg:
            tg.start_soon(failing)
            await asyncio.sleep(0)
            raise ValueError
    group = info.value
    assert group.message == GROUP_MESSAGE
    assert not any(isinstance(e, BaseExceptionGroup) for e in group.exceptions)
    assert sorted(type(e).__name__ for e in group.exceptions) == ["KeyError", "ValueError"]


async def test_error_during_cancellation_cleanup_is_reported(lib):
    async def stubborn():
        try:
            await park()
        finally:
            raise RuntimeError("cleanup failed")

    async def failing():
        await asyncio.sleep(0)
        raise ValueError

    with pytest.raises(ExceptionGroup) as info:
        async with lib.create_task_group() as tg:
            tg.start_soon(stubborn)
            tg.start_soon(failing)
    assert sorted(t.__name__ for t in leaf_types(info.value)) == ["RuntimeError", "ValueError"]


async def test_nested_group_error_is_nested(lib):
    async def failing():
        raise ValueError

    with pytest.raises(ExceptionGroup) as info:
        async with lib.create_task_group():
            async with lib.create_task_group() as inner:
                inner.start_soon(failing)
    outer = info.value
    assert len(outer.exceptions) == 1
    assert isinstance(outer.exceptions[0], ExceptionGroup)
    assert leaf_types(outer) == [ValueError]


async def test_child_failure_after_body_finished(lib):
    release = asyncio.Event()

    async def failing():
        await release.wait()
        raise ValueError

    with pytest.raises(ExceptionGroup) as info:
        async with lib.create_task_group() as tg:
            tg.start_soon(failing)
            release.set()
    assert leaf_types(info.value) == [ValueError]


# --- exit paths -----------------------------------------------------------------------------------


async def test_exit_waits_for_slow_cleanup_when_the_body_raises(lib):
    log = []

    async def slow_cleanup():
        try:
            await park()
        finally:
            with lib.CancelScope(shield=True):
                for _ in range(3):
                    await lib.checkpoint()
            log.append("child cleaned up")

    with pytest.raises(ExceptionGroup):
        try:
            async with lib.create_task_group() as tg:
                tg.start_soon(slow_cleanup)
                await asyncio.sleep(0)
                raise ValueError
        finally:
            log.append("group exited")
    assert log == ["child cleaned up", "group exited"]


async def test_cancel_scope_cancels_children_and_body_without_error(lib):
    log = []

    async def child():
        try:
            await park()
        except lib.get_cancelled_exc_class():
            log.append("child cancelled")
            raise

    async with lib.create_task_group() as tg:
        tg.start_soon(child)
        await asyncio.sleep(0)
        tg.cancel_scope.cancel()
        await lib.sleep(3600)
        pytest.fail("the body was not cancelled")
    assert log == ["child cancelled"]
    assert tg.cancel_scope.cancelled_caught


async def test_tg_cancel_cancels_every_child(lib):
    cancelled = []

    async def child(i):
        try:
            await park()
        except lib.get_cancelled_exc_class():
            cancelled.append(i)
            raise

    async with lib.create_task_group() as tg:
        for i in range(3):
            tg.start_soon(child, i)
        await asyncio.sleep(0)
        tg.cancel("enough")
    assert sorted(cancelled) == [0, 1, 2]
    assert tg.cancel_scope.cancel_called
    assert asyncio.current_task().cancelling() == 0


async def test_outer_native_cancel_while_exit_waits(lib):
    """The task running ``__aexit__`` is cancelled from outside: children are cancelled, exit
    keeps waiting for them, then the cancellation propagates."""
    log = []
    children_waiting = asyncio.Event()
    body_done = asyncio.Event()

    async def child():
        children_waiting.set()
        try:
            await park()
        finally:
            with lib.CancelScope(shield=True):
                for _ in range(3):
                    await lib.checkpoint()
            log.append("child finished")

    async def host():
        try:
            async with lib.create_task_group() as tg:
                tg.start_soon(child)
                await children_waiting.wait()
                body_done.set()
        finally:
            log.append("host exited group")

    task = asyncio.create_task(host())
    await body_done.wait()
    await asyncio.sleep(0)  # the host is now inside __aexit__
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert log == ["child finished", "host exited group"]


async def test_group_inside_cancelled_scope_exits_cleanly(lib):
    with lib.CancelScope() as scope:
        async with lib.create_task_group() as tg:
            tg.start_soon(park)
            tg.start_soon(park)
            await asyncio.sleep(0)
            scope.cancel()
    assert scope.cancelled_caught
    assert not tg.cancel_scope.cancelled_caught


# --- toolcase_rs-only -----------------------------------------------------------------------------


async def test_group_and_child_names(tc):
    async def child():
        return asyncio.current_task().get_name()

    async with tc.TaskGroup(name="workers") as tg:
        handle = tg.start_soon(child, name="first")
    assert tg.name == "workers"
    assert handle.name == "first"
    assert await handle == "first"


async def test_create_task_group_equals_task_group(tc):
    async with tc.create_task_group(name="g") as tg:
        assert isinstance(tg, tc.TaskGroup)
        assert tg.name == "g"


@pytest.mark.parametrize("how", ["spawn_fn", "spawn_coro", "create_task", "start_soon"])
async def test_all_spawn_methods_run_the_child(tc, how):
    async def child(x):
        await asyncio.sleep(0)
        return x * 2

    async with tc.TaskGroup() as tg:
        handle = {
            "spawn_fn": lambda: tg.spawn(child, 21),
            "spawn_coro": lambda: tg.spawn(child(21)),
            "create_task": lambda: tg.create_task(child(21)),
            "start_soon": lambda: tg.start_soon(child, 21),
        }[how]()
    assert handle.result() == 42


async def test_create_task_runs_in_the_given_context(tc):
    var = contextvars.ContextVar("var", default="unset")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "in ctx")

    async def child():
        return var.get()

    async with tc.TaskGroup() as tg:
        handle = tg.create_task(child(), context=ctx)
    assert handle.result() == "in ctx"
    assert var.get() == "unset"


async def test_native_child_cancel_is_not_a_group_error(tc):
    """A difference from AnyIO (documented): a child cancelled with ``task.cancel()`` is like
    ``handle.cancel()``: no group error, and siblings keep running."""
    sibling_done = []
    release = asyncio.Event()

    async def sibling():
        await release.wait()
        sibling_done.append(True)

    async with tc.TaskGroup() as tg:
        victim = tg.start_soon(park)
        tg.start_soon(sibling)
        await asyncio.sleep(0)
        victim.task.cancel()
        await victim.wait()
        assert not tg.cancel_scope.cancel_called
        release.set()
    assert sibling_done == [True]
    assert victim.state == tc.TaskState.CANCELLED
