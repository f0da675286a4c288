"""Queue (toolcase_rs only): FIFO, backpressure, close(), cancel safety, threads, statistics.

AnyIO has no Queue (its equivalent is a memory object stream), so these tests take ``tc``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading

import pytest


@pytest.fixture
def Queue(tc, need):
    return need(tc, "Queue")


async def test_fifo_and_sizes(Queue):
    q = Queue()
    assert (q.maxsize, q.qsize(), q.empty(), q.full()) == (0, 0, True, False)
    for i in range(100):
        await q.put(i)
    q.put_nowait(100)
    assert (q.qsize(), q.empty(), q.full()) == (101, False, False)  # unbounded: never full
    assert [await q.get() for _ in range(50)] == list(range(50))
    assert [q.get_nowait() for _ in range(51)] == list(range(50, 101))
    assert q.empty()


@pytest.mark.parametrize("maxsize", [0, -1])
async def test_maxsize_zero_or_negative_is_unbounded(Queue, maxsize):
    q = Queue(maxsize)
    for i in range(1000):
        q.put_nowait(i)
    assert not q.full()
    assert q.qsize() == 1000


async def test_generic_alias(Queue):
    q = Queue[int](3)
    assert isinstance(q, Queue)
    assert q.maxsize == 3


async def test_nowait_errors(tc, Queue):
    q = Queue(1)
    with pytest.raises(tc.QueueEmpty):
        q.get_nowait()
    q.put_nowait("x")
    assert q.full()
    with pytest.raises(tc.QueueFull):
        q.put_nowait("y")
    assert q.get_nowait() == "x"


async def test_backpressure_putters_wait_in_fifo_order(Queue, yield_loop):
    q = Queue(2)
    await q.put(0)
    await q.put(1)
    putters = [asyncio.create_task(q.put(i)) for i in (2, 3, 4)]
    await yield_loop()
    assert not any(p.done() for p in putters)
    assert q.statistics().tasks_waiting_send == 3
    got = []
    for _ in range(5):
        got.append(await q.get())
        await yield_loop()
    await asyncio.gather(*putters)
    assert got == [0, 1, 2, 3, 4]
    assert q.empty()


async def test_getters_wait_in_fifo_order(Queue, yield_loop):
    q = Queue()
    got: list[tuple[str, int]] = []

    async def getter(name: str) -> None:
        got.append((name, await q.get()))

    tasks = []
    for name in "abc":
        tasks.append(asyncio.create_task(getter(name)))
        await yield_loop()
    assert q.statistics().tasks_waiting_receive == 3
    for i in range(3):
        q.put_nowait(i)
    await asyncio.gather(*tasks)
    assert got == [("a", 0), ("b", 1), ("c", 2)]


async def test_statistics(Queue, yield_loop):
    q = Queue(1)
    stats = q.statistics()
    assert [f.name for f in dataclasses.fields(stats)] == [
        "current_buffer_used",
        "max_buffer_size",
        "tasks_waiting_send",
        "tasks_waiting_receive",
    ]
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.current_buffer_used = 3
    assert (stats.current_buffer_used, stats.max_buffer_size) == (0, 1)
    getter = asyncio.create_task(q.get())
    await yield_loop()
    assert q.statistics().tasks_waiting_receive == 1
    await q.put(1)
    assert await getter == 1
    await q.put(2)
    putter = asyncio.create_task(q.put(3))
    await yield_loop()
    stats = q.statistics()
    assert (stats.current_buffer_used, stats.tasks_waiting_send) == (1, 1)
    assert q.get_nowait() == 2
    await putter
    assert q.get_nowait() == 3


# --- close() ------------------------------------------------------------------------------------


async def test_close_drains_then_end_of_stream(tc, Queue):
    q = Queue()
    for i in range(3):
        q.put_nowait(i)
    assert not q.closed
    q.close()
    assert q.closed
    with pytest.raises(tc.ClosedResourceError):
        q.put_nowait(9)
    with pytest.raises(tc.ClosedResourceError):
        await q.put(9)
    assert q.get_nowait() == 0
    assert await q.get() == 1
    assert [item async for item in q] == [2]
    with pytest.raises(tc.EndOfStream):
        await q.get()
    with pytest.raises(tc.EndOfStream):
        q.get_nowait()
    q.close()  # closing twice is fine
    assert q.closed


async def test_close_wakes_waiting_getters_and_putters(tc, Queue, yield_loop):
    q = Queue(1)
    getters = [asyncio.create_task(q.get()) for _ in range(2)]
    await yield_loop()
    q.close()
    for getter in getters:
        with pytest.raises(tc.EndOfStream):
            await getter

    q = Queue(1)
    q.put_nowait("kept")
    putters = [asyncio.create_task(q.put(i)) for i in range(2)]
    await yield_loop()
    q.close()
    for putter in putters:
        with pytest.raises(tc.ClosedResourceError):
            await putter
    assert q.get_nowait() == "kept"  # what was in the buffer is still delivered


async def test_async_for_ends_when_closed_and_drained(Queue):
    q = Queue(4)
    received: list[int] = []

    async def consume() -> None:
        async for item in q:
            received.append(item)

    task = asyncio.create_task(consume())
    for i in range(20):
        await q.put(i)
    q.close()
    await task
    assert received == list(range(20))


# --- cancel safety ------------------------------------------------------------------------------


@pytest.mark.parametrize("next_getter", [True, False], ids=["next_getter", "no_next_getter"])
async def test_getter_cancelled_after_it_was_handed_an_item_passes_it_on(
    Queue, yield_loop, next_getter
):
    """The item a cancelled getter was handed goes to the next getter, or back to the queue."""
    q = Queue()
    got: list[object] = []

    async def getter() -> None:
        got.append(await q.get())

    first = asyncio.create_task(getter())
    await yield_loop()
    second = asyncio.create_task(getter()) if next_getter else None
    await yield_loop()
    q.put_nowait("item")
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    if second is not None:
        await second
        assert got == ["item"]
        assert q.empty()
    else:
        assert got == []
        assert q.get_nowait() == "item"
    assert q.statistics().tasks_waiting_receive == 0


async def test_cancelled_putter_does_not_leave_its_item(tc, Queue, yield_loop):
    q = Queue(1)
    q.put_nowait("a")
    putter = asyncio.create_task(q.put("b"))
    await yield_loop()
    putter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await putter
    assert q.statistics().tasks_waiting_send == 0
    assert q.get_nowait() == "a"
    with pytest.raises(tc.QueueEmpty):  # "b" was never put
        q.get_nowait()


async def test_get_in_a_cancelled_scope_raises_even_with_items(tc, Queue):
    q = Queue()
    q.put_nowait(1)
    with tc.CancelScope() as scope:
        scope.cancel()
        await q.get()
    assert scope.cancelled_caught
    assert q.get_nowait() == 1  # nothing was taken


# --- blocking API and threads -------------------------------------------------------------------


def test_blocking_api_timeouts(tc, Queue):
    q = Queue(1)
    with pytest.raises(TimeoutError):
        q.get_blocking(timeout=0.001)
    q.put_blocking(1, timeout=1)
    with pytest.raises(TimeoutError):
        q.put_blocking(2, timeout=0.001)
    assert q.get_blocking() == 1
    q.put_blocking(3)
    q.close()
    assert q.get_blocking() == 3
    with pytest.raises(tc.EndOfStream):
        q.get_blocking()
    with pytest.raises(tc.ClosedResourceError):
        q.put_blocking(4)


async def test_thread_and_task_hand_items_both_ways_through_one_queue(Queue, threads):
    """Phase 1: a plain thread puts (blocking, with backpressure: maxsize 4), the task gets.
    Phase 2: the task puts, the thread gets. Same queue, both directions, in order."""
    n = 2000
    q = Queue(4)
    from_thread: list[int] = []
    to_thread: list[int] = []
    phase_two = threading.Event()

    def worker() -> None:
        for i in range(n):
            q.put_blocking(i, timeout=10)
        phase_two.wait(10)
        for _ in range(n):
            to_thread.append(q.get_blocking(timeout=10))

    threads.start(worker)
    for _ in range(n):
        from_thread.append(await q.get())
    phase_two.set()
    for i in range(n):
        await q.put(-i)
    await threads.ajoin()
    assert from_thread == list(range(n))
    assert to_thread == [-i for i in range(n)]
    assert q.empty()


async def test_thread_task_ping_pong(Queue, threads):
    """Request/response between a task and a thread, one item in flight each way."""
    requests, replies = Queue(1), Queue(1)
    rounds = 500

    def echo() -> None:
        while True:
            item = requests.get_blocking(timeout=10)
            if item is None:
                return
            replies.put_blocking(item * 2, timeout=10)

    threads.start(echo)
    for i in range(rounds):
        await requests.put(i)
        assert await replies.get() == 2 * i
    await requests.put(None)
    await threads.ajoin()


async def test_close_from_a_thread_ends_async_for(Queue, threads):
    q = Queue(8)
    n = 1000

    def producer() -> None:
        for i in range(n):
            q.put_blocking(i, timeout=10)
        q.close()

    threads.start(producer)
    received = [item async for item in q]
    await threads.ajoin()
    assert received == list(range(n))
