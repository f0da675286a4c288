"""Regressions: children started under ``asyncio.eager_task_factory`` (Python 3.12+).

Repros: py312_eager_task_factory_group_hang.py, start_under_eager_task_factory.py,
uvloop_313_eager_factory_typeerror.py (shared/repros/2026-12-02). A child that enters a scope or
takes a lock in its first (eager) step was registered twice and the group never exited, not
even under ``asyncio.timeout``: those bodies run in a subprocess (``run_script``).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

import pytest

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is optional on exotic platforms
    uvloop = None

needs_eager_factory = pytest.mark.skipif(
    sys.version_info < (3, 12), reason="asyncio.eager_task_factory needs Python 3.12+"
)
needs_uvloop = pytest.mark.skipif(uvloop is None, reason="uvloop is not installed")


@contextlib.contextmanager
def eager_task_factory():
    """Make the running loop start every new task eagerly for the block."""
    loop = asyncio.get_running_loop()
    previous = loop.get_task_factory()
    loop.set_task_factory(asyncio.eager_task_factory)
    try:
        yield
    finally:
        loop.set_task_factory(previous)


# --- a group whose child enters a scope / takes a lock in its eager first step ------------------

GROUP_SCRIPT = """
import time

import toolcase_rs as tc

LOCK = tc.Lock()
LIMITER = tc.CapacityLimiter(1)


async def enters_cancel_scope():
    with tc.CancelScope() as scope:
        await tc.sleep(0.01)
    report(caught=scope.cancelled_caught)


async def enters_move_on_after():
    start = time.monotonic()
    with tc.move_on_after(0.01) as scope:
        await tc.sleep(5)
    report(caught=scope.cancelled_caught, elapsed=time.monotonic() - start)


async def takes_lock():
    async with LOCK:
        await tc.sleep(0.01)
    report(released=not LOCK.locked())


async def takes_capacity_limiter():
    async with LIMITER:
        await tc.sleep(0.01)
    report(released=LIMITER.borrowed_tokens == 0)


async def yields_then_enters_move_on_after():
    await asyncio.sleep(0)
    await enters_move_on_after()


async def main():
    child = globals()[sys.argv[2]]
    asyncio.get_running_loop().set_task_factory(asyncio.eager_task_factory)
    async with asyncio.timeout(10):
        async with tc.TaskGroup() as tg:
            handle = tg.start_soon(child)
    report(group="exited", state=str(handle.state))


run(main)
"""


def run_group_script(run_script, loop, child):
    return run_script(GROUP_SCRIPT, loop, child)


# Pins py312_eager_task_factory_group_hang.py ("child enters CancelScope first").
@needs_eager_factory
@pytest.mark.timeout(60)
def test_eager_factory_child_entering_cancel_scope_first_lets_group_exit(run_script, script_loop):
    outcome = run_group_script(run_script, script_loop, "enters_cancel_scope")
    assert outcome.records.get("group") == "exited", outcome.describe()
    assert outcome.records["state"] == "completed", outcome.describe()
    assert outcome.records["caught"] is False, outcome.describe()


# Pins py312_eager_task_factory_group_hang.py ("child enters move_on_after first").
@needs_eager_factory
@pytest.mark.timeout(60)
def test_eager_factory_child_entering_move_on_after_first_is_cancelled_and_group_exits(
    run_script, script_loop
):
    outcome = run_group_script(run_script, script_loop, "enters_move_on_after")
    assert outcome.records.get("group") == "exited", outcome.describe()
    assert outcome.records["caught"] is True, outcome.describe()
    assert outcome.records["elapsed"] < 2, outcome.describe()


# Pins py312_eager_task_factory_group_hang.py ("child takes a Lock first").
@needs_eager_factory
@pytest.mark.timeout(60)
def test_eager_factory_child_taking_lock_first_lets_group_exit(run_script, script_loop):
    outcome = run_group_script(run_script, script_loop, "takes_lock")
    assert outcome.records.get("group") == "exited", outcome.describe()
    assert outcome.records["released"] is True, outcome.describe()


# Pins py312_eager_task_factory_group_hang.py ("child takes a CapacityLimiter first").
@needs_eager_factory
@pytest.mark.timeout(60)
def test_eager_factory_child_taking_capacity_limiter_first_lets_group_exit(run_script, script_loop):
    outcome = run_group_script(run_script, script_loop, "takes_capacity_limiter")
    assert outcome.records.get("group") == "exited", outcome.describe()
    assert outcome.records["released"] is True, outcome.describe()


# Pins py312_eager_task_factory_group_hang.py (control: the child yields once, then the scope).
@needs_eager_factory
@pytest.mark.timeout(60)
def test_eager_factory_child_entering_scope_after_first_yield_control(run_script, script_loop):
    outcome = run_group_script(run_script, script_loop, "yields_then_enters_move_on_after")
    assert outcome.records.get("group") == "exited", outcome.describe()
    assert outcome.records["caught"] is True, outcome.describe()
    assert outcome.records["elapsed"] < 2, outcome.describe()


GATHER_SCRIPT = """
import time

import toolcase_rs as tc


async def child(i):
    start = time.monotonic()
    with tc.move_on_after(0.01) as scope:
        await tc.sleep(5)
    return [i, scope.cancelled_caught, time.monotonic() - start]


async def main():
    asyncio.get_running_loop().set_task_factory(asyncio.eager_task_factory)
    async with asyncio.timeout(10):
        report(gather=await tc.gather(child(1), child(2)))


run(main)
"""


# Pins py312_eager_task_factory_group_hang.py ("gather of coroutines that enter a scope").
@needs_eager_factory
@pytest.mark.timeout(60)
def test_eager_factory_gather_of_coroutines_entering_move_on_after_returns_results(
    run_script, script_loop
):
    outcome = run_script(GATHER_SCRIPT, script_loop)
    results = outcome.records.get("gather")
    assert results is not None, outcome.describe()
    assert [(i, caught) for i, caught, _ in results] == [(1, True), (2, True)], outcome.describe()
    assert all(elapsed < 2 for _, _, elapsed in results), outcome.describe()


# --- start() under the eager factory ---------------------------------------------------------


@pytest.fixture(
    params=[
        pytest.param("eager_task_factory", marks=needs_eager_factory),
        "default_factory",
    ]
)
def factory(request):
    return request.param


# Pins start_under_eager_task_factory.py (the default-factory case is the control).
async def test_start_moves_child_that_calls_started_in_first_step_into_the_group(
    tc, factory, yield_loop
):
    log = []
    release = asyncio.Event()

    async def child(task_status):
        task_status.started("up")
        try:
            await release.wait()
            log.append("child finished")
        except asyncio.CancelledError:
            log.append("child cancelled by the caller's scope")
            raise

    context = eager_task_factory() if factory == "eager_task_factory" else contextlib.nullcontext()
    with context:
        async with tc.TaskGroup() as tg:
            with tc.CancelScope() as inner:
                assert await tg.start(child) == "up"
                inner.cancel()  # the caller's scope only: the child belongs to the group now
                await tc.checkpoint()
            assert inner.cancelled_caught
            await yield_loop()  # a cancellation that wrongly reached the child lands now
            release.set()
    assert log == ["child finished"]


# --- uvloop + eager factory ---------------------------------------------------------------------


async def returns_at_once():
    return 1


async def returns_after_a_yield():
    await asyncio.sleep(0)
    return 1


# Pins uvloop_313_eager_factory_typeerror.py (fails only on 3.13.0 + uvloop 0.23 today).
@needs_eager_factory
@needs_uvloop
@pytest.mark.parametrize("child", [returns_at_once, returns_after_a_yield])
def test_uvloop_eager_task_factory_start_soon_child_result_via_handle(tc, child):
    async def main():
        loop = asyncio.get_running_loop()
        loop.set_task_factory(asyncio.eager_task_factory)
        try:
            async with tc.TaskGroup() as tg:
                handle = tg.start_soon(child)
            return await handle
        finally:
            loop.set_task_factory(None)

    assert uvloop.run(main()) == 1


# --- a child that cancels its group and finishes in its eager first step --------------------


@needs_eager_factory
async def test_child_cancelling_its_group_while_finishing_eagerly_does_not_crash(tc):
    """Delivery used to ask such a finished task for its coroutine, which it no longer has
    (3.12.1 crashed there); a finished task now gets no delivery at all."""

    async def cancel_group(scope) -> None:
        scope.cancel()

    async def cancel_group_and_fail(scope) -> None:
        scope.cancel()
        raise TypeError("failed in the first step")

    with eager_task_factory():
        async with asyncio.timeout(5):
            async with tc.TaskGroup() as tg:
                tg.spawn(cancel_group(tg.cancel_scope))
        assert tg.cancel_scope.cancel_called
        with pytest.raises(ExceptionGroup) as info:
            async with asyncio.timeout(5):
                async with tc.TaskGroup() as tg:
                    tg.spawn(cancel_group_and_fail(tg.cancel_scope))
        assert isinstance(info.value.exceptions[0], TypeError)
