"""BlockingPortal, ThreadPool, run_in_thread and run_sync(coro)."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest


def test_start_blocking_portal_call_and_tasks(tlib):
    async def add(a: int, b: int) -> int:
        await tlib.sleep(0)
        return a + b

    with tlib.from_thread.start_blocking_portal() as portal:
        assert portal.call(add, 1, 2) == 3
        assert portal.call(lambda: threading.current_thread().name) != (
            threading.current_thread().name
        )
        future = portal.start_task_soon(add, 3, 4)
        assert future.result(5) == 7


def test_portal_start_task_returns_the_start_value(tlib):
    async def service(*, task_status) -> str:
        task_status.started("ready")
        await tlib.sleep(0.01)
        return "finished"

    with tlib.from_thread.start_blocking_portal() as portal:
        future, value = portal.start_task(service)
        assert value == "ready"
        assert future.result(5) == "finished"


def test_portal_cancelling_the_future_cancels_the_task(tlib):
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await tlib.sleep(30)
        except tlib.get_cancelled_exc_class():
            cancelled.set()
            raise

    with tlib.from_thread.start_blocking_portal() as portal:
        future = portal.start_task_soon(forever)
        time.sleep(0.05)
        future.cancel()
        assert cancelled.wait(5)


def test_portal_wraps_an_async_context_manager(tlib):
    log: list[str] = []

    class Resource:
        async def __aenter__(self) -> str:
            log.append("enter")
            return "resource"

        async def __aexit__(self, *exc: object) -> None:
            log.append(f"exit {exc[0].__name__ if exc[0] else None}")

    with tlib.from_thread.start_blocking_portal() as portal:
        with portal.wrap_async_context_manager(Resource()) as value:
            assert value == "resource"
        with pytest.raises(KeyError):
            with portal.wrap_async_context_manager(Resource()):
                raise KeyError("body")
    assert log == ["enter", "exit None", "enter", "exit KeyError"]


def test_portal_errors_reach_the_caller(tlib):
    async def fails() -> None:
        raise ValueError("in the loop")

    with tlib.from_thread.start_blocking_portal() as portal:
        with pytest.raises(ValueError, match="in the loop"):
            portal.call(fails)


def test_stopped_portal_refuses_calls(tlib):
    with tlib.from_thread.start_blocking_portal() as portal:
        pass
    with pytest.raises(RuntimeError):
        portal.call(lambda: None)


async def test_run_in_thread_passes_keyword_arguments(tc):
    def f(a: int, *, b: int) -> int:
        return a - b

    assert await tc.run_in_thread(f, 10, b=3) == 7


async def test_run_in_thread_rejects_a_coroutine_and_closes_it(tc):
    async def coro_fn() -> None:
        pass

    coro = coro_fn()
    with pytest.raises(TypeError, match="coroutine"):
        await tc.run_in_thread(coro)
    assert coro.cr_frame is None  # closed: no "never awaited" warning


async def test_run_in_thread_rejects_a_non_callable(tc):
    with pytest.raises(TypeError, match="callable"):
        await tc.to_thread.run_sync(5)


async def test_thread_pool_bounds_its_threads_and_names_them(tc):
    names: set[str] = set()
    lock = threading.Lock()

    def job() -> None:
        with lock:
            names.add(threading.current_thread().name)
        time.sleep(0.01)

    async with tc.ThreadPool(2, thread_name_prefix="mypool-") as pool:
        await asyncio.gather(*(pool.run(job) for _ in range(8)))
        assert pool.statistics().threads <= 2
    assert 1 <= len(names) <= 2
    assert all(n.startswith("mypool-") for n in names)


async def test_thread_pool_submit_returns_a_future(tc):
    async with tc.ThreadPool(1) as pool:
        fut = pool.submit(lambda x: x + 1, 1)
        assert isinstance(fut, asyncio.Future)
        assert await fut == 2


async def test_thread_pool_after_shutdown_refuses_jobs(tc):
    pool = tc.ThreadPool(1)
    pool.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        await pool.run(lambda: None)


async def test_thread_pool_from_executor(tc):
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        pool = tc.ThreadPool.from_executor(ex)
        assert await pool.run(lambda a, b=0: a + b, 1, b=2) == 3
        pool.shutdown()  # does not shut the executor down
        assert ex.submit(lambda: 5).result() == 5


@pytest.mark.parametrize("bad", [0, -1])
def test_thread_pool_rejects_bad_sizes(tc, bad):
    with pytest.raises(ValueError, match="max_workers"):
        tc.ThreadPool(bad)


def test_thread_pool_rejects_a_non_int_size(tc):
    with pytest.raises(TypeError, match="max_workers"):
        tc.ThreadPool("4")


def test_run_sync_without_a_loop(tc):
    async def main() -> int:
        await asyncio.sleep(0)
        return 5

    assert tc.run_sync(main()) == 5


async def test_run_sync_inside_a_running_loop_uses_a_helper_thread(tc):
    loop_thread = threading.get_ident()

    async def inner() -> int:
        await asyncio.sleep(0)
        return threading.get_ident()

    assert tc.run_sync(inner()) != loop_thread


def test_run_sync_rejects_a_function(tc):
    async def main() -> None:
        pass

    with pytest.raises(TypeError, match="coroutine object"):
        tc.run_sync(main)  # type: ignore[arg-type]


def test_loop_closing_while_a_job_runs_drops_the_completion_quietly(tc):
    release = threading.Event()
    started = threading.Event()

    async def main() -> None:
        def job() -> None:
            started.set()
            release.wait(5)

        task = asyncio.ensure_future(tc.to_thread.run_sync(job, abandon_on_cancel=True))
        await asyncio.sleep(0)
        started.wait(5)
        assert not task.done()

    loop = asyncio.new_event_loop()
    loop.run_until_complete(main())
    for task in asyncio.all_tasks(loop):
        task.cancel()
    loop.run_until_complete(asyncio.sleep(0.01))
    loop.close()
    release.set()
    time.sleep(0.05)  # the job finishes and posts to the closed loop: dropped, no warning


def test_from_thread_into_a_closed_loop_raises(tc):
    async def grab() -> object:
        return tc.lowlevel.current_token()

    token = asyncio.run(grab())
    with pytest.raises(RuntimeError, match="closed"):
        tc.from_thread.run_sync(lambda: None, token=token)


async def test_blocking_jobs_get_a_thread_each(tc):
    """Jobs that block on each other need as many threads as there are jobs: the pool must
    start them all, not queue them behind one busy thread."""
    parties = 8
    barrier = threading.Barrier(parties, timeout=5)
    results = await asyncio.gather(*(tc.to_thread.run_sync(barrier.wait) for _ in range(parties)))
    assert sorted(results) == list(range(parties))


async def test_thread_pool_spreads_blocking_jobs_up_to_max_workers(tc):
    barrier = threading.Barrier(3, timeout=5)
    async with tc.ThreadPool(3) as pool:
        results = await asyncio.gather(*(pool.run(barrier.wait) for _ in range(3)))
    assert sorted(results) == [0, 1, 2]


async def test_burst_of_short_jobs_all_complete(tc):
    results = await asyncio.gather(*(tc.to_thread.run_sync(abs, -i) for i in range(2000)))
    assert results == list(range(2000))
    stats = tc.worker_thread_statistics()
    assert stats.busy == 0 and stats.queued == 0


async def test_mixed_short_and_blocking_jobs_never_stall(tc):
    import random

    rng = random.Random(7)

    def job(i: int, delay: float) -> int:
        if delay:
            time.sleep(delay)
        return i

    async with tc.ThreadPool(4) as pool:
        for _ in range(20):
            delays = [rng.choice([0, 0, 0, 0.001, 0.003]) for _ in range(50)]
            out = await asyncio.gather(*(pool.run(job, i, d) for i, d in enumerate(delays)))
            assert out == list(range(50))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_worker_threads_work_in_a_forked_child(tc):
    import warnings

    asyncio.run(tc.to_thread.run_sync(lambda: None))  # the parent's pool has threads now
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "multi-threaded ... fork()"
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            value = asyncio.run(asyncio.wait_for(tc.to_thread.run_sync(lambda: 41 + 1), 5))
            code = 0 if value == 42 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.parametrize(
    "body",
    [
        "asyncio.run(tc.to_thread.run_sync(lambda: None))",
        # A job still running when the program ends: the exit waits for it.
        "import time\n"
        "async def main():\n"
        "    with tc.move_on_after(0.05):\n"
        "        await tc.to_thread.run_sync(time.sleep, 0.3, abandon_on_cancel=True)\n"
        "asyncio.run(main())",
    ],
    ids=["idle-workers", "running-job"],
)
def test_interpreter_exits_cleanly_with_worker_threads(body):
    import subprocess
    import sys

    code = f"import asyncio\nimport toolcase_rs as tc\n{body}\nprint('ok')\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    assert proc.stderr == ""
