"""Adapters and decorators (sync_to_async, async_to_sync, AsyncAdapter, SyncAdapter, threadpool,
processpool, ThreadContext) and `map_async(executor=)`, with a real Dask cluster."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time

import pytest
import toolcase_rs as tc


def cube(x: int) -> int:
    return x**3


@tc.processpool
def cube_in_a_process(x: int) -> int:
    import os

    return x**3 + 0 * os.getpid()


@tc.threadpool
def thread_name() -> str:
    return threading.current_thread().name


async def test_sync_to_async_runs_on_a_worker_thread():
    @tc.sync_to_async
    def where(x: int) -> tuple[int, int]:
        return threading.get_ident(), x

    ident, x = await where(3)
    assert x == 3 and ident != threading.get_ident()
    assert where.__name__ == "where"


def test_async_to_sync_and_sync_adapter():
    async def double(x: int) -> int:
        await asyncio.sleep(0)
        return 2 * x

    assert tc.async_to_sync(double)(4) == 8
    assert tc.SyncAdapter(double)(5) == 10


async def test_async_adapter_with_and_without_an_executor():
    assert await tc.AsyncAdapter(cube)(2) == 8
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        assert await tc.AsyncAdapter(cube, executor=ex)(3) == 27


def test_adapters_reject_the_wrong_kind_of_function():
    async def coro_fn() -> None:
        pass

    with pytest.raises(TypeError, match="already async"):
        tc.sync_to_async(coro_fn)
    with pytest.raises(TypeError, match="callable"):
        tc.async_to_sync(5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Executor"):
        tc.AsyncAdapter(cube, executor=object())  # type: ignore[arg-type]


async def test_threadpool_decorator_bare_and_with_a_pool():
    assert (await thread_name()).startswith("toolcase_rs-worker-")
    async with tc.ThreadPool(1, thread_name_prefix="deco-") as pool:

        @tc.threadpool(pool=pool)
        def named() -> str:
            return threading.current_thread().name

        assert (await named()).startswith("deco-")


async def test_processpool_decorator_sends_the_original_function():
    assert await cube_in_a_process(3) == 27
    async with tc.ProcessPool(1) as pool:
        deco = tc.processpool(pool=pool)

        assert await deco(cube)(4) == 64


def test_decorator_rejects_the_wrong_pool():
    with pytest.raises(TypeError, match="ThreadPool"):
        tc.threadpool(pool=tc.ProcessPool(1))  # type: ignore[arg-type]


async def test_thread_context_lets_plain_threads_call_back():
    out: list[object] = []
    async with tc.ThreadContext() as ctx:
        assert ctx.loop is asyncio.get_running_loop()

        def plain() -> None:
            out.append(tc.from_thread.run_sync(threading.get_ident))

        thread = threading.Thread(target=plain)
        thread.start()
        while thread.is_alive():
            await asyncio.sleep(0.005)
    assert out == [threading.get_ident()]


def test_without_thread_context_plain_threads_get_a_clear_error():
    errors: list[BaseException] = []

    def plain() -> None:
        try:
            tc.from_thread.run_sync(lambda: None)
        except RuntimeError as exc:
            errors.append(exc)

    thread = threading.Thread(target=plain)
    thread.start()
    thread.join(5)
    assert len(errors) == 1 and "token" in str(errors[0])


def slow_square(x: int) -> int:
    time.sleep(0.01)
    return x * x


async def test_map_async_on_an_executor_keeps_order_limit_and_progress():
    ticks: list[int] = []
    running = [0]
    peak = [0]
    lock = threading.Lock()

    def tracked(x: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            return slow_square(x)
        finally:
            with lock:
                running[0] -= 1

    with concurrent.futures.ThreadPoolExecutor(8) as ex:
        out = await tc.map_async(
            tracked, range(20), limit=3, executor=ex, progress=lambda d, t: ticks.append(d)
        )
    assert out == [x * x for x in range(20)]
    assert peak[0] <= 3
    assert ticks[-1] == 20


async def test_map_async_on_a_process_pool_executor():
    with concurrent.futures.ProcessPoolExecutor(2) as ex:
        assert await tc.map_async(cube, range(6), limit=2, executor=ex) == [x**3 for x in range(6)]


async def test_map_async_executor_cancel_cancels_pending_and_waits_for_running():
    started: list[int] = []
    finished: list[int] = []
    lock = threading.Lock()

    def job(x: int) -> int:
        with lock:
            started.append(x)
        time.sleep(0.1)
        with lock:
            finished.append(x)
        return x

    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        with tc.move_on_after(0.05) as scope:
            await tc.map_async(job, range(50), limit=2, executor=ex)
        assert scope.cancelled_caught
        assert sorted(started) == sorted(finished), "a running job outlived the cancelled map"
        assert len(started) <= 4


async def test_map_async_executor_rejects_async_functions():
    async def afn(x: int) -> int:
        return x

    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        with pytest.raises(TypeError, match="sync function"):
            await tc.map_async(afn, [1], executor=ex)
        with pytest.raises(TypeError, match="Executor"):
            await tc.map_async(cube, [1], executor=object())  # type: ignore[arg-type]


distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module", params=["threads", "processes"])
def dask_executor(request):
    import logging

    logging.getLogger("distributed").setLevel(logging.ERROR)
    options = {"host": "127.0.0.1"} if request.param == "processes" else {}
    with distributed.Client(
        processes=request.param == "processes",
        n_workers=2,
        threads_per_worker=1,
        dashboard_address=None,
        **options,
    ) as client:
        yield client.get_executor()


@pytest.mark.timeout(120)
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::ResourceWarning")
async def test_map_async_on_a_dask_cluster(dask_executor):
    out = await tc.map_async(cube, range(10), limit=4, executor=dask_executor)
    assert out == [x**3 for x in range(10)]


@pytest.mark.timeout(120)
@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::ResourceWarning")
async def test_map_async_on_a_dask_cluster_cancelled_mid_map(dask_executor):
    t0 = time.monotonic()
    with tc.move_on_after(0.3) as scope:
        await tc.map_async(slow_square, range(1000), limit=2, executor=dask_executor)
    assert scope.cancelled_caught
    assert time.monotonic() - t0 < 30
    # The cluster still works afterwards.
    assert await tc.map_async(cube, [2], executor=dask_executor) == [8]
