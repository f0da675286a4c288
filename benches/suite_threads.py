# Benchmark suite for spec section 4 (threads), plugged into `engine` via `SUITES`.
#
#   thread-seq   sequential round trips through a worker thread (`run_sync(fn)` of a trivial
#                function, awaited one after the other) vs `asyncio.to_thread` and AnyIO's
#                `to_thread.run_sync`. Budget: 0.5x asyncio.
#   thread-many  1,000 trivial jobs started at once through the default thread limiter (40
#                threads), per job vs the same for asyncio and AnyIO. Budget: <= 6 µs per job and
#                faster than both.
#
#   process-rt   sequential `run_in_process` round trips of a trivial function vs
#                `loop.run_in_executor(ProcessPoolExecutor)` and `anyio.to_process.run_sync`
#                (workers warmed up first). Budget: 0.5x of both.
#   process-cancel  from cancelling a running process job to the await raising (latency:
#                mean and p95 reported; not budgeted).
#
# Invariant: each body awaits every job it started before `probe.stop()`.
from __future__ import annotations

import asyncio
from typing import Any

from engine import Impl, Probe, Sizes, Workload

__all__ = ["workloads"]

MANY = 1_000


def _noop(i: int) -> int:
    return i


def _seq_impls(tc: Any, anyio: Any) -> list[Impl]:
    async def on_asyncio(n: int, probe: Probe) -> None:
        probe.start()
        for i in range(n):
            await asyncio.to_thread(_noop, i)
        probe.stop()

    impls = [Impl("asyncio.to_thread", on_asyncio)]
    if anyio is not None:
        import anyio.to_thread

        async def on_anyio(n: int, probe: Probe) -> None:
            probe.start()
            for i in range(n):
                await anyio.to_thread.run_sync(_noop, i)
            probe.stop()

        impls.append(Impl("anyio.to_thread.run_sync", on_anyio))
    if tc is not None:

        async def on_toolcase(n: int, probe: Probe) -> None:
            run_sync = tc.to_thread.run_sync
            probe.start()
            for i in range(n):
                await run_sync(_noop, i)
            probe.stop()

        impls.append(Impl("toolcase_rs.to_thread.run_sync", on_toolcase, 0.5))
    return impls


def _many_impls(tc: Any, anyio: Any) -> list[Impl]:
    async def on_asyncio(n: int, probe: Probe) -> None:
        probe.start()
        for _ in range(n // MANY):
            await asyncio.gather(*(asyncio.to_thread(_noop, i) for i in range(MANY)))
        probe.stop()

    impls = [Impl("asyncio.to_thread + gather", on_asyncio)]
    labels = ["asyncio.to_thread + gather"]
    if anyio is not None:
        import anyio.to_thread

        async def on_anyio(n: int, probe: Probe) -> None:
            probe.start()
            for _ in range(n // MANY):
                async with anyio.create_task_group() as tg:
                    for i in range(MANY):
                        tg.start_soon(anyio.to_thread.run_sync, _noop, i)
            probe.stop()

        impls.append(Impl("anyio task group of to_thread.run_sync", on_anyio))
        labels.append("anyio task group of to_thread.run_sync")
    if tc is not None:

        async def on_toolcase(n: int, probe: Probe) -> None:
            run_sync = tc.to_thread.run_sync
            probe.start()
            for _ in range(n // MANY):
                async with tc.TaskGroup() as tg:
                    for i in range(MANY):
                        tg.start_soon(run_sync, _noop, i)
            probe.stop()

        impls.append(
            Impl(
                "toolcase_rs task group of to_thread.run_sync",
                on_toolcase,
                1.0,
                budget_vs=tuple(labels),
                max_value=6e-6,
            )
        )
    return impls


def _process_impls(tc: Any, anyio: Any) -> list[Impl]:
    import concurrent.futures

    executor: list[concurrent.futures.ProcessPoolExecutor] = []

    async def on_asyncio(n: int, probe: Probe) -> None:
        if not executor:
            executor.append(concurrent.futures.ProcessPoolExecutor(2))
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(executor[0], _noop, 0)
        probe.start()
        for i in range(n):
            await loop.run_in_executor(executor[0], _noop, i)
        probe.stop()

    impls = [Impl("loop.run_in_executor(ProcessPoolExecutor)", on_asyncio)]
    labels = ["loop.run_in_executor(ProcessPoolExecutor)"]
    if anyio is not None:
        import anyio.to_process

        async def on_anyio(n: int, probe: Probe) -> None:
            await anyio.to_process.run_sync(_noop, 0)
            probe.start()
            for i in range(n):
                await anyio.to_process.run_sync(_noop, i)
            probe.stop()

        impls.append(Impl("anyio.to_process.run_sync", on_anyio))
        labels.append("anyio.to_process.run_sync")
    if tc is not None:

        async def on_toolcase(n: int, probe: Probe) -> None:
            await tc.run_in_process(_noop, 0)
            probe.start()
            for i in range(n):
                await tc.run_in_process(_noop, i)
            probe.stop()

        impls.append(Impl("toolcase_rs.run_in_process", on_toolcase, 0.5, budget_vs=tuple(labels)))
    return impls


def _nap() -> None:
    import time

    time.sleep(0.05)


def _sleep_long() -> None:
    import time

    time.sleep(30)


def _cancel_impls(tc: Any, anyio: Any) -> list[Impl]:
    import concurrent.futures

    executor: list[concurrent.futures.ProcessPoolExecutor] = []

    async def cancel_after_start(start: Any, probe: Probe) -> None:
        task = asyncio.ensure_future(start())
        await asyncio.sleep(0.02)  # the job is running in its worker now
        probe.start()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            probe.stop()
        else:
            raise RuntimeError("the job was not cancelled")

    async def on_asyncio(n: int, probe: Probe) -> None:
        if not executor:
            executor.append(concurrent.futures.ProcessPoolExecutor(1))
        loop = asyncio.get_running_loop()
        await cancel_after_start(lambda: loop.run_in_executor(executor[0], _nap), probe)

    impls = [Impl("run_in_executor (the process is not stopped)", on_asyncio)]
    if anyio is not None:
        import anyio.to_process

        async def on_anyio(n: int, probe: Probe) -> None:
            await cancel_after_start(
                lambda: anyio.to_process.run_sync(_sleep_long, cancellable=True), probe
            )

        impls.append(Impl("anyio.to_process.run_sync(cancellable=True)", on_anyio))
    if tc is not None:

        async def on_toolcase(n: int, probe: Probe) -> None:
            await cancel_after_start(lambda: tc.run_in_process(_sleep_long), probe)

        impls.append(Impl("toolcase_rs.run_in_process (worker killed)", on_toolcase))
    return impls


def workloads(sizes: Sizes, tc: Any, anyio: Any) -> list[Workload]:
    """The section 4 workloads for this run's sizes (see the module note)."""
    r = sizes.rounds
    n_seq = max(200, sizes.children // 10)
    n_many = max(1, sizes.children // MANY) * MANY
    return [
        Workload(
            "thread-seq",
            f"worker thread round trip, {n_seq:,} sequential calls",
            "time",
            n_seq,
            r,
            "call",
            _seq_impls(tc, anyio),
        ),
        Workload(
            "thread-many",
            f"{n_many:,} trivial jobs, {MANY:,} at a time, default thread limiter",
            "time",
            n_many,
            r,
            "job",
            _many_impls(tc, anyio),
        ),
        Workload(
            "process-rt",
            f"worker process round trip, {n_seq // 2:,} sequential calls",
            "time",
            n_seq // 2,
            r,
            "call",
            _process_impls(tc, anyio),
        ),
        Workload(
            "process-cancel",
            "cancel a running process job: until the await raises",
            "latency",
            max(3, sizes.fire_samples // 20),
            r,
            "",
            _cancel_impls(tc, anyio),
            offset=0.0,
        ),
    ]
