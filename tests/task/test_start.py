"""TaskGroup.start(): task_status, TASK_STATUS_IGNORED, which scope a starting child is in.

All differential. The edge cases of AnyIO #685/#710 (started twice, no started, exception
before started, cancelling the caller) are in pitfalls/test_pitfalls.py (row 17).
"""

from __future__ import annotations

import asyncio

import pytest


async def test_start_returns_the_started_value_and_child_keeps_running(lib):
    log = []
    release = asyncio.Event()

    async def server(a, b, *, task_status):
        task_status.started(a + b)
        log.append("started")
        await release.wait()
        log.append("finished")

    async with lib.create_task_group() as tg:
        value = await tg.start(server, 1, 2)
        assert value == 3
        assert log == ["started"]
        release.set()
    assert log == ["started", "finished"]


async def test_started_without_value_gives_none(lib):
    async def child(*, task_status):
        task_status.started()

    async with lib.create_task_group() as tg:
        assert await tg.start(child) is None


async def test_start_names_the_child_task(lib):
    async def child(*, task_status):
        task_status.started(asyncio.current_task().get_name())

    async with lib.create_task_group() as tg:
        assert await tg.start(child, name="listener") == "listener"


async def test_task_status_ignored_is_the_default(lib):
    ran = []

    async def child(*, task_status=lib.TASK_STATUS_IGNORED):
        task_status.started("ignored")
        ran.append(True)

    assert lib.TASK_STATUS_IGNORED.started() is None
    async with lib.create_task_group() as tg:
        tg.start_soon(child)
        assert await tg.start(child) == "ignored"
    assert ran == [True, True]


async def test_error_after_started_is_a_group_error(lib):
    async def child(*, task_status):
        task_status.started("up")
        await asyncio.sleep(0)
        raise ValueError

    with pytest.raises(ExceptionGroup) as info:
        async with lib.create_task_group() as tg:
            assert await tg.start(child) == "up"
            await lib.sleep(3600)
    assert [type(e) for e in info.value.exceptions] == [ValueError]


async def test_start_from_another_child(lib):
    async def server(*, task_status):
        task_status.started("ready")

    async def client(tg, results):
        results.append(await tg.start(server))

    results = []
    async with lib.create_task_group() as tg:
        tg.start_soon(client, tg, results)
    assert results == ["ready"]


async def test_child_belongs_to_callers_scope_until_started(lib):
    """Before ``started()`` the child is in the caller's (here shielded) scope, so cancelling
    the group does not reach it; after ``started()`` it is in the group's scope and is
    cancelled at its next checkpoint."""
    log = []

    async def child(tg, *, task_status):
        tg.cancel_scope.cancel()
        for _ in range(3):
            await lib.checkpoint()
        log.append("survived group cancel before started")
        task_status.started("up")
        try:
            await lib.sleep(3600)
        except lib.get_cancelled_exc_class():
            log.append("cancelled after started")
            raise

    async with lib.create_task_group() as tg:
        with lib.CancelScope(shield=True):
            assert await tg.start(child, tg) == "up"
        log.append("caller resumed")
        await lib.checkpoint()
        pytest.fail("the group's cancellation did not reach the body")
    assert tg.cancel_scope.cancelled_caught
    assert log[0] == "survived group cancel before started"
    assert sorted(log[1:]) == ["caller resumed", "cancelled after started"]


async def test_start_on_a_cancelled_group_still_runs_until_started(lib):
    """The caller's scope (not the cancelled group's) governs the child before started()."""

    async def child(*, task_status):
        await lib.checkpoint()
        task_status.started("up")

    async with lib.create_task_group() as tg:
        tg.cancel_scope.cancel()
        with lib.CancelScope(shield=True):
            assert await tg.start(child) == "up"
    assert tg.cancel_scope.cancelled_caught
