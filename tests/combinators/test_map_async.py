"""map_async / bounded_map (docs/many-api.md): order, limit, workers, errors, progress.

``limit`` is checked with an instrumented in-flight counter (``gauge``); interleavings come from
checkpoints (``asyncio.sleep(0)``) and events, never from wall-clock sleeps. The hypothesis test
at the end drives random per-item delays and failures and checks order, the limit, that nothing
starts after a failure, and that nothing is left running.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st


async def checkpoints(n):
    for _ in range(n):
        await asyncio.sleep(0)


# --- results -----------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [None, 1, 3, 100])
@pytest.mark.parametrize("kind", ["list", "generator", "range", "tuple"])
async def test_results_in_input_order(tc, limit, kind):
    async def double(x):
        await checkpoints((7 - x) % 4)  # finish out of order
        return 2 * x

    items = {
        "list": list(range(10)),
        "generator": (x for x in range(10)),
        "range": range(10),
        "tuple": tuple(range(10)),
    }[kind]
    assert await tc.map_async(double, items, limit=limit) == [2 * x for x in range(10)]


async def test_empty_input(tc):
    async def never(_):
        raise AssertionError("called")

    assert await tc.map_async(never, []) == []
    assert await tc.map_async(never, [], limit=3) == []
    assert await tc.map_async(never, iter(()), limit=3, ordered=False) == []


@pytest.mark.parametrize("limit", [None, 2])
async def test_unordered_results_come_in_completion_order(tc, script, limit):
    task = asyncio.create_task(tc.map_async(script.child, ["a", "b"], limit=limit, ordered=False))
    await script.until_started("a", "b")
    script.release("b")
    await checkpoints(3)
    script.release("a")
    assert await task == ["b", "a"]


async def test_fn_may_return_any_awaitable(tc):
    loop = asyncio.get_running_loop()

    def future_of(x):
        future = loop.create_future()
        loop.call_soon(future.set_result, x)
        return future

    assert await tc.map_async(future_of, range(5), limit=2) == list(range(5))


async def test_bounded_map_is_map_async(tc):
    assert tc.bounded_map is tc.map_async


# --- the limit and the workers -----------------------------------------------------------------


@pytest.mark.parametrize("limit", [1, 2, 5])
async def test_limit_is_never_exceeded_and_is_reached(tc, gauge, limit):
    async def work(x):
        async with gauge:
            await checkpoints(x % 3 + 1)
        return x

    assert await tc.map_async(work, range(20), limit=limit) == list(range(20))
    assert gauge.max == limit
    assert gauge.now == 0


async def test_no_limit_runs_everything_at_once(tc, gauge):
    release = asyncio.Event()

    async def work(x):
        async with gauge:
            await release.wait()
        return x

    task = asyncio.create_task(tc.map_async(work, range(50)))
    await checkpoints(3)
    assert gauge.now == 50
    release.set()
    assert await task == list(range(50))


async def test_limit_workers_serve_every_item(tc):
    tasks = set()

    async def work(x):
        tasks.add(asyncio.current_task())
        await asyncio.sleep(0)
        return x

    assert await tc.map_async(work, range(200), limit=4) == list(range(200))
    assert len(tasks) == 4  # no task per item: four workers did all the work


async def test_fewer_items_than_limit_start_fewer_workers(tc):
    tasks = set()

    async def work(x):
        tasks.add(asyncio.current_task())
        await asyncio.sleep(0)
        return x

    assert await tc.map_async(work, [1, 2], limit=50) == [1, 2]
    assert len(tasks) == 2


async def test_a_generator_is_consumed_only_as_fast_as_the_work_goes(tc, gauge):
    pulled = []
    release = asyncio.Event()

    def produce():
        for x in range(100_000):  # long, not endless: a regression fails instead of hanging
            pulled.append(x)
            yield x

    async def work(x):
        async with gauge:
            await release.wait()
        if x == 9:
            raise StopAsyncIteration  # any error ends the map

    task = asyncio.create_task(tc.map_async(work, produce(), limit=3))
    await checkpoints(5)
    assert pulled == [0, 1, 2]  # backpressure: one item per free worker, nothing more
    release.set()
    with pytest.raises(StopAsyncIteration):
        await task
    assert len(pulled) <= 9 + 3 + 1


@pytest.mark.parametrize("ordered", [True, False])
async def test_a_hundred_thousand_items_without_a_task_per_item(tc, ordered):
    tasks = set()

    async def work(x):
        tasks.add(asyncio.current_task())
        await asyncio.sleep(0)
        return x

    n = 100_000
    out = await tc.map_async(work, (x for x in range(n)), limit=8, ordered=ordered)
    assert (out if ordered else sorted(out)) == list(range(n))
    assert len(tasks) == 8


# --- errors and cancellation -------------------------------------------------------------------


@pytest.mark.parametrize("limit", [None, 3])
async def test_an_error_cancels_the_work_in_flight_and_is_raised_itself(
    tc, script, leftover_tasks, limit
):
    error = ValueError("item b")

    async def work(name):
        return await script.child(name, error=error if name == "b" else None)

    task = asyncio.create_task(tc.map_async(work, ["a", "b", "c", "d", "e"], limit=limit))
    started = ["a", "b", "c"] if limit else ["a", "b", "c", "d", "e"]
    await script.until_started(*started)
    script.release("b")
    with pytest.raises(ValueError) as info:
        await task
    assert info.value is error
    assert not isinstance(info.value.__context__, BaseExceptionGroup)
    assert sorted(script.cancelled) == sorted(set(started) - {"b"})
    assert script.started == started  # nothing new started after the failure
    assert not leftover_tasks()


async def test_no_worker_starts_an_item_after_another_item_failed(tc):
    """Worker 0 finishes its item in the loop iteration right after worker 1's item failed,
    before the task group hears of the failure: it must not pull the next item."""
    started = []

    async def work(i):
        started.append(i)
        await checkpoints([2, 1, 0, 0][i])
        if i == 1:
            raise ValueError(i)
        return i

    with pytest.raises(ValueError):
        await tc.map_async(work, range(4), limit=2)
    assert started == [0, 1]


async def test_an_error_in_the_source_iterator_is_raised(tc, leftover_tasks):
    def source():
        yield 1
        raise LookupError("source broke")

    async def work(x):
        await asyncio.sleep(0)
        return x

    for limit in (None, 2):
        with pytest.raises(LookupError):
            await tc.map_async(work, source(), limit=limit)
    assert not leftover_tasks()


@pytest.mark.parametrize("limit", [None, 2])
async def test_cancelling_the_caller_cancels_and_awaits_the_work(tc, script, leftover_tasks, limit):
    pulled = []

    def source():
        for name in "abcdef":
            pulled.append(name)
            yield name

    task = asyncio.create_task(tc.map_async(script.child, source(), limit=limit))
    await script.until_started("a", "b")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(script.cancelled) == sorted(script.started)
    assert not leftover_tasks()
    if limit is not None:
        assert pulled == ["a", "b"]  # the rest of the items is left unconsumed


async def test_a_deadline_around_map_async(tc, leftover_tasks):
    with tc.move_on_after(0.01) as scope:
        await tc.map_async(lambda _: asyncio.Event().wait(), range(10), limit=3)
    assert scope.cancelled_caught
    assert not leftover_tasks()


# --- progress ----------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [None, 2])
async def test_progress_callback_gets_done_and_total(tc, limit):
    calls = []

    async def work(x):
        await checkpoints(x % 2)
        return x

    await tc.map_async(work, range(4), limit=limit, progress=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]

    calls.clear()
    await tc.map_async(
        work, iter(range(3)), limit=limit, progress=lambda d, t: calls.append((d, t))
    )
    assert calls == [(1, None), (2, None), (3, None)]  # no len(): total unknown


async def test_progress_accepts_a_tqdm_like_bar(tc):
    @dataclass
    class Bar:
        n: int = 0
        calls: int = 0

        def update(self, n=1):
            self.n += n
            self.calls += 1

    async def work(x):
        return x

    bar = Bar()
    await tc.map_async(work, range(7), limit=3, ordered=False, progress=bar)
    assert (bar.n, bar.calls) == (7, 7)


async def test_an_error_in_progress_is_an_error_like_any_other(tc, leftover_tasks):
    async def work(x):
        await asyncio.sleep(0)
        return x

    def progress(done, total):
        if done == 2:
            raise RuntimeError("progress broke")

    with pytest.raises(RuntimeError, match="progress broke"):
        await tc.map_async(work, range(10), limit=2, progress=progress)
    assert not leftover_tasks()


# --- differential: map_async vs AnyIO CapacityLimiter + task group -----------------------------


@pytest.mark.parametrize("limit", [1, 3])
async def test_matches_anyio_capacity_limiter_and_task_group(tc, make_lib, limit):
    import anyio

    delays = [3, 0, 2, 1, 0, 4, 1]

    def make_work(gauge_box):
        async def work(i):
            gauge_box[0] += 1
            gauge_box[1] = max(gauge_box[1], gauge_box[0])
            await checkpoints(delays[i])
            gauge_box[0] -= 1
            return i * i

        return work

    box_tc = [0, 0]
    out_tc = await tc.map_async(make_work(box_tc), range(len(delays)), limit=limit)

    box_anyio = [0, 0]
    work = make_work(box_anyio)
    limiter = anyio.CapacityLimiter(limit)
    out_anyio = [None] * len(delays)

    async def one(i):
        async with limiter:
            out_anyio[i] = await work(i)

    async with anyio.create_task_group() as tg:
        for i in range(len(delays)):
            tg.start_soon(one, i)

    assert out_tc == out_anyio
    assert box_tc[1] == box_anyio[1] == limit


# --- hypothesis: random delays and failures ----------------------------------------------------


@settings(
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    plan=st.lists(
        st.tuples(st.integers(0, 4), st.integers(0, 7).map(lambda k: k == 0)), max_size=25
    ),
    limit=st.one_of(st.none(), st.integers(1, 6)),
    ordered=st.booleans(),
    generator=st.booleans(),
)
async def test_random_interleavings_keep_order_limit_and_structure(
    tc, plan, limit, ordered, generator
):
    delays = [delay for delay, _ in plan]
    failing = {i for i, (_, fails) in enumerate(plan) if fails}
    now = peak = 0
    started: list[int] = []
    finished: list[int] = []
    cancelled: list[int] = []
    failed: list[int] = []

    late_starts: list[int] = []  # recorded, not asserted here: an assertion error raised in
    # `work` after the first failure would itself be a later error, which map_async drops

    async def work(i):
        nonlocal now, peak
        if failed:
            late_starts.append(i)
        started.append(i)
        now += 1
        peak = max(peak, now)
        try:
            await checkpoints(delays[i])
        except asyncio.CancelledError:
            cancelled.append(i)
            raise
        finally:
            now -= 1
        if i in failing:
            failed.append(i)
            raise ValueError(i)
        finished.append(i)
        return i * 10

    source = (i for i in range(len(delays))) if generator else list(range(len(delays)))
    try:
        out = await tc.map_async(work, source, limit=limit, ordered=ordered)
    except ValueError as exc:
        assert failed and exc.args == (failed[0],)  # the first failure, itself
        assert set(started) == set(finished) | set(cancelled) | set(failed)
    else:
        assert not failed
        expected = [i * 10 for i in (range(len(delays)) if ordered else finished)]
        assert out == expected
        assert sorted(finished) == list(range(len(delays)))
    assert not late_starts, f"items {late_starts} started after item {failed[0]} failed"
    assert now == 0
    assert peak <= (limit or len(delays))
    current = asyncio.current_task()
    assert not [t for t in asyncio.all_tasks() if t is not current and not t.done()]
