"""Queue: a granted putter whose item goes straight to a waiting getter frees its slot for the
next waiting putter (before, that putter waited forever while a getter waited on an empty
queue)."""

from __future__ import annotations

import asyncio

import pytest


@pytest.mark.parametrize("maxsize", [1, 2])
async def test_reserved_slot_filled_into_a_waiting_getter_is_granted_to_the_next_putter(
    tc, maxsize
):
    q = tc.Queue(maxsize)

    async def produce(base: int, n: int) -> None:
        for i in range(n):
            await q.put(base + i)

    producers = [asyncio.create_task(produce(0, 3)), asyncio.create_task(produce(10, 4))]
    got = []
    async with asyncio.timeout(5):
        for _ in range(7):
            got.append(await q.get())  # the getter waits first, before any producer runs
    await asyncio.gather(*producers)
    assert sorted(got) == [0, 1, 2, 10, 11, 12, 13]


async def test_many_putters_one_getter_never_stall(tc):
    q = tc.Queue(1)

    async def produce(base: int) -> None:
        for i in range(20):
            await q.put(base + i)

    producers = [asyncio.create_task(produce(100 * k)) for k in range(5)]
    async with asyncio.timeout(5):
        got = [await q.get() for _ in range(100)]
    await asyncio.gather(*producers)
    assert sorted(got) == sorted(100 * k + i for k in range(5) for i in range(20))
