"""as_completed / CompletionStream (docs/many-api.md): completion order, leaving early in every
form, errors, limit, and the coroutines it never started.

The three ways of leaving early (``break``, an exception in the consumer's body, garbage
collection of the iterator) are in tests/combinators/test_pitfalls.py (PITFALLS row 20); this
file covers the rest of the contract.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import math

import pytest


async def value(x, steps=0):
    for _ in range(steps):
        await asyncio.sleep(0)
    return x


async def fail(exc, steps=0):
    for _ in range(steps):
        await asyncio.sleep(0)
    raise exc


async def drain(stream):
    return [x async for x in stream]


# --- results and order -------------------------------------------------------------------------


async def test_yields_results_in_completion_order(tc, script):
    async def consume():
        async with tc.as_completed([script.child(n) for n in "abc"]) as stream:
            return await drain(stream)

    task = asyncio.create_task(consume())
    await script.until_started("a", "b", "c")
    for name in "cab":
        script.release(name)
        await asyncio.sleep(0)
    assert await task == ["c", "a", "b"]


async def test_with_index_yields_index_and_result(tc):
    aws = [value("a", steps=2), value("b", steps=0), value("c", steps=1)]
    async with tc.as_completed(aws, with_index=True) as stream:
        assert await drain(stream) == [(1, "b"), (2, "c"), (0, "a")]


async def test_completion_stream_yields_pairs_by_default_like_lionagi(tc):
    aws = [value("a", steps=1), value("b")]
    async with tc.CompletionStream(aws) as stream:
        assert await drain(stream) == [(1, "b"), (0, "a")]
    async with tc.CompletionStream([value(1)], with_index=False) as stream:
        assert await drain(stream) == [1]


async def test_bare_async_for_runs_to_the_end(tc, leftover_tasks):
    out = [x async for x in tc.as_completed([value(i, steps=3 - i) for i in range(4)])]
    assert out == [3, 2, 1, 0]
    assert not leftover_tasks()


async def test_empty_input(tc):
    assert [x async for x in tc.as_completed([])] == []
    async with tc.as_completed(iter(())) as stream:
        assert await drain(stream) == []


async def test_futures_and_custom_awaitables(tc):
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    loop.call_soon(future.set_result, "future")

    class Custom:
        def __await__(self):
            yield from asyncio.sleep(0).__await__()
            yield from asyncio.sleep(0).__await__()
            return "custom"

    assert [x async for x in tc.as_completed([Custom(), future])] == ["future", "custom"]


async def test_a_lazy_source_is_pulled_one_awaitable_per_free_slot(tc, gauge):
    pulled = []
    release = asyncio.Event()

    async def work(i):
        async with gauge:
            await release.wait()
        return i

    def source():
        for i in range(10):
            pulled.append(i)
            yield work(i)

    async with tc.as_completed(source(), limit=3) as stream:
        for _ in range(5):
            await asyncio.sleep(0)
        assert pulled == [0, 1, 2]
        release.set()
        assert sorted(await drain(stream)) == list(range(10))
    assert gauge.max == 3


@pytest.mark.parametrize("limit", [1, 2, 4])
async def test_limit_is_never_exceeded(tc, gauge, limit):
    async def work(i):
        async with gauge:
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        return i

    async with tc.as_completed([work(i) for i in range(12)], limit=limit) as stream:
        assert sorted(await drain(stream)) == list(range(12))
    assert gauge.max == limit


async def test_children_run_under_the_starting_tasks_deadline(tc):
    seen = []

    async def child():
        seen.append(tc.current_effective_deadline())

    with tc.move_on_after(100):
        deadline = tc.current_effective_deadline()
        async with tc.as_completed([child(), child()]) as stream:
            await drain(stream)
    assert seen == [deadline, deadline]


async def test_the_starting_tasks_deadline_cancels_the_children(tc, script, leftover_tasks):
    with tc.move_on_after(0.01) as scope:
        async with tc.as_completed([script.child("a"), script.child("b")]) as stream:
            await drain(stream)
    assert scope.cancelled_caught
    assert sorted(script.cancelled) == ["a", "b"]
    assert not leftover_tasks()


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["async with", "bare"])
async def test_an_error_is_raised_in_its_place_then_the_rest_is_cancelled_and_awaited(
    tc, script, leftover_tasks, form
):
    error = ValueError("b failed")
    aws = [script.child("a"), script.child("b", error=error), script.child("c")]
    got = []

    async def consume():
        if form == "bare":
            async for x in tc.as_completed(aws):
                got.append(x)
        else:
            async with tc.as_completed(aws) as stream:
                async for x in stream:
                    got.append(x)

    task = asyncio.create_task(consume())
    await script.until_started("a", "b", "c")
    script.release("a")
    await asyncio.sleep(0)
    script.release("b")
    with pytest.raises(ValueError) as info:
        await task
    assert info.value is error
    assert got == ["a"]
    assert script.cancelled == ["c"]
    assert not leftover_tasks()  # awaited before the error reached the consumer


async def test_return_exceptions_yields_errors_and_cancels_nothing(tc, script):
    error = ValueError("x")
    aws = [script.child("bad", error=error), script.child("ok")]
    got = []

    async def consume():
        async with tc.as_completed(aws, return_exceptions=True) as stream:
            async for x in stream:
                got.append(x)

    task = asyncio.create_task(consume())
    await script.until_started("bad", "ok")
    script.release("bad")
    for _ in range(5):
        await asyncio.sleep(0)
    assert got == [error]
    script.release("ok")
    await task
    assert got == [error, "ok"]
    assert script.cancelled == []


async def test_a_foreign_cancellation_is_reported_as_task_cancelled(tc, script):
    aws = [script.child("victim"), script.child("ok")]

    async def consume():
        async with tc.as_completed(aws, return_exceptions=True, with_index=True) as stream:
            return await drain(stream)

    task = asyncio.create_task(consume())
    await script.until_started("victim", "ok")
    script.tasks["victim"].cancel()
    await asyncio.sleep(0)
    script.release("ok")
    (index, error), ok = await task
    assert index == 0 and isinstance(error, tc.TaskCancelled)
    assert ok == (1, "ok")


async def test_a_non_awaitable_in_a_lazy_source_raises_type_error_when_reached(tc, leftover_tasks):
    def source():
        yield value(1)
        yield "not awaitable"

    with pytest.raises(TypeError, match="item 1"):
        async with tc.as_completed(source(), limit=1) as stream:
            await drain(stream)
    assert not leftover_tasks()


# --- the consumer's cancellation ---------------------------------------------------------------


@pytest.mark.parametrize("form", ["async with", "bare"])
async def test_cancelling_the_waiting_consumer_cancels_and_awaits_the_children(
    tc, script, leftover_tasks, form
):
    aws = [script.child("a"), script.child("b")]

    async def consume():
        if form == "bare":
            async for _ in tc.as_completed(aws):
                pass
        else:
            async with tc.as_completed(aws) as stream:
                await drain(stream)

    task = asyncio.create_task(consume())
    await script.until_started("a", "b")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(script.cancelled) == ["a", "b"]
    assert not leftover_tasks()


async def test_a_cancelled_scope_around_the_consumer(tc, script, leftover_tasks):
    async def consume():
        with tc.CancelScope() as scope:
            script.scope = scope
            async for _ in tc.as_completed([script.child("a"), script.child("b")]):
                pass
        return scope.cancelled_caught

    task = asyncio.create_task(consume())
    await script.until_started("a", "b")
    script.scope.cancel()
    assert await task is True
    assert sorted(script.cancelled) == ["a", "b"]
    assert not leftover_tasks()


# --- lifecycle ---------------------------------------------------------------------------------


async def test_entering_twice_is_a_runtime_error(tc):
    stream = tc.as_completed([value(1)])
    async with stream:
        with pytest.raises(RuntimeError, match="only once"):
            async with stream:
                pass
    assert [x async for x in stream] == []  # closed: iteration stops


async def test_aclose_is_idempotent_and_stops_iteration(tc, script, leftover_tasks):
    stream = tc.as_completed([script.child("a"), value("b")])
    assert await anext(stream) == "b"
    await stream.aclose()
    await stream.aclose()
    assert script.cancelled == ["a"]
    assert not leftover_tasks()
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


async def test_repr_shows_the_state(tc):
    stream = tc.as_completed([value(1)], limit=2)
    assert "created" in repr(stream) and "limit=2" in repr(stream)
    async with stream:
        assert "running" in repr(stream)
    assert "closed" in repr(stream)


async def test_coroutines_never_started_are_closed(tc, assert_closed_without_warning):
    coros = [value(i, steps=1) for i in range(20)]
    async with tc.as_completed(coros, limit=2) as stream:
        assert await anext(stream) in (0, 1)
    assert_closed_without_warning(coros)


async def test_a_stream_dropped_before_it_started_closes_its_coroutines(
    tc, assert_closed_without_warning
):
    coros = [value(i) for i in range(3)]
    stream = tc.as_completed(coros)
    del stream
    gc.collect()
    assert_closed_without_warning(coros)
    coros = [value(i) for i in range(3)]
    await tc.as_completed(coros).aclose()
    assert all(inspect.getcoroutinestate(c) == inspect.CORO_CLOSED for c in coros)


# --- differential: ordering vs an AnyIO memory-stream implementation ---------------------------


async def anyio_as_completed(aws, limit=None):
    """as_completed the AnyIO way: a task group feeding a memory object stream."""
    import anyio

    send, receive = anyio.create_memory_object_stream(math.inf)
    limiter = anyio.CapacityLimiter(limit) if limit else None
    out = []

    async def run(i, aw):
        if limiter is not None:
            async with limiter:
                await send.send((i, await aw))
        else:
            await send.send((i, await aw))

    async with anyio.create_task_group() as tg:
        for i, aw in enumerate(aws):
            tg.start_soon(run, i, aw)
        for _ in aws:
            out.append(await receive.receive())
    send.close()
    receive.close()
    return out


@pytest.mark.parametrize("limit", [None, 1, 2])
async def test_completion_order_matches_an_anyio_memory_stream(tc, limit):
    # Far apart, so the few loop iterations a hand-off costs (more for AnyIO's limiter than for
    # a worker that goes straight on) cannot reorder anything.
    steps = [50, 10, 30, 0, 40, 20]

    def make():
        return [value(i, steps=s) for i, s in enumerate(steps)]

    async with tc.as_completed(make(), limit=limit, with_index=True) as stream:
        ours = await drain(stream)
    theirs = await anyio_as_completed(make(), limit=limit)
    assert ours == theirs
