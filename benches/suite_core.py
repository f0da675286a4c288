# Benchmark suite for task groups, cancel scopes and deadlines, plugged into `engine` via
# `SUITES`.
#
# What it owns: the budgeted workloads that concern task groups, cancel
# scopes and deadlines, each written once per implementation: asyncio (the reference, always
# first), AnyIO 4.16 task groups and scopes, and toolcase_rs.
#
#   spawn-suspend / spawn-nosuspend   spawn+join N children that suspend once / never suspend.
#   empty-group                       an empty task group's enter/exit.
#   cancel-scope / move-on-after      a scope's enter/exit, not firing.
#   fire-overshoot                    how late a 1 ms deadline ends a scope (latency).
#   cancel-children                   from the cancel call to group exit, children parked.
#   memory                            RSS per parked child, in a fresh interpreter.
#
# Invariant: the child coroutines and what the children wait on are the same for every
# implementation, so only the group or scope machinery differs.
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from engine import FIRE_DELAY, Body, Impl, Probe, Sizes, Workload

__all__ = ["workloads"]


async def _suspend_once() -> None:
    await asyncio.sleep(0)


async def _return_one() -> int:
    return 1


async def _sleep_long() -> None:
    await asyncio.sleep(3600)


async def _park(event: asyncio.Event) -> None:
    await event.wait()


async def _settle() -> None:
    # Children start on the loop iteration after they are spawned; a few yields park them all.
    for _ in range(3):
        await asyncio.sleep(0)


def _start_soon_body(factory: Callable[[], Any], child: Callable[[], Awaitable[Any]]) -> Body:
    async def body(n: int, probe: Probe) -> None:
        probe.start()
        async with factory() as tg:
            for _ in range(n):
                tg.start_soon(child)
        probe.stop()

    return body


def _spawn_bodies(
    child: Callable[[], Coroutine[Any, Any, Any]], tc: Any, anyio: Any, budget: float | None
) -> list[Impl]:
    async def on_asyncio(n: int, probe: Probe) -> None:
        probe.start()
        async with asyncio.TaskGroup() as tg:
            for _ in range(n):
                tg.create_task(child())
        probe.stop()

    impls = [Impl("asyncio.TaskGroup", on_asyncio)]
    if anyio is not None:
        impls.append(Impl("anyio task group", _start_soon_body(anyio.create_task_group, child)))
    if tc is not None:
        impls.append(Impl("toolcase_rs.TaskGroup", _start_soon_body(tc.TaskGroup, child), budget))
    return impls


def workloads(sizes: Sizes, tc: Any, anyio: Any) -> list[Workload]:
    """The task group, cancel scope and deadline workloads for this run's sizes."""
    r = sizes.rounds
    out: list[Workload] = []

    # -- task groups ------------------------------------------------------------------------
    impls = _spawn_bodies(_suspend_once, tc, anyio, budget=1.0)
    out.append(
        Workload(
            "spawn-suspend",
            f"spawn+join {sizes.children:,} children, suspend once",
            "time",
            sizes.children,
            r,
            "child",
            impls,
        )
    )

    impls = _spawn_bodies(_return_one, tc, anyio, budget=None)
    if tc is not None:
        eager = _start_soon_body(lambda: tc.TaskGroup(eager=True), _return_one)
        impls.append(Impl("toolcase_rs.TaskGroup(eager=True)", eager, 0.2))
    out.append(
        Workload(
            "spawn-nosuspend",
            f"spawn+join {sizes.children:,} children, never suspend",
            "time",
            sizes.children,
            r,
            "child",
            impls,
        )
    )

    async def empty_asyncio(n: int, probe: Probe) -> None:
        probe.start()
        for _ in range(n):
            async with asyncio.TaskGroup():
                pass
        probe.stop()

    def empty_body(factory: Callable[[], Any]) -> Body:
        async def body(n: int, probe: Probe) -> None:
            probe.start()
            for _ in range(n):
                async with factory():
                    pass
            probe.stop()

        return body

    impls = [Impl("asyncio.TaskGroup", empty_asyncio)]
    if anyio is not None:
        impls.append(Impl("anyio task group", empty_body(anyio.create_task_group)))
    if tc is not None:
        impls.append(Impl("toolcase_rs.TaskGroup", empty_body(tc.TaskGroup)))
    out.append(
        Workload(
            "empty-group",
            "empty task group enter/exit",
            "time",
            sizes.empty_groups,
            r,
            "",
            impls,
        )
    )

    # -- cancel scopes ----------------------------------------------------------------------
    def timeout_body(delay: float | None) -> Body:
        async def body(n: int, probe: Probe) -> None:
            timeout = asyncio.timeout
            probe.start()
            for _ in range(n):
                async with timeout(delay):
                    pass
            probe.stop()

        return body

    def sync_scope_body(factory: Callable[[], Any]) -> Body:
        async def body(n: int, probe: Probe) -> None:
            probe.start()
            for _ in range(n):
                with factory():
                    pass
            probe.stop()

        return body

    impls = [Impl("async with asyncio.timeout(None)", timeout_body(None))]
    if anyio is not None:
        impls.append(Impl("with anyio.CancelScope()", sync_scope_body(anyio.CancelScope)))
    if tc is not None:
        impls.append(Impl("with toolcase_rs.CancelScope()", sync_scope_body(tc.CancelScope), 0.3))
    out.append(
        Workload(
            "cancel-scope",
            "CancelScope() enter/exit",
            "time",
            sizes.enter_exits,
            r,
            "",
            impls,
        )
    )

    impls = [Impl("async with asyncio.timeout(10)", timeout_body(10))]
    if anyio is not None:
        impls.append(
            Impl("with anyio.move_on_after(10)", sync_scope_body(lambda: anyio.move_on_after(10)))
        )
    if tc is not None:
        impls.append(
            Impl(
                "with toolcase_rs.move_on_after(10)",
                sync_scope_body(lambda: tc.move_on_after(10)),
                0.3,
            )
        )
    out.append(
        Workload(
            "move-on-after",
            "move_on_after(10) enter/exit",
            "time",
            sizes.enter_exits,
            r,
            "",
            impls,
        )
    )

    # -- deadlines that fire ----------------------------------------------------------------
    async def fire_asyncio(n: int, probe: Probe) -> None:
        probe.start()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(FIRE_DELAY):
                await asyncio.sleep(1)
        probe.stop()

    def fire_body(factory: Callable[[float], Any]) -> Body:
        async def body(n: int, probe: Probe) -> None:
            probe.start()
            with factory(FIRE_DELAY):
                await asyncio.sleep(1)
            probe.stop()

        return body

    impls = [Impl("asyncio.timeout(0.001)", fire_asyncio)]
    if anyio is not None:
        impls.append(Impl("anyio.move_on_after(0.001)", fire_body(anyio.move_on_after)))
    if tc is not None:
        impls.append(Impl("toolcase_rs.move_on_after(0.001)", fire_body(tc.move_on_after), 1.0))
    out.append(
        Workload(
            "fire-overshoot",
            "1 ms deadline, firing overshoot",
            "latency",
            max(1, sizes.fire_samples // r),
            r,
            "sample",
            impls,
        )
    )

    # -- cancelling a group -----------------------------------------------------------------
    async def cancel_asyncio(n: int, probe: Probe) -> None:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(_sleep_long()) for _ in range(n)]
            await _settle()
            probe.start()
            for task in tasks:
                task.cancel()
        probe.stop()

    def cancel_scope_body(factory: Callable[[], Any]) -> Body:
        async def body(n: int, probe: Probe) -> None:
            async with factory() as tg:
                for _ in range(n):
                    tg.start_soon(_sleep_long)
                await _settle()
                probe.start()
                tg.cancel_scope.cancel()
            probe.stop()

        return body

    impls = [Impl("asyncio: task.cancel() on each", cancel_asyncio)]
    if anyio is not None:
        impls.append(
            Impl("anyio: tg.cancel_scope.cancel()", cancel_scope_body(anyio.create_task_group))
        )
    if tc is not None:
        impls.append(Impl("toolcase_rs: tg.cancel_scope.cancel()", cancel_scope_body(tc.TaskGroup)))
    out.append(
        Workload(
            "cancel-children",
            f"cancel {sizes.cancel_children:,} sleeping children",
            "time",
            sizes.cancel_children,
            r,
            "child",
            impls,
        )
    )

    # -- memory -----------------------------------------------------------------------------
    async def park_asyncio(n: int, probe: Probe) -> None:
        event = asyncio.Event()
        async with asyncio.TaskGroup() as tg:
            probe.start()
            for _ in range(n):
                tg.create_task(_park(event))
            await _settle()
            probe.stop()
            event.set()

    def park_body(factory: Callable[[], Any]) -> Body:
        async def body(n: int, probe: Probe) -> None:
            event = asyncio.Event()
            async with factory() as tg:
                probe.start()
                for _ in range(n):
                    tg.start_soon(_park, event)
                await _settle()
                probe.stop()
                event.set()

        return body

    impls = [Impl("asyncio.TaskGroup", park_asyncio)]
    if anyio is not None:
        impls.append(Impl("anyio task group", park_body(anyio.create_task_group)))
    if tc is not None:
        impls.append(Impl("toolcase_rs.TaskGroup", park_body(tc.TaskGroup), 1.0))
    out.append(
        Workload(
            "memory",
            f"memory per sleeping child (N={sizes.memory_children:,})",
            "memory",
            sizes.memory_children,
            sizes.memory_rounds,
            "child",
            impls,
        )
    )
    return out
