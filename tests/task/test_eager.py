"""Eager start (toolcase_rs-only, opt-in): the child's first step runs inside start_soon.

The three failure scenarios of gh-128550 / AnyIO #822 under ``asyncio.eager_task_factory`` are
in pitfalls/test_pitfalls.py (row 18), run there against our own ``eager=True`` as well.
"""

from __future__ import annotations

import asyncio
import contextvars

import pytest

# How a child gets to be eager: the group default, or the per-spawn flag.
EAGER_WAYS = ["group", "start_soon", "spawn_fn", "spawn_coro"]


def spawn_eager(tc, way):
    """Return ``(group, spawn)`` where ``spawn(fn, *args)`` starts ``fn`` eagerly."""
    if way == "group":
        tg = tc.TaskGroup(eager=True)
        return tg, lambda fn, *args: tg.start_soon(fn, *args)
    tg = tc.TaskGroup()
    spawn = {
        "start_soon": lambda fn, *args: tg.start_soon(fn, *args, eager=True),
        "spawn_fn": lambda fn, *args: tg.spawn(fn, *args, eager=True),
        "spawn_coro": lambda fn, *args: tg.spawn(fn(*args), eager=True),
    }[way]
    return tg, spawn


@pytest.mark.parametrize("way", EAGER_WAYS)
async def test_child_that_never_suspends_finishes_inside_start_soon(tc, way):
    log = []

    async def child(x):
        log.append("child ran")
        return x + 1

    tg, spawn = spawn_eager(tc, way)
    async with tg:
        handle = spawn(child, 1)
        assert log == ["child ran"]
        assert handle.done
        assert handle.task is None
        assert handle.state == tc.TaskState.COMPLETED
        assert handle.result() == 2
        assert await handle == 2


@pytest.mark.parametrize("way", EAGER_WAYS)
async def test_child_that_suspends_continues_as_a_task(tc, way):
    log = []
    release = asyncio.Event()

    async def child():
        log.append("first step")
        await release.wait()
        log.append("second step")
        return "done"

    tg, spawn = spawn_eager(tc, way)
    async with tg:
        handle = spawn(child)
        assert log == ["first step"]
        assert not handle.done
        assert isinstance(handle.task, asyncio.Task)
        assert handle.state == tc.TaskState.RUNNING
        release.set()
    assert log == ["first step", "second step"]
    assert handle.result() == "done"


async def test_eager_false_overrides_an_eager_group(tc):
    log = []

    async def child():
        log.append("ran")

    async with tc.TaskGroup(eager=True) as tg:
        handle = tg.start_soon(child, eager=False)
        assert log == []
        assert handle.state == tc.TaskState.PENDING
    assert log == ["ran"]


async def test_first_step_runs_in_a_copy_of_the_current_context(tc):
    var = contextvars.ContextVar("var", default="unset")
    seen = []

    async def child():
        seen.append(var.get())
        var.set("child")
        await asyncio.sleep(0)
        seen.append(var.get())

    var.set("parent")
    async with tc.TaskGroup(eager=True) as tg:
        tg.start_soon(child)
        assert var.get() == "parent"
    assert seen == ["parent", "child"]
    assert var.get() == "parent"


async def test_current_task_in_the_first_step_is_the_spawner(tc):
    """A documented difference: during the eager first step current_task() is the spawner."""
    seen = []

    async def child():
        seen.append(asyncio.current_task())
        await asyncio.sleep(0)
        seen.append(asyncio.current_task())

    async with tc.TaskGroup(eager=True) as tg:
        handle = tg.start_soon(child)
    assert seen[0] is asyncio.current_task()
    assert seen[1] is handle.task


async def test_toolcase_scopes_work_in_the_first_step(tc):
    log = []

    async def child():
        with tc.CancelScope() as scope:
            scope.cancel()
            await tc.checkpoint()
            log.append("not cancelled")  # pragma: no cover - failure path
        log.append(("caught", scope.cancelled_caught))
        with tc.move_on_after(0) as timed:
            await tc.checkpoint()
        log.append(("timed out", timed.cancelled_caught))
        return "ok"

    spawner = asyncio.current_task()
    baseline = spawner.cancelling()
    async with tc.TaskGroup(eager=True) as tg:
        handle = tg.start_soon(child)
    assert log == [("caught", True), ("timed out", True)]
    assert handle.result() == "ok"
    assert spawner.cancelling() == baseline


async def test_child_failing_at_once_is_a_group_failure(tc):
    cancelled = []

    async def failing():
        raise ValueError("at once")

    with pytest.raises(ExceptionGroup) as info:
        async with tc.TaskGroup(eager=True) as tg:
            handle = tg.start_soon(failing)  # does not raise here
            assert handle.state == tc.TaskState.FAILED
            assert handle.task is None
            try:
                await tc.sleep(3600)
            except asyncio.CancelledError:
                cancelled.append("body")
                raise
    assert cancelled == ["body"]
    assert [type(e) for e in info.value.exceptions] == [ValueError]


async def test_eager_child_sees_an_already_cancelled_group(tc):
    log = []

    async def child():
        try:
            await tc.checkpoint()
        except asyncio.CancelledError:
            log.append("cancelled")
            raise

    async with tc.TaskGroup(eager=True) as tg:
        tg.cancel_scope.cancel()
        handle = tg.start_soon(child)
    assert log == ["cancelled"]
    assert handle.state == tc.TaskState.CANCELLED
