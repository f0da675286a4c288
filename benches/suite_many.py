# Benchmark suite for spec section 3 ("waiting on many"), plugged into `engine` via `SUITES`.
#
# What it owns: four workloads, each written once per implementation: asyncio (the reference,
# always first), AnyIO 4.16 (task group equivalents: AnyIO has no gather/race/map), aiometer
# (`run_all`, where it has an equivalent) and toolcase_rs.
#
#   gather     `gather` of N trivial coroutines (return at once) vs `asyncio.gather`.
#   map-limit  `map_async(fn, items, limit=50)` over N/2 items (fn suspends once) vs an
#              `asyncio.Semaphore` + `asyncio.gather`.
#   race       `race` of 3 (one winner after one suspension, two parked losers that are
#              cancelled) vs `asyncio.wait(FIRST_COMPLETED)` + cancel + await the losers.
#   fan-out    N/2 "requests" of 5 ms (`asyncio.sleep(0.005)`) with at most 200 in flight:
#              efficiency = ideal time (N/2 / 200 * 5 ms) / measured time. One extra,
#              unbudgeted row runs 200 bare chains of sleeps with no limiter at all: the most
#              that this event loop can deliver for the workload (its timer granularity, not
#              the limiter, decides the rest).
#
# Sizes derive from `Sizes.children` and `Sizes.rounds`, so `--quick` stays quick. Coroutines
# are created outside the measured region where the API takes coroutine objects (gather), and
# inside it where the API takes functions (the others), the same way for every implementation.
#
# Invariant: each body awaits everything it started before `probe.stop()`, so no work leaks
# into the next measurement.
from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from engine import Impl, Probe, Sizes, Workload

__all__ = ["workloads"]

MAP_LIMIT = 50
FAN_LIMIT = 200
FAN_DELAY = 0.005


def _optional(name: str) -> Any:
    try:
        return __import__(name)
    except Exception:  # absent or broken: no rows for it
        return None


async def _value(i: int) -> int:
    return i


async def _suspend_value(i: int) -> int:
    await asyncio.sleep(0)
    return i


async def _request(i: int) -> int:
    await asyncio.sleep(FAN_DELAY)
    return i


async def _winner() -> int:
    await asyncio.sleep(0)
    return 1


async def _loser() -> int:
    await asyncio.sleep(3600)
    return 0


def _check(results: list[Any], n: int) -> None:
    if results != list(range(n)):
        raise RuntimeError("wrong results")


# -- gather -----------------------------------------------------------------------------------


def _gather_impls(tc: Any, anyio: Any, aiometer: Any) -> list[Impl]:
    async def on_asyncio(n: int, probe: Probe) -> None:
        coros = [_value(i) for i in range(n)]
        probe.start()
        results = await asyncio.gather(*coros)
        probe.stop()
        _check(results, n)

    impls = [Impl("asyncio.gather", on_asyncio)]
    if anyio is not None:

        async def on_anyio(n: int, probe: Probe) -> None:
            results: list[Any] = [None] * n

            async def run(i: int) -> None:
                results[i] = await _value(i)

            probe.start()
            async with anyio.create_task_group() as tg:
                for i in range(n):
                    tg.start_soon(run, i)
            probe.stop()
            _check(results, n)

        impls.append(Impl("anyio task group, results by index", on_anyio))
    if aiometer is not None:

        async def on_aiometer(n: int, probe: Probe) -> None:
            fns = [functools.partial(_value, i) for i in range(n)]
            probe.start()
            results = await aiometer.run_all(fns)
            probe.stop()
            _check(results, n)

        impls.append(Impl("aiometer.run_all", on_aiometer))
    if tc is not None:

        async def on_toolcase(n: int, probe: Probe) -> None:
            coros = [_value(i) for i in range(n)]
            probe.start()
            results = await tc.gather(*coros)
            probe.stop()
            _check(results, n)

        impls.append(Impl("toolcase_rs.gather", on_toolcase, 0.9))
    return impls


# -- map with a limit -------------------------------------------------------------------------


def _map_impls(
    tc: Any, anyio: Any, aiometer: Any, fn: Callable[[int], Awaitable[int]], limit: int
) -> list[Impl]:
    async def on_asyncio(n: int, probe: Probe) -> None:
        probe.start()
        semaphore = asyncio.Semaphore(limit)

        async def one(i: int) -> int:
            async with semaphore:
                return await fn(i)

        results = await asyncio.gather(*[one(i) for i in range(n)])
        probe.stop()
        _check(results, n)

    impls = [Impl("asyncio.Semaphore + gather", on_asyncio)]
    if anyio is not None:

        async def on_anyio(n: int, probe: Probe) -> None:
            probe.start()
            limiter = anyio.CapacityLimiter(limit)
            results: list[Any] = [None] * n

            async def one(i: int) -> None:
                async with limiter:
                    results[i] = await fn(i)

            async with anyio.create_task_group() as tg:
                for i in range(n):
                    tg.start_soon(one, i)
            probe.stop()
            _check(results, n)

        impls.append(Impl("anyio CapacityLimiter + task group", on_anyio))
    if aiometer is not None:

        async def on_aiometer(n: int, probe: Probe) -> None:
            probe.start()
            fns = [functools.partial(fn, i) for i in range(n)]
            results = await aiometer.run_all(fns, max_at_once=limit)
            probe.stop()
            _check(results, n)

        impls.append(Impl(f"aiometer.run_all(max_at_once={limit})", on_aiometer))
    return impls


def _map_toolcase(tc: Any, fn: Callable[[int], Awaitable[int]], limit: int) -> Callable[..., Any]:
    async def on_toolcase(n: int, probe: Probe) -> None:
        probe.start()
        results = await tc.map_async(fn, range(n), limit=limit)
        probe.stop()
        _check(results, n)

    return on_toolcase


# -- race -------------------------------------------------------------------------------------


def _race_impls(tc: Any, anyio: Any) -> list[Impl]:
    async def on_asyncio(n: int, probe: Probe) -> None:
        create_task = asyncio.create_task
        wait = asyncio.wait
        first = asyncio.FIRST_COMPLETED
        probe.start()
        for _ in range(n):
            tasks = [create_task(_winner()), create_task(_loser()), create_task(_loser())]
            done, pending = await wait(tasks, return_when=first)
            for task in pending:
                task.cancel()
            await wait(pending)
            if done.pop().result() != 1:
                raise RuntimeError("wrong winner")
        probe.stop()

    impls = [Impl("asyncio.wait(FIRST_COMPLETED) + cancel + wait", on_asyncio)]
    if anyio is not None:

        async def on_anyio(n: int, probe: Probe) -> None:
            async def racer(fn: Callable[[], Coroutine[Any, Any, int]], box: list[int]) -> None:
                value = await fn()
                if not box:
                    box.append(value)
                    tg.cancel_scope.cancel()

            probe.start()
            for _ in range(n):
                box: list[int] = []
                async with anyio.create_task_group() as tg:
                    tg.start_soon(racer, _winner, box)
                    tg.start_soon(racer, _loser, box)
                    tg.start_soon(racer, _loser, box)
                if box != [1]:
                    raise RuntimeError("wrong winner")
            probe.stop()

        impls.append(Impl("anyio task group, first cancels the scope", on_anyio))
    if tc is not None:

        async def on_toolcase(n: int, probe: Probe) -> None:
            race = tc.race
            probe.start()
            for _ in range(n):
                if await race(_winner(), _loser(), _loser()) != 1:
                    raise RuntimeError("wrong winner")
            probe.stop()

        impls.append(Impl("toolcase_rs.race", on_toolcase, 0.7))
    return impls


# -- I/O fan-out ------------------------------------------------------------------------------


def _fan_ceiling(limit: int) -> Callable[..., Any]:
    async def chain(steps: int) -> None:
        for _ in range(steps):
            await asyncio.sleep(FAN_DELAY)

    async def body(n: int, probe: Probe) -> None:
        probe.start()
        await asyncio.gather(*[chain(n // limit) for _ in range(limit)])
        probe.stop()

    return body


def workloads(sizes: Sizes, tc: Any, anyio: Any) -> list[Workload]:
    """The section 3 workloads for this run's sizes (see the module note)."""
    aiometer = _optional("aiometer")
    r = sizes.rounds
    out: list[Workload] = []

    n = sizes.children
    out.append(
        Workload(
            "gather",
            f"gather {n:,} trivial coroutines",
            "time",
            n,
            r,
            "coroutine",
            _gather_impls(tc, anyio, aiometer),
        )
    )

    n = sizes.children // 2
    impls = _map_impls(tc, anyio, aiometer, _suspend_value, MAP_LIMIT)
    if tc is not None:
        impls.append(
            Impl(
                f"toolcase_rs.map_async(limit={MAP_LIMIT})",
                _map_toolcase(tc, _suspend_value, MAP_LIMIT),
                0.7,
            )
        )
    out.append(
        Workload(
            "map-limit",
            f"map {n:,} items, at most {MAP_LIMIT} in flight (fn suspends once)",
            "time",
            n,
            r,
            "item",
            impls,
        )
    )

    n = max(1, sizes.children // 10)
    out.append(
        Workload(
            "race",
            "race of 3: one winner, two cancelled losers",
            "time",
            n,
            r,
            "race",
            _race_impls(tc, anyio),
        )
    )

    n = max(1, sizes.children // 2 // FAN_LIMIT) * FAN_LIMIT
    impls = _map_impls(tc, anyio, aiometer, _request, FAN_LIMIT)
    impls[0].label = "asyncio.Semaphore + gather"
    impls.append(Impl(f"no limiter: {FAN_LIMIT} bare chains of sleeps", _fan_ceiling(FAN_LIMIT)))
    if tc is not None:
        impls.append(
            Impl(
                f"toolcase_rs.map_async(limit={FAN_LIMIT})",
                _map_toolcase(tc, _request, FAN_LIMIT),
                0.9,
            )
        )
    out.append(
        Workload(
            "fan-out",
            f"I/O fan-out: {n:,} requests of {FAN_DELAY * 1e3:g} ms, {FAN_LIMIT} in flight",
            "efficiency",
            n,
            r,
            "",
            impls,
            ideal=FAN_DELAY / FAN_LIMIT,
        )
    )
    return out
