"""TaskHandle and TaskState (toolcase_rs-only: AnyIO's TaskHandle has a different shape)."""

from __future__ import annotations

import asyncio
import enum

import pytest


async def park():
    await asyncio.Event().wait()


async def test_task_state_is_a_str_enum(tc):
    assert issubclass(tc.TaskState, enum.StrEnum)
    assert {state.name: state.value for state in tc.TaskState} == {
        "PENDING": "pending",
        "RUNNING": "running",
        "COMPLETED": "completed",
        "FAILED": "failed",
        "CANCELLED": "cancelled",
    }


async def test_task_cancelled_is_an_exception_not_a_cancellation(tc):
    assert issubclass(tc.TaskCancelled, Exception)
    assert not issubclass(tc.TaskCancelled, asyncio.CancelledError)


async def test_completed_child(tc):
    release = asyncio.Event()

    async def child():
        await release.wait()
        return "value"

    async with tc.TaskGroup() as tg:
        handle = tg.start_soon(child, name="worker")
        assert handle.state == tc.TaskState.PENDING
        assert handle.done is False
        assert handle.exception() is None
        with pytest.raises(asyncio.InvalidStateError):
            handle.result()
        await asyncio.sleep(0)
        assert handle.state == tc.TaskState.RUNNING
        assert handle.done is False
        release.set()
        assert await handle == "value"
        assert handle.state == tc.TaskState.COMPLETED
    assert handle.done is True
    assert handle.result() == "value"
    assert handle.exception() is None
    assert handle.name == "worker"
    assert isinstance(handle.task, asyncio.Task)
    assert handle.task.get_name() == "worker"


async def test_failed_child(tc):
    error = ValueError("boom")

    async def child():
        await asyncio.sleep(0)
        raise error

    with pytest.raises(ExceptionGroup) as info:
        async with tc.TaskGroup() as tg:
            handle = tg.start_soon(child)
    assert info.value.exceptions == (error,)
    assert handle.state == tc.TaskState.FAILED
    assert handle.done
    assert handle.exception() is error
    with pytest.raises(ValueError) as raised:
        handle.result()
    assert raised.value is error
    with pytest.raises(ValueError) as raised:
        await handle
    assert raised.value is error
    assert await handle.wait() is None


async def test_handle_cancel_cancels_only_that_child(tc):
    sibling_done = []
    release = asyncio.Event()
    seen = []

    async def victim():
        try:
            await park()
        except asyncio.CancelledError:
            seen.append("victim cancelled")
            raise

    async def sibling():
        await release.wait()
        sibling_done.append(True)

    async with tc.TaskGroup() as tg:
        handle = tg.start_soon(victim)
        tg.start_soon(sibling)
        await asyncio.sleep(0)
        assert handle.cancel() is True
        assert await handle.wait() is None
        assert handle.state == tc.TaskState.CANCELLED
        assert not tg.cancel_scope.cancel_called
        release.set()
    assert seen == ["victim cancelled"]
    assert sibling_done == [True]
    assert handle.done
    assert handle.exception() is None
    with pytest.raises(tc.TaskCancelled):
        handle.result()
    with pytest.raises(tc.TaskCancelled):
        await handle
    assert handle.cancel() is False  # already finished


async def test_cancel_before_the_child_starts(tc):
    ran = []

    async def child():
        ran.append(True)

    async with tc.TaskGroup() as tg:
        handle = tg.start_soon(child)
        assert handle.state == tc.TaskState.PENDING
        handle.cancel()
    assert handle.state == tc.TaskState.CANCELLED
    assert ran == []


async def test_awaiting_a_cancelled_sibling_is_not_your_own_cancellation(tc):
    outcome = []

    async def waiter(handle):
        try:
            await handle
        except tc.TaskCancelled:
            outcome.append("TaskCancelled")
        await asyncio.sleep(0)  # still running: not cancelled itself
        outcome.append("waiter finished")

    async with tc.TaskGroup() as tg:
        victim = tg.start_soon(park)
        waiting = tg.start_soon(waiter, victim)
        await asyncio.sleep(0)
        victim.cancel()
    assert outcome == ["TaskCancelled", "waiter finished"]
    assert waiting.state == tc.TaskState.COMPLETED


async def test_cancelling_the_awaiter_does_not_cancel_the_child(tc):
    release = asyncio.Event()

    async def child():
        await release.wait()
        return 7

    async with tc.TaskGroup() as tg:
        handle = tg.start_soon(child)
        awaiter = asyncio.create_task(_await(handle.wait()))
        joiner = asyncio.create_task(_await(handle))
        await asyncio.sleep(0)
        awaiter.cancel()
        joiner.cancel()
        for task in (awaiter, joiner):
            with pytest.raises(asyncio.CancelledError):
                await task
        assert handle.state == tc.TaskState.RUNNING
        release.set()
    assert handle.result() == 7


async def _await(awaitable):
    return await awaitable


async def test_wait_never_raises_for_the_childs_outcome(tc):
    async def failing():
        await asyncio.sleep(0)
        raise ValueError

    with pytest.raises(ExceptionGroup):
        async with tc.TaskGroup() as tg:
            handle = tg.start_soon(failing)
            # shielded: the group cancels the body when the child fails
            with tc.CancelScope(shield=True):
                assert await handle.wait() is None
            assert handle.state == tc.TaskState.FAILED
    assert await handle.wait() is None


async def test_handle_task_is_in_all_tasks(tc):
    async with tc.TaskGroup() as tg:
        handle = tg.start_soon(park)
        assert handle.task in asyncio.all_tasks()
        handle.cancel()
