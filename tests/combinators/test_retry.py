"""retry (docs/many-api.md): attempts, backoff schedule, what is retried, the deadline rule.

The cancellation and deadline scenarios of PITFALLS row 21 are in test_pitfalls.py. Timing
tests run on the fake-clock loop with the autojump driver: the schedule is read off the loop
clock, no wall-clock time passes.
"""

from __future__ import annotations

import itertools
import random

import pytest


class Fatal(BaseException):
    pass


class Flaky:
    """Fails `failures` times (with a fresh error each time), then returns "ok"."""

    def __init__(self, failures: int, error: type[BaseException] = ValueError) -> None:
        self.failures = failures
        self.error = error
        self.calls: list[tuple[tuple, dict]] = []
        self.raised: list[BaseException] = []

    async def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        if len(self.calls) <= self.failures:
            exc = self.error(len(self.calls))
            self.raised.append(exc)
            raise exc
        return "ok"


async def test_returns_the_first_success(tc):
    flaky = Flaky(2)
    assert await tc.retry(flaky, attempts=3, backoff=0) == "ok"
    assert len(flaky.calls) == 3


async def test_passes_args_and_kwargs_on_every_attempt(tc):
    flaky = Flaky(1)
    assert await tc.retry(flaky, 1, 2, backoff=0, key="v") == "ok"
    assert flaky.calls == [((1, 2), {"key": "v"})] * 2


async def test_raises_the_last_error_itself_when_attempts_run_out(tc):
    flaky = Flaky(10)
    with pytest.raises(ValueError) as info:
        await tc.retry(flaky, attempts=4, backoff=0)
    assert len(flaky.calls) == 4
    assert info.value is flaky.raised[-1]


async def test_one_attempt_means_no_retry(tc):
    flaky = Flaky(1)
    with pytest.raises(ValueError):
        await tc.retry(flaky, attempts=1)
    assert len(flaky.calls) == 1


async def test_errors_outside_retry_on_are_raised_at_once(tc):
    flaky = Flaky(5, error=KeyError)
    with pytest.raises(KeyError):
        await tc.retry(flaky, attempts=5, backoff=0, retry_on=ValueError)
    assert len(flaky.calls) == 1


async def test_exclude_wins_over_retry_on(tc):
    class Permanent(ValueError):
        pass

    flaky = Flaky(5, error=Permanent)
    with pytest.raises(Permanent):
        await tc.retry(flaky, attempts=5, backoff=0, retry_on=ValueError, exclude=Permanent)
    assert len(flaky.calls) == 1


async def test_base_exceptions_are_never_retried(tc):
    flaky = Flaky(5, error=Fatal)
    with pytest.raises(Fatal):
        await tc.retry(flaky, attempts=5, backoff=0)
    assert len(flaky.calls) == 1


@pytest.mark.fake_clock
async def test_backoff_grows_exponentially_up_to_max_backoff(tc, autojump):
    times = []
    async with autojump() as loop:
        start = loop.time()

        async def failing():
            times.append(loop.time() - start)
            raise ValueError

        with pytest.raises(ValueError):
            await tc.retry(
                failing, attempts=6, backoff=1, backoff_factor=3, max_backoff=20, jitter=0
            )
    sleeps = [b - a for a, b in itertools.pairwise(times)]
    assert sleeps == pytest.approx([1, 3, 9, 20, 20], abs=1e-3)


@pytest.mark.fake_clock
async def test_jitter_adds_up_to_its_fraction(tc, autojump, monkeypatch):
    monkeypatch.setattr(random, "random", lambda: 1.0)  # the largest jitter
    times = []
    async with autojump() as loop:

        async def failing():
            times.append(loop.time())
            raise ValueError

        with pytest.raises(ValueError):
            await tc.retry(failing, attempts=3, backoff=2, max_backoff=2, jitter=0.5)
    sleeps = [b - a for a, b in itertools.pairwise(times)]
    assert sleeps == pytest.approx([3, 3], abs=1e-3)  # 2 s capped, then * (1 + 0.5)


@pytest.mark.fake_clock
async def test_no_attempt_starts_when_the_backoff_would_pass_the_deadline(tc, autojump):
    flaky = Flaky(10)
    async with autojump() as loop:
        start = loop.time()
        with tc.move_on_after(5), pytest.raises(ValueError) as info:
            await tc.retry(flaky, attempts=10, backoff=6, max_backoff=6, jitter=0)
        assert loop.time() == pytest.approx(start, abs=1e-3)  # gave up at once
    assert len(flaky.calls) == 1
    assert info.value is flaky.raised[0]


async def test_an_already_cancelled_scope_raises_its_cancellation_not_the_error(tc):
    calls = 0

    async def fails_without_a_checkpoint():
        nonlocal calls
        calls += 1
        scope.cancel()  # our own scope is cancelled now; this attempt never checkpoints
        raise ValueError

    with tc.CancelScope() as scope:
        await tc.retry(fails_without_a_checkpoint, attempts=3, backoff=0)
    assert scope.cancelled_caught
    assert calls == 1


async def test_retry_with_a_lambda_factory(tc):
    flaky = Flaky(1)
    assert await tc.retry(lambda: flaky(), backoff=0) == "ok"
