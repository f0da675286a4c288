"""Stream combinators: results, and that the background work they start is owned (cancelled
and its sources closed when the consumer stops, however it stops)."""

from __future__ import annotations

import asyncio
import gc
import time

import pytest
import toolcase_rs as tc
from toolcase_rs import streams


class Source:
    """An async generator factory that records whether it was closed."""

    def __init__(self, items, delay: float = 0.0, fail_at: int | None = None) -> None:
        self.items = list(items)
        self.delay = delay
        self.fail_at = fail_at
        self.closed = False
        self.produced = 0

    async def gen(self):
        try:
            for i, item in enumerate(self.items):
                if self.fail_at is not None and i == self.fail_at:
                    raise ValueError(f"source failed at {i}")
                if self.delay:
                    await asyncio.sleep(self.delay)
                self.produced += 1
                yield item
        finally:
            self.closed = True


async def collect(stream):
    return [item async for item in stream]


async def test_merge_yields_every_item():
    a, b = Source(range(5)), Source(range(10, 15))
    out = await collect(streams.merge_streams(a.gen(), b.gen()))
    assert sorted(out) == [*range(5), *range(10, 15)]
    assert a.closed and b.closed


async def test_merge_break_then_aclose_closes_sources():
    a, b = Source(range(1000), delay=0.001), Source(range(1000), delay=0.001)
    merged = streams.merge_streams(a.gen(), b.gen())
    async for _ in merged:
        break
    await merged.aclose()
    assert a.closed and b.closed


async def test_merge_async_with_cleans_up_on_exit():
    a = Source(range(1000), delay=0.001)
    async with streams.merge_streams(a.gen()) as merged:
        async for item in merged:
            if item == 3:
                break
    assert a.closed


async def test_merge_dropped_after_break_is_cleaned_up_by_gc():
    a = Source(range(1000), delay=0.001)
    merged = streams.merge_streams(a.gen())
    async for _ in merged:
        break
    del merged
    gc.collect()
    for _ in range(50):
        if a.closed:
            break
        await asyncio.sleep(0.01)
    assert a.closed
    produced = a.produced
    await asyncio.sleep(0.05)
    assert a.produced == produced, "the pump kept running after the stream was dropped"


async def test_source_error_reaches_the_consumer_once_as_itself():
    bad = Source(range(10), fail_at=2)
    good = Source(range(1000), delay=0.001)
    seen = []
    with pytest.raises(ValueError, match="source failed at 2") as info:
        async for item in streams.merge_streams(bad.gen(), good.gen()):
            seen.append(item)
    assert not isinstance(info.value, BaseExceptionGroup)
    assert any(entry.name == "gen" for entry in info.traceback)
    assert good.closed and bad.closed


async def test_the_callers_deadline_applies_to_the_pumps():
    slow = Source(range(1000), delay=0.01)
    merged = streams.merge_streams(slow.gen())
    with tc.move_on_after(0.05) as scope:
        async for _ in merged:
            pass
    assert scope.cancelled_caught
    for _ in range(50):
        if slow.closed:
            break
        await asyncio.sleep(0.01)
    assert slow.closed


async def test_buffer_reads_ahead():
    src = Source(range(20))
    buffered = streams.buffer_stream(src.gen(), maxsize=5)
    assert await buffered.__anext__() == 0
    await asyncio.sleep(0.02)
    assert src.produced >= 5
    assert [0, *await collect(buffered)] == list(range(20))


async def test_backpressure_pauses_the_producer():
    controller = streams.BackpressureController(high_water=4, low_water=1)
    src = Source(range(50))
    stream = streams.backpressure_stream(src.gen(), controller=controller)
    first = await stream.__anext__()
    await asyncio.sleep(0.02)
    assert src.produced <= 6, "the producer ran past the high water mark"
    rest = await collect(stream)
    assert [first, *rest] == list(range(50))


async def test_batch_by_size_and_by_timeout():
    out = await collect(streams.batch_stream(Source(range(7)).gen(), 3))
    assert out == [[0, 1, 2], [3, 4, 5], [6]]

    async def bursts():
        yield 1
        yield 2
        await asyncio.sleep(0.2)
        yield 3

    t0 = time.monotonic()
    out = await collect(streams.batch_stream(bursts(), 10, timeout=0.05))
    assert out == [[1, 2], [3]]
    assert time.monotonic() - t0 < 1.0


async def test_timeout_stream_raises_or_yields_the_fallback():
    async def stalls():
        yield 1
        await asyncio.sleep(10)
        yield 2

    with pytest.raises(TimeoutError):
        await collect(streams.timeout_stream(stalls(), 0.05))
    got = []
    async for item in streams.timeout_stream(stalls(), 0.05, on_timeout="late"):
        got.append(item)
        if len(got) == 3:
            break
    assert got == [1, "late", "late"]


async def test_map_stream_with_a_limit_keeps_order_and_bounds_concurrency():
    running = 0
    peak = 0

    async def work(x: int) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01 * (x % 3))
        running -= 1
        return x * 10

    out = await collect(streams.map_stream(Source(range(12)).gen(), work, limit=3))
    assert out == [x * 10 for x in range(12)]
    assert peak <= 3
    unordered = await collect(
        streams.map_stream(Source(range(12)).gen(), work, limit=3, ordered=False)
    )
    assert sorted(unordered) == [x * 10 for x in range(12)]


async def test_map_and_filter_accept_sync_and_async_callables():
    async def is_even(x: int) -> bool:
        return x % 2 == 0

    assert await collect(streams.map_stream(Source(range(4)).gen(), lambda x: x + 1)) == [
        1,
        2,
        3,
        4,
    ]
    assert await collect(streams.filter_stream(Source(range(6)).gen(), is_even)) == [0, 2, 4]


async def test_stream_merger_error_modes():
    async def run(mode: str):
        merger = streams.StreamMerger(on_error=mode)
        merger.add(Source(range(3), fail_at=1).gen(), priority=1)
        merger.add(Source(range(3), delay=0.01).gen())
        return await collect(merger)

    with pytest.raises(ValueError):
        await run("propagate")
    assert sorted(await run("skip")) == [0, 0, 1, 2]
    stopped = await run("stop")
    assert 0 in stopped and len(stopped) < 4
    with pytest.raises(ValueError, match="on_error"):
        streams.StreamMerger(on_error="ignore")  # type: ignore[arg-type]


async def test_sequential_combinators():
    assert await collect(streams.chain_streams(Source([1, 2]).gen(), Source([3]).gen())) == [
        1,
        2,
        3,
    ]
    assert await collect(
        streams.interleave_streams(Source([1, 2, 3]).gen(), Source(["a"]).gen())
    ) == [1, "a", 2, 3]
    assert await collect(streams.zip_streams(Source([1, 2, 3]).gen(), Source("ab").gen())) == [
        (1, "a"),
        (2, "b"),
    ]
    src = Source(range(100))
    assert await collect(streams.take_stream(src.gen(), 3)) == [0, 1, 2]
    assert src.closed
    assert await collect(streams.skip_stream(Source(range(5)).gen(), 3)) == [3, 4]

    async def nested():
        yield [1, 2]
        yield Source([3]).gen()

    assert await collect(streams.flatten_stream(nested())) == [1, 2, 3]
    assert await collect(streams.enumerate_stream(Source("ab").gen(), start=1)) == [
        (1, "a"),
        (2, "b"),
    ]


async def test_throttle_stream_limits_the_rate():
    t0 = time.monotonic()
    out = await collect(streams.throttle_stream(Source(range(6)).gen(), 50))
    assert out == list(range(6))
    assert time.monotonic() - t0 >= 0.08  # 5 gaps of 20 ms, with some slack


@pytest.mark.parametrize(
    "call",
    [
        lambda: streams.merge_streams([1, 2]),
        lambda: streams.buffer_stream(Source([1]).gen(), maxsize=0),
        lambda: streams.batch_stream(Source([1]).gen(), 0),
        lambda: streams.timeout_stream(Source([1]).gen(), -1),
        lambda: streams.map_stream(Source([1]).gen(), 5),
    ],
)
def test_bad_input_is_rejected_at_the_call(call):
    with pytest.raises((TypeError, ValueError)):
        call()


def test_streams_are_exported_at_the_top_level():
    for name in streams.__all__:
        assert getattr(tc, name) is getattr(streams, name)
