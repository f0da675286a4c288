# Benchmark suite for spec section 4 (threads), plugged into `engine` via `SUITES`.
#
#   thread-seq   sequential round trips through a worker thread (`run_sync(fn)` of a trivial
#                function, awaited one after the other) vs `asyncio.to_thread` and AnyIO's
#                `to_thread.run_sync`. Budget: 0.5x asyncio.
#   thread-many  1,000 trivial jobs started at once through the default thread limiter (40
#                threads), per job vs the same for asyncio and AnyIO. Budget: <= 6 µs per job and
#                faster than both.
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
    ]
