"""Regressions from newcomer complaints (issue text, no repro scripts).

(a) the classes that are generic for type checkers subscript at runtime (``tc.TaskStatus[int]``);
(b) ``map_async`` given a plain ``def`` function says which function is wrong;
(c) an expired ``fail_after`` / ``fail_at`` says which deadline passed;
(d) ``CapacityLimiter.acquire()`` is ``acquire_on_behalf_of(current_task())``, as in AnyIO;
(e) a negative sleep delay is a ``ValueError``, as in AnyIO 4.16.

``lib`` tests are differential: AnyIO 4.16 is the oracle (its variants pass on the old build).
"""

from __future__ import annotations

import asyncio
import math
import typing

import pytest


# Pins newcomer (a): generic classes subscript at runtime (Queue and the combinators: controls).
@pytest.mark.parametrize(
    "name", ["TaskStatus", "TaskHandle", "Queue", "CompletionStream", "Settled"]
)
def test_generic_public_class_subscripts_at_runtime(tc, name):
    """TaskStatus and TaskHandle are Generic in the stubs; the old build cannot subscript them."""
    cls = getattr(tc, name)
    assert isinstance(cls, type)
    alias = cls[int]
    assert alias is cls or typing.get_origin(alias) is cls, alias


def plain_sync_function(item: int) -> int:
    return item


# Pins newcomer (b): map_async(plain def function) is a TypeError naming the function.
async def test_map_async_with_a_plain_function_names_it_in_the_type_error(tc):
    """The old build fails deep inside with "object int can't be used in 'await' expression"."""
    with pytest.raises(TypeError, match="plain_sync_function"):
        await tc.map_async(plain_sync_function, [1])


# Pins newcomer (c): an expired fail_after says which deadline passed.
async def test_fail_after_timeout_message_names_fail_after_and_the_deadline(tc):
    """The old build raises a bare TimeoutError() with an empty message."""
    with pytest.raises(TimeoutError) as info:
        with tc.fail_after(0.05):
            await tc.sleep_forever()
    message = str(info.value)
    assert "fail_after" in message, repr(message)
    assert "deadline" in message, repr(message)


# Pins newcomer (c): an expired fail_at says so.
async def test_fail_at_timeout_message_names_fail_at(tc):
    with pytest.raises(TimeoutError) as info:
        with tc.fail_at(tc.current_time() + 0.05):
            await tc.sleep_forever()
    assert "fail_at" in str(info.value), repr(str(info.value))


# Control for newcomer (c): an explicit reason is the whole message (unchanged behaviour).
async def test_fail_after_with_a_reason_uses_it_as_the_message_control(tc):
    with pytest.raises(TimeoutError) as info:
        with tc.fail_after(0.05, reason="x"):
            await tc.sleep_forever()
    assert str(info.value) == "x"


# Pins newcomer (d): CapacityLimiter.acquire() borrows on behalf of current_task() (AnyIO: oracle).
async def test_capacity_limiter_acquire_borrows_on_behalf_of_the_current_task(lib):
    """release_on_behalf_of(current_task()) releases it; the old build raises RuntimeError."""
    limiter = lib.CapacityLimiter(1)
    task = asyncio.current_task()
    await limiter.acquire()
    assert limiter.statistics().borrowers == (task,)
    limiter.release_on_behalf_of(task)
    assert limiter.borrowed_tokens == 0
    assert limiter.statistics().borrowers == ()


# Pins newcomer (e): a negative sleep delay is a ValueError (AnyIO 4.16: the oracle).
@pytest.mark.parametrize("delay", [-1, -0.5, -math.inf], ids=["-1", "-0.5", "-inf"])
async def test_negative_sleep_delay_raises_value_error(lib, delay):
    """The old build returns at once for -1 and -inf."""
    with pytest.raises(ValueError, match=r"\S"):
        await lib.sleep(delay)


# Control for newcomer (e): sleep(nan) is already a ValueError.
async def test_nan_sleep_delay_raises_value_error_control(lib):
    with pytest.raises(ValueError, match=r"\S"):
        await lib.sleep(math.nan)
