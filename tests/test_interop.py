"""Interop: scopes and groups next to plain asyncio and AnyIO on the same loop, both ways.

Tests with ``lib`` run the same interop scenario for toolcase_rs and (as a check of the test)
for AnyIO. The ``outer``/``inner`` matrices nest toolcase_rs and AnyIO objects in every
combination; the AnyIO-in-AnyIO cell checks the scenario itself.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

NEVER = 3600
PAIRS = list(itertools.product(["toolcase_rs", "anyio"], repeat=2))
PAIR_IDS = [f"{outer}-around-{inner}" for outer, inner in PAIRS]


async def park():
    await asyncio.Event().wait()


async def assert_task_is_clean():
    """No cancellation is pending or unbalanced on the current task."""
    assert asyncio.current_task().cancelling() == 0
    await asyncio.sleep(0)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0):
            await asyncio.sleep(NEVER)


# --- plain asyncio around library scopes ----------------------------------------------------------


@pytest.mark.parametrize("shield", [False, True], ids=["plain", "shielded"])
async def test_asyncio_timeout_goes_through_a_scope(lib, shield):
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            with lib.CancelScope(shield=shield) as scope:
                await lib.sleep(NEVER)
    assert not scope.cancelled_caught
    await assert_task_is_clean()


async def test_scope_inside_asyncio_timeout(lib):
    async with asyncio.timeout(NEVER) as timeout:
        with lib.move_on_after(0.01) as scope:
            await asyncio.sleep(NEVER)
        await asyncio.sleep(0)
    assert scope.cancelled_caught
    assert not timeout.expired()
    await assert_task_is_clean()


async def test_wait_for_times_out_a_coroutine_using_a_scope(lib):
    async def work():
        with lib.CancelScope():
            await lib.sleep(NEVER)

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(work(), 0.01)
    await assert_task_is_clean()


async def test_scope_cancels_a_wait_for(lib):
    with lib.move_on_after(0.01) as scope:
        await asyncio.wait_for(park(), NEVER)
    assert scope.cancelled_caught
    await assert_task_is_clean()


async def test_scope_cancels_a_gather(lib):
    tasks = [asyncio.create_task(park()) for _ in range(3)]
    await asyncio.sleep(0)
    with lib.CancelScope() as scope:
        scope.cancel()
        await asyncio.gather(*tasks)
    assert scope.cancelled_caught
    await asyncio.sleep(0)
    assert all(task.cancelled() for task in tasks)
    await assert_task_is_clean()


async def test_gather_of_coroutines_with_their_own_scopes(lib):
    async def work(i):
        with lib.move_on_after(0) as scope:
            await lib.checkpoint()
        return i, scope.cancelled_caught

    assert await asyncio.gather(*(work(i) for i in range(3))) == [(0, True), (1, True), (2, True)]


async def test_scope_in_a_plain_task_created_by_asyncio(lib):
    async def work():
        with lib.CancelScope() as scope:
            scope.cancel()
            await asyncio.sleep(NEVER)
        return scope.cancelled_caught, asyncio.current_task().cancelling()

    assert await asyncio.create_task(work()) == (True, 0)


async def test_scope_cancels_an_asyncio_task_group(lib):
    cancelled = []

    async def child():
        try:
            await park()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    with lib.CancelScope() as scope:
        async with asyncio.TaskGroup() as tg:
            tg.create_task(child())
            tg.create_task(child())
            await asyncio.sleep(0)
            scope.cancel()
    assert scope.cancelled_caught
    assert cancelled == [True, True]
    await assert_task_is_clean()


async def test_library_group_error_inside_asyncio_task_group(lib):
    async def failing():
        raise ValueError

    with pytest.raises(ExceptionGroup) as info:
        async with asyncio.TaskGroup():
            async with lib.create_task_group() as tg:
                tg.start_soon(failing)
    (inner,) = info.value.exceptions
    assert isinstance(inner, ExceptionGroup)
    assert [type(e) for e in inner.exceptions] == [ValueError]


async def test_asyncio_task_group_failure_cancels_library_group_children(lib):
    cancelled = []

    async def lib_child():
        try:
            await park()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def failing():
        await asyncio.sleep(0)
        raise KeyError

    with pytest.raises(ExceptionGroup) as info:
        async with asyncio.TaskGroup() as outer:
            outer.create_task(failing())
            async with lib.create_task_group() as tg:
                tg.start_soon(lib_child)
                await park()
    assert cancelled == [True]
    assert [type(e) for e in info.value.exceptions] == [KeyError]
    await assert_task_is_clean()


async def test_scope_inside_an_asyncio_task_group_child(lib):
    sibling_done = []

    async def scoped():
        with lib.move_on_after(0) as scope:
            await lib.sleep(NEVER)
        return scope.cancelled_caught

    async def sibling():
        for _ in range(3):
            await asyncio.sleep(0)
        sibling_done.append(True)

    async with asyncio.TaskGroup() as tg:
        result = tg.create_task(scoped())
        tg.create_task(sibling())
    assert result.result() is True
    assert sibling_done == [True]


# --- toolcase_rs and AnyIO nested in each other ---------------------------------------------------


@pytest.mark.parametrize(("outer_name", "inner_name"), PAIRS, ids=PAIR_IDS)
async def test_outer_scope_cancel_passes_through_inner_scope(make_lib, outer_name, inner_name):
    outer_lib, inner_lib = make_lib(outer_name), make_lib(inner_name)
    with outer_lib.CancelScope() as outer:
        with inner_lib.CancelScope() as inner:
            outer.cancel()
            await asyncio.sleep(NEVER)
        pytest.fail("the outer cancellation was swallowed")
    assert outer.cancelled_caught
    assert not inner.cancelled_caught
    await assert_task_is_clean()


@pytest.mark.parametrize(("outer_name", "inner_name"), PAIRS, ids=PAIR_IDS)
async def test_inner_scope_catches_its_own_cancel(make_lib, outer_name, inner_name):
    outer_lib, inner_lib = make_lib(outer_name), make_lib(inner_name)
    with outer_lib.CancelScope() as outer:
        with inner_lib.move_on_after(0) as inner:
            await asyncio.sleep(NEVER)
        await outer_lib.checkpoint()
    assert inner.cancelled_caught
    assert not outer.cancel_called
    await assert_task_is_clean()


@pytest.mark.parametrize(("outer_name", "inner_name"), PAIRS, ids=PAIR_IDS)
async def test_outer_fail_after_through_inner_scope(make_lib, outer_name, inner_name):
    outer_lib, inner_lib = make_lib(outer_name), make_lib(inner_name)
    with pytest.raises(TimeoutError):
        with outer_lib.fail_after(0.01):
            with inner_lib.CancelScope() as inner:
                await asyncio.sleep(NEVER)
    assert not inner.cancelled_caught
    await assert_task_is_clean()


@pytest.mark.parametrize(("outer_name", "inner_name"), PAIRS, ids=PAIR_IDS)
async def test_outer_group_cancel_reaches_inner_group_children(make_lib, outer_name, inner_name):
    outer_lib, inner_lib = make_lib(outer_name), make_lib(inner_name)
    cancelled = []
    inner_started = asyncio.Event()

    async def leaf():
        inner_started.set()
        try:
            await park()
        except asyncio.CancelledError:
            cancelled.append("leaf")
            raise

    async def middle():
        async with inner_lib.create_task_group() as inner:
            inner.start_soon(leaf)
            inner.start_soon(leaf)

    async with outer_lib.create_task_group() as outer:
        outer.start_soon(middle)
        await inner_started.wait()
        outer.cancel_scope.cancel()
    assert cancelled == ["leaf", "leaf"]
    await assert_task_is_clean()


@pytest.mark.parametrize(("outer_name", "inner_name"), PAIRS, ids=PAIR_IDS)
async def test_inner_group_failure_reaches_outer_group(make_lib, outer_name, inner_name):
    outer_lib, inner_lib = make_lib(outer_name), make_lib(inner_name)

    async def failing():
        raise ValueError

    async def middle():
        async with inner_lib.create_task_group() as inner:
            inner.start_soon(failing)

    with pytest.raises(ExceptionGroup) as info:
        async with outer_lib.create_task_group() as outer:
            outer.start_soon(middle)
            await park()
    (inner_group,) = info.value.exceptions
    assert isinstance(inner_group, ExceptionGroup)
    assert [type(e) for e in inner_group.exceptions] == [ValueError]
