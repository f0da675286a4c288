"""PITFALLS.md rows 20 and 21, one regression test per scenario, named after the row.

Row 20: as_completed / race / first_success leave the losers running (cpython #99933,
langchain #35419). Leaving early must cancel what is still running, the others must observe
CancelledError within one loop iteration, and no "Task exception was never retrieved" may
reach the loop's exception handler, whether the consumer breaks, raises, or drops the iterator.

Row 21: retry loops on cancellation or past the deadline. CancelledError is never retried, the
total time respects the enclosing deadline, and backoff sleeps are cancellable. Deadline tests
run on the fake-clock loop with the autojump driver (no wall-clock time).
"""

from __future__ import annotations

import asyncio
import gc

import pytest


class Children:
    """Parked children that record their cancellation, and (optionally) raise an error from
    their cleanup: an error nobody retrieves would be reported as "never retrieved"."""

    def __init__(self, noisy: bool = False) -> None:
        self.started: list[int] = []
        self.cancelled: list[int] = []
        self.noisy = noisy

    async def parked(self, i: int):
        self.started.append(i)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.append(i)
            if self.noisy:
                raise RuntimeError(f"cleanup of {i} failed") from None
            raise

    def make(self, n: int):
        async def quick():
            await asyncio.sleep(0)
            return "first"

        return [quick(), *(self.parked(i) for i in range(n))]


# --- row 20: as_completed ----------------------------------------------------------------------


@pytest.mark.parametrize("noisy", [False, True])
async def test_row20_break_out_of_async_with_cancels_and_awaits_cpython99933(
    tc, leftover_tasks, loop_errors, noisy
):
    children = Children(noisy)
    with loop_errors() as errors:
        async with tc.as_completed(children.make(3)) as stream:
            async for result in stream:
                assert result == "first"
                break
        # Awaited on exit: every other child observed its cancellation already.
        assert sorted(children.cancelled) == [0, 1, 2]
        assert not leftover_tasks()
    assert not errors


@pytest.mark.parametrize("noisy", [False, True])
async def test_row20_break_out_of_a_bare_async_for_cancels_within_one_iteration_cpython99933(
    tc, leftover_tasks, loop_errors, yield_loop, noisy
):
    children = Children(noisy)
    with loop_errors() as errors:
        async for result in tc.as_completed(children.make(3)):
            assert result == "first"
            break
        await asyncio.sleep(0)  # one loop iteration
        assert sorted(children.cancelled) == [0, 1, 2]
        await yield_loop()
        assert not leftover_tasks()
    assert not errors


@pytest.mark.parametrize("form", ["async with", "bare"])
async def test_row20_exception_in_the_consumer_body_cancels_the_rest_langchain35419(
    tc, leftover_tasks, loop_errors, yield_loop, form
):
    children = Children(noisy=True)
    with loop_errors() as errors:
        with pytest.raises(KeyError):
            if form == "bare":
                async for _ in tc.as_completed(children.make(3)):
                    raise KeyError("consumer failed")
            else:
                async with tc.as_completed(children.make(3)) as stream:
                    async for _ in stream:
                        raise KeyError("consumer failed")
        if form == "async with":
            assert sorted(children.cancelled) == [0, 1, 2]  # awaited before the KeyError left
        else:
            await asyncio.sleep(0)
            assert sorted(children.cancelled) == [0, 1, 2]
        await yield_loop()
        assert not leftover_tasks()
    assert not errors


@pytest.mark.parametrize("limit", [None, 2])
async def test_row20_garbage_collecting_the_iterator_cancels_the_rest(
    tc, leftover_tasks, loop_errors, yield_loop, limit
):
    children = Children(noisy=True)
    with loop_errors() as errors:
        iterator = aiter(tc.as_completed(children.make(3), limit=limit))
        assert await anext(iterator) == "first"
        del iterator
        gc.collect()
        await asyncio.sleep(0)
        assert sorted(children.cancelled) == sorted(children.started)
        await yield_loop()
        assert not leftover_tasks()
    assert not errors


async def test_row20_garbage_collection_in_a_reference_cycle(tc, leftover_tasks, yield_loop):
    children = Children()

    class Holder:
        pass

    holder = Holder()
    holder.self = holder
    holder.stream = tc.as_completed(children.make(2))
    assert await anext(holder.stream) == "first"
    del holder
    gc.collect()  # the cycle is broken by the collector, which finalises the stream
    await asyncio.sleep(0)
    assert sorted(children.cancelled) == [0, 1]
    await yield_loop()
    assert not leftover_tasks()


# --- row 20: race and first_success ------------------------------------------------------------


@pytest.mark.parametrize("noisy", [False, True])
async def test_row20_race_losers_are_cancelled_and_awaited_before_it_returns(
    tc, leftover_tasks, loop_errors, noisy
):
    children = Children(noisy)
    with loop_errors() as errors:
        assert await tc.race(*children.make(3)) == "first"
        assert sorted(children.cancelled) == [0, 1, 2]
        assert not leftover_tasks()
    assert not errors


@pytest.mark.parametrize("noisy", [False, True])
async def test_row20_first_success_losers_are_cancelled_and_awaited_before_it_returns(
    tc, leftover_tasks, loop_errors, noisy
):
    children = Children(noisy)

    async def failing():
        raise ValueError("not me")

    with loop_errors() as errors:
        assert await tc.first_success(failing(), *children.make(3)) == "first"
        assert sorted(children.cancelled) == [0, 1, 2]
        assert not leftover_tasks()
    assert not errors


# --- row 21: retry -----------------------------------------------------------------------------


async def test_row21_cancellation_is_never_retried(tc):
    calls = 0

    async def cancelled():
        nonlocal calls
        calls += 1
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await tc.retry(cancelled, attempts=5, backoff=0)
    assert calls == 1


async def test_row21_a_scope_cancelled_during_an_attempt_is_not_retried(tc):
    calls = 0

    async def attempt():
        nonlocal calls
        calls += 1
        await asyncio.Event().wait()

    with tc.move_on_after(0.01) as scope:
        await tc.retry(attempt, attempts=5, backoff=0)
    assert scope.cancelled_caught
    assert calls == 1


@pytest.mark.parametrize("retry_on", [BaseException, (ValueError, asyncio.CancelledError)])
async def test_row21_retry_on_covering_cancellation_is_refused(tc, retry_on):
    async def never():
        raise AssertionError("must not be called")

    with pytest.raises(ValueError, match="CancelledError"):
        await tc.retry(never, retry_on=retry_on)


@pytest.mark.fake_clock
async def test_row21_total_time_respects_the_enclosing_move_on_after(tc, autojump):
    """Backoff 10 s, deadline 25 s: attempts at 0, 10, 20; the next sleep would end at 30,
    past the deadline, so retry raises the last error at 20 s instead of starting attempt 4."""
    attempts = []
    async with autojump() as loop:
        start = loop.time()

        async def flaky():
            attempts.append(loop.time() - start)
            raise ValueError(len(attempts))

        with pytest.raises(ValueError) as info:
            with tc.move_on_after(25):
                await tc.retry(
                    flaky, attempts=10, backoff=10, max_backoff=10, backoff_factor=1, jitter=0
                )
        assert loop.time() - start == pytest.approx(20, abs=1e-3)
    assert attempts == pytest.approx([0, 10, 20], abs=1e-3)
    assert info.value.args == (3,)  # the last error, itself


@pytest.mark.fake_clock
async def test_row21_a_backoff_sleep_is_cancelled_by_the_enclosing_deadline(tc, yield_loop):
    """The enclosing deadline is moved closer while retry sleeps: the sleep ends at the new
    deadline and the scope swallows its own cancellation (nothing retried, nothing raised)."""
    loop = asyncio.get_running_loop()
    calls = 0
    called = asyncio.Event()
    scopes = []

    async def flaky():
        nonlocal calls
        calls += 1
        called.set()
        raise ValueError

    async def runner():
        with tc.move_on_after(100) as scope:
            scopes.append(scope)
            await tc.retry(flaky, attempts=3, backoff=50, max_backoff=50, jitter=0)
        return scope.cancelled_caught

    task = asyncio.create_task(runner())
    await called.wait()
    await yield_loop()  # retry is asleep in its 50 s backoff now
    scopes[0].deadline = loop.time() + 15
    loop.advance(15)
    assert await task is True
    assert calls == 1


async def test_row21_a_backoff_sleep_is_cancellable(tc, yield_loop):
    called = asyncio.Event()

    async def failing():
        called.set()
        raise ValueError

    task = asyncio.create_task(
        tc.retry(failing, attempts=3, backoff=3600, max_backoff=3600, jitter=0)
    )
    await called.wait()
    await yield_loop()  # retry is asleep in its backoff now
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
