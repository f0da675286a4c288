"""Barrier (toolcase_rs only; AnyIO has none): rounds, arrival indexes, timeouts, breaking."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest


@pytest.fixture
def Barrier(tc, need):
    return need(tc, "Barrier")


async def test_rounds_release_everyone_with_arrival_indexes(Barrier, yield_loop):
    barrier = Barrier(3)
    assert barrier.parties == 3
    for _ in range(3):  # it resets after each full round
        results: dict[str, int] = {}

        async def party(name: str, b=barrier, r=results) -> None:
            r[name] = await b.wait()

        tasks = []
        for i, name in enumerate("abc"):
            tasks.append(asyncio.create_task(party(name)))
            await yield_loop()
            if i < 2:
                assert barrier.n_waiting == i + 1
                assert not any(t.done() for t in tasks)
        await asyncio.gather(*tasks)
        assert results == {"a": 0, "b": 1, "c": 2}
        assert barrier.n_waiting == 0


async def test_single_party_passes_at_once(Barrier):
    barrier = Barrier(1)
    assert await barrier.wait() == 0
    assert await barrier.wait() == 0


@pytest.mark.fake_clock
async def test_timeout_breaks_the_barrier_for_the_others(tc, Barrier, yield_loop):
    loop = asyncio.get_running_loop()
    barrier = Barrier(3)
    patient = asyncio.create_task(barrier.wait())
    await yield_loop()
    hasty = asyncio.create_task(barrier.wait(timeout=5))
    await yield_loop()
    loop.advance(4)
    await yield_loop()
    assert not hasty.done()
    loop.advance(2)
    with pytest.raises(TimeoutError):
        await hasty
    with pytest.raises(asyncio.BrokenBarrierError):
        await patient


async def test_statistics_is_a_frozen_dataclass(Barrier):
    stats = Barrier(2).statistics()
    assert dataclasses.is_dataclass(stats)
    name = dataclasses.fields(stats)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(stats, name, 1)
