"""to_thread.run_sync and run_in_thread: differential against AnyIO 4.16, then the
toolcase_rs-only parts (cancel tokens, keyword arguments, error shapes)."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import pytest

var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


async def test_returns_the_result_and_runs_in_another_thread(tlib):
    main = threading.get_ident()
    ident, value = await tlib.to_thread.run_sync(lambda x: (threading.get_ident(), x * 2), 21)
    assert value == 42
    assert ident != main


async def test_exception_keeps_its_type_and_traceback(tlib):
    def boom() -> None:
        raise ValueError("from the worker")

    with pytest.raises(ValueError, match="from the worker") as info:
        await tlib.to_thread.run_sync(boom)
    names = [entry.name for entry in info.traceback]
    assert "boom" in names


async def test_contextvars_are_copied_into_the_worker(tlib):
    var.set("caller")

    def read_and_set() -> str:
        seen = var.get()
        var.set("worker")  # a copy: the caller's value stays
        return seen

    assert await tlib.to_thread.run_sync(read_and_set) == "caller"
    assert var.get() == "caller"


async def test_default_limiter_has_40_tokens_and_is_per_loop(tlib):
    limiter = tlib.to_thread.current_default_thread_limiter()
    assert limiter.total_tokens == 40
    assert tlib.to_thread.current_default_thread_limiter() is limiter


async def test_limiter_bounds_concurrency(tlib):
    limiter = tlib.CapacityLimiter(3)
    lock = threading.Lock()
    running = [0]
    peak = [0]

    def job() -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.01)
        with lock:
            running[0] -= 1

    async with tlib.create_task_group() as tg:
        for _ in range(12):
            tg.start_soon(lambda: tlib.to_thread.run_sync(job, limiter=limiter))
    assert 1 <= peak[0] <= 3


async def test_cancel_without_abandon_waits_for_the_function(tlib):
    finished = threading.Event()

    def slow() -> str:
        time.sleep(0.2)
        finished.set()
        return "done"

    with tlib.move_on_after(0.05) as scope:
        await tlib.to_thread.run_sync(slow)
        await tlib.sleep(1)  # the cancellation arrives at the next checkpoint at the latest
    assert scope.cancelled_caught
    assert finished.is_set(), "the await returned before the function did"


async def test_cancel_with_abandon_raises_at_once(tlib):
    release = threading.Event()

    def blocked() -> None:
        release.wait(5)

    t0 = time.monotonic()
    with tlib.move_on_after(0.05) as scope:
        await tlib.to_thread.run_sync(blocked, abandon_on_cancel=True)
    elapsed = time.monotonic() - t0
    release.set()
    assert scope.cancelled_caught
    assert elapsed < 2.0


async def test_cancellable_is_the_old_name_of_abandon_on_cancel(tlib):
    release = threading.Event()
    with tlib.move_on_after(0.05) as scope, pytest.warns(DeprecationWarning, match="cancellable"):
        await tlib.to_thread.run_sync(release.wait, 5, cancellable=True)
    release.set()
    assert scope.cancelled_caught


async def test_from_thread_run_and_run_sync_reach_the_loop(tlib):
    loop_thread = threading.get_ident()

    async def async_double(x: int) -> tuple[int, int]:
        await tlib.sleep(0)
        return threading.get_ident(), x * 2

    def sync_triple(x: int) -> tuple[int, int]:
        return threading.get_ident(), x * 3

    def worker() -> tuple[tuple[int, int], tuple[int, int]]:
        return (
            tlib.from_thread.run(async_double, 2),
            tlib.from_thread.run_sync(sync_triple, 2),
        )

    (t1, v1), (t2, v2) = await tlib.to_thread.run_sync(worker)
    assert (v1, v2) == (4, 6)
    assert t1 == t2 == loop_thread


async def test_from_thread_errors_propagate_to_the_worker(tlib):
    async def fails() -> None:
        raise KeyError("inner")

    def worker() -> str:
        try:
            tlib.from_thread.run(fails)
        except KeyError as exc:
            return f"caught {exc}"
        return "no error"

    assert await tlib.to_thread.run_sync(worker) == "caught 'inner'"


async def test_from_thread_with_token_from_a_plain_thread(tlib):
    token = tlib.current_token()
    out: list[object] = []

    def plain() -> None:
        out.append(tlib.from_thread.run_sync(lambda: threading.get_ident(), token=token))

    thread = threading.Thread(target=plain)
    thread.start()
    while thread.is_alive():
        await asyncio.sleep(0.005)
    assert out == [threading.get_ident()]


async def test_from_thread_on_the_loop_thread_is_a_runtime_error(tc):
    # (AnyIO 4.16 deadlocks here.)
    token = tc.lowlevel.current_token()
    with pytest.raises(RuntimeError, match="own thread"):
        tc.from_thread.run_sync(lambda: None, token=token)


def test_from_thread_without_a_loop_is_a_runtime_error(tlib):
    with pytest.raises(RuntimeError):
        tlib.from_thread.run_sync(lambda: None)


async def test_check_cancelled_in_a_worker(tlib):
    seen: list[str] = []
    cancelled_exc = tlib.get_cancelled_exc_class()

    def worker() -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                tlib.from_thread.check_cancelled()
            except cancelled_exc:
                seen.append("cancelled")
                return
            time.sleep(0.005)
        seen.append("timed out")

    with tlib.move_on_after(0.05):
        await tlib.to_thread.run_sync(worker)
    assert seen == ["cancelled"]
