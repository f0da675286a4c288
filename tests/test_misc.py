"""get_cancelled_exc_class(), is_cancelled(), current_task(), run()."""

from __future__ import annotations

import asyncio
import os

import pytest

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None


async def test_get_cancelled_exc_class(lib):
    assert lib.get_cancelled_exc_class() is asyncio.CancelledError


async def test_is_cancelled(tc):
    assert tc.is_cancelled(asyncio.CancelledError())
    assert not tc.is_cancelled(ValueError())
    assert not tc.is_cancelled(tc.TaskCancelled())


async def test_current_task_inside_a_task(tc):
    assert tc.current_task() is asyncio.current_task()


def test_current_task_outside_a_task(tc):
    assert tc.current_task() is None


def test_run_returns_the_result(tc):
    async def main(a, b):
        await tc.sleep(0)
        return a + b

    assert tc.run(main, 1, 2) == 3


def test_run_propagates_the_exception(tc):
    async def main():
        raise KeyError("x")

    with pytest.raises(KeyError):
        tc.run(main)


@pytest.mark.skipif(uvloop is None, reason="uvloop is not installed")
def test_run_with_loop_factory(tc):
    async def main():
        return type(asyncio.get_running_loop())

    assert tc.run(main, loop_factory=uvloop.new_event_loop) is uvloop.Loop


def test_run_groups_and_scopes(tc):
    async def main():
        async with tc.TaskGroup() as tg:
            handle = tg.start_soon(tc.sleep, 0)
        with tc.move_on_after(0) as scope:
            await tc.checkpoint()
        return handle.state, scope.cancelled_caught

    assert tc.run(main) == (tc.TaskState.COMPLETED, True)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
async def test_a_forked_child_does_not_see_the_parents_running_loop(tc):
    """The running loop is read from asyncio's holder with a pid check: in a child forked from
    inside a running loop (where asyncio itself reports no running loop), toolcase_rs must not
    report the parent's loop either."""
    tc.current_time()  # the parent sees its loop (and the fast path is set up)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            tc.current_time()
        except RuntimeError:
            os._exit(0)
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
