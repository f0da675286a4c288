"""Bad input to the combinators (docs/many-api.md): a clear error, raised before anything runs,
and every coroutine that was passed in is closed, so none warns "coroutine was never awaited"
(warnings are errors in this suite)."""

from __future__ import annotations

import asyncio
import math

import pytest


async def value(x):
    return x


def coroutines(n=3):
    return [value(i) for i in range(n)]


# --- non-awaitables ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["gather", "gather_settled", "race", "first_success"])
@pytest.mark.parametrize("position", [0, 1, 3])
async def test_a_non_awaitable_is_a_type_error_and_closes_every_coroutine(
    tc, assert_closed_without_warning, name, position
):
    coros = coroutines()
    args = list(coros)
    args.insert(position, 42)
    with pytest.raises(TypeError, match=f"argument {position} is 'int'"):
        await getattr(tc, name)(*args)
    assert_closed_without_warning(coros)


async def test_a_future_passed_with_a_non_awaitable_is_left_alone(tc):
    future = asyncio.get_running_loop().create_future()
    with pytest.raises(TypeError):
        await tc.gather(future, "nope")
    assert not future.done()
    future.cancel()


async def test_as_completed_checks_a_collection_up_front(tc, assert_closed_without_warning):
    coros = coroutines()
    with pytest.raises(TypeError, match="argument 1 is 'str'"):
        tc.as_completed([coros[0], "nope", *coros[1:]])
    assert_closed_without_warning(coros)


async def test_as_completed_needs_an_iterable(tc):
    with pytest.raises(TypeError, match="iterable"):
        tc.as_completed(42)


# --- limit -------------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [0, -1])
async def test_limit_below_one_is_a_value_error(tc, assert_closed_without_warning, limit):
    with pytest.raises(ValueError, match="limit must be >= 1"):
        await tc.map_async(value, [1], limit=limit)
    coros = coroutines()
    with pytest.raises(ValueError, match="limit must be >= 1"):
        tc.as_completed(coros, limit=limit)
    assert_closed_without_warning(coros)


@pytest.mark.parametrize("limit", [1.5, "2", True, 2.0])
async def test_limit_that_is_not_an_int_is_a_type_error(tc, assert_closed_without_warning, limit):
    with pytest.raises(TypeError, match="limit must be a positive int"):
        await tc.map_async(value, [1], limit=limit)
    coros = coroutines()
    with pytest.raises(TypeError, match="limit must be a positive int"):
        tc.as_completed(coros, limit=limit)
    assert_closed_without_warning(coros)


# --- map_async ---------------------------------------------------------------------------------


async def test_map_async_argument_errors(tc):
    with pytest.raises(TypeError, match="fn must be callable"):
        await tc.map_async(42, [1])
    with pytest.raises(TypeError):
        await tc.map_async(value, 42)  # not iterable
    with pytest.raises(TypeError, match="progress"):
        await tc.map_async(value, [1], progress=42)


async def test_map_async_fn_returning_a_non_awaitable_raises_type_error(tc, leftover_tasks):
    with pytest.raises(TypeError):
        await tc.map_async(lambda x: x, [1, 2], limit=1)
    assert not leftover_tasks()


# --- timeouts ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["race", "first_success"])
@pytest.mark.parametrize(
    ("timeout", "error"), [(math.nan, ValueError), ("1", TypeError), (True, TypeError)]
)
async def test_a_bad_timeout_closes_the_coroutines(
    tc, assert_closed_without_warning, name, timeout, error
):
    coros = coroutines()
    with pytest.raises(error, match="timeout"):
        await getattr(tc, name)(*coros, timeout=timeout)
    assert_closed_without_warning(coros)


# --- retry -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"attempts": 0}, ValueError, "attempts must be >= 1"),
        ({"attempts": -3}, ValueError, "attempts must be >= 1"),
        ({"attempts": 2.0}, TypeError, "attempts must be an int"),
        ({"attempts": True}, TypeError, "attempts must be an int"),
        ({"backoff": -1}, ValueError, "backoff"),
        ({"backoff": math.nan}, ValueError, "backoff"),
        ({"max_backoff": math.inf}, ValueError, "max_backoff"),
        ({"backoff_factor": 0.5}, ValueError, "backoff_factor"),
        ({"jitter": -0.1}, ValueError, "jitter"),
        ({"jitter": "0.1"}, TypeError, "jitter"),
        ({"retry_on": BaseException}, ValueError, "CancelledError"),
        ({"retry_on": asyncio.CancelledError}, ValueError, "CancelledError"),
        ({"retry_on": KeyboardInterrupt}, ValueError, "Exception subclasses only"),
        ({"retry_on": "ValueError"}, TypeError, "retry_on"),
        ({"exclude": [ValueError]}, TypeError, "exclude"),
    ],
)
async def test_retry_argument_errors(tc, kwargs, error, match):
    called = False

    async def fn():
        nonlocal called
        called = True

    with pytest.raises(error, match=match):
        await tc.retry(fn, **kwargs)
    assert not called


async def test_retry_needs_a_callable(tc, assert_closed_without_warning):
    with pytest.raises(TypeError, match="fn must be callable"):
        await tc.retry(42)
