"""CancelToken: what blocking code in a worker sees of the scopes that started it."""

from __future__ import annotations

import asyncio
import math
import sys
import threading
import time

import pytest


async def test_job_token_is_set_by_a_scope_cancel(tc):
    seen: list[object] = []

    def worker() -> None:
        token = tc.current_cancel_token()
        seen.append(token.wait(5))
        seen.append(token.cancelled)

    async with tc.create_task_group() as tg:
        tg.start_soon(tc.to_thread.run_sync, worker)
        await tc.sleep(0.02)
        tg.cancel_scope.cancel()
    assert seen == [True, True]


async def test_job_token_wakes_within_milliseconds_and_burns_no_cpu(tc):
    woke: list[float] = []

    def worker() -> None:
        token = tc.current_cancel_token()
        cpu0 = time.thread_time()
        token.wait(10)
        woke.append(time.monotonic())
        woke.append(time.thread_time() - cpu0)

    with tc.move_on_after(0.2) as scope:
        await tc.to_thread.run_sync(worker)
        await tc.sleep(5)  # the cancellation is delivered at this checkpoint
    cancelled_at = time.monotonic()
    assert scope.cancelled_caught
    wake_time, cpu = woke
    assert wake_time <= cancelled_at
    assert cpu < 0.05, f"the waiting thread used {cpu:.3f} s of CPU"


async def test_job_token_sees_the_deadline(tc):
    out: list[float] = []

    def worker() -> None:
        token = tc.current_cancel_token()
        out.append(token.deadline)
        out.append(token.remaining())
        token.wait(5)

    with tc.move_on_after(0.1) as scope:
        await tc.to_thread.run_sync(worker)
        await tc.sleep(5)
    deadline, remaining = out
    assert deadline == pytest.approx(scope.deadline)
    assert 0 < remaining <= 0.1 + 1e-3  # uvloop's clock is cached per iteration


async def test_job_token_is_set_by_a_cancel_from_another_thread(tc):
    ready = threading.Event()
    result: list[bool] = []

    def worker() -> None:
        ready.set()
        result.append(tc.current_cancel_token().wait(5))

    scope = tc.CancelScope()

    def canceller() -> None:
        ready.wait(5)
        scope.cancel()

    thread = threading.Thread(target=canceller)
    thread.start()
    with scope:
        await tc.to_thread.run_sync(worker)
        await tc.sleep(5)
    thread.join()
    assert result == [True]
    assert scope.cancelled_caught


async def test_shield_hides_outer_cancellation_from_the_token(tc):
    result: list[bool] = []

    def worker() -> None:
        result.append(tc.current_cancel_token().wait(0.3))

    with tc.move_on_after(0.05) as outer:
        with tc.CancelScope(shield=True):
            await tc.to_thread.run_sync(worker)
        await tc.sleep(1)
    assert result == [False], "the token saw a cancellation through a shield"
    assert outer.cancelled_caught


async def test_native_cancel_sets_the_token_and_is_raised_after_the_function(tc):
    finished = threading.Event()
    saw: list[bool] = []

    def worker() -> None:
        saw.append(tc.current_cancel_token().wait(5))
        finished.set()

    task = asyncio.ensure_future(tc.to_thread.run_sync(worker))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished.is_set()
    assert saw == [True]


async def test_task_token_mirrors_the_task_scopes(tc):
    with tc.CancelScope() as scope:
        token = tc.current_cancel_token()
        assert not token.cancelled
        assert token.deadline == math.inf
        scope.cancel()
        assert token.cancelled
        await tc.checkpoint()
    assert scope.cancelled_caught


async def test_task_token_made_inside_a_cancelled_scope_starts_set(tc):
    with tc.CancelScope() as scope:
        scope.cancel()
        assert tc.current_cancel_token().cancelled
        await tc.sleep(0)


async def test_task_token_wakes_a_plain_thread(tc):
    got: list[bool] = []
    with tc.move_on_after(0.05):
        token = tc.current_cancel_token()
        thread = threading.Thread(target=lambda: got.append(token.wait(5)))
        thread.start()
        await tc.sleep(5)
    thread.join(5)
    assert got == [True]


def test_current_cancel_token_outside_a_task_is_a_runtime_error(tc):
    with pytest.raises(RuntimeError, match="worker job"):
        tc.current_cancel_token()


def test_on_cancel_runs_once_and_can_be_unregistered(tc):
    token = tc.CancelToken()
    calls: list[str] = []
    token.on_cancel(lambda: calls.append("a"))
    reg = token.on_cancel(lambda: calls.append("b"))
    assert reg.unregister() is True
    assert reg.unregister() is False
    assert token.cancel() is True
    assert token.cancel() is False
    token.on_cancel(lambda: calls.append("late"))  # already set: runs at once
    assert calls == ["a", "late"]


def test_on_cancel_callback_errors_do_not_stop_the_others(tc, monkeypatch):
    token = tc.CancelToken()
    calls: list[str] = []
    reported: list[BaseException | None] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: reported.append(u.exc_value))

    def bad() -> None:
        raise RuntimeError("bad callback")

    token.on_cancel(bad)
    token.on_cancel(lambda: calls.append("ok"))
    token.cancel()
    assert calls == ["ok"]
    assert len(reported) == 1 and isinstance(reported[0], RuntimeError)


def test_check_raises_the_cancelled_class(tc):
    token = tc.CancelToken()
    token.check()
    token.cancel()
    with pytest.raises(asyncio.CancelledError):
        token.check()


@pytest.mark.parametrize("bad", ["1", True, object()])
def test_wait_rejects_a_non_number_timeout(tc, bad):
    with pytest.raises(TypeError, match="timeout"):
        tc.CancelToken().wait(bad)


def test_wait_rejects_nan(tc):
    with pytest.raises(ValueError, match="NaN"):
        tc.CancelToken().wait(math.nan)


def test_on_cancel_rejects_a_non_callable(tc):
    with pytest.raises(TypeError, match="callable"):
        tc.CancelToken().on_cancel(5)


async def test_worker_that_stops_on_its_token_raises_the_scope_cancellation(tc):
    """A job that sees its token and raises (token.check()) ends the await with the scope's
    own cancellation, which the scope then catches."""

    def crunch() -> None:
        token = tc.current_cancel_token()
        while True:
            token.wait(0.01)
            token.check()

    with tc.move_on_after(0.05) as scope:
        await tc.to_thread.run_sync(crunch)
    assert scope.cancelled_caught
