"""Every misuse of a primitive the contract (docs/sync-api.md) names, and the error it raises.

``lib`` tests are differential: AnyIO raises the same exception type for the same misuse. The
messages are not compared (the contract does not fix them) but must say something. ``tc`` tests
cover toolcase_rs-only rules: CapacityLimiter below 1, Condition's lock type, Barrier, Queue,
RateLimiter (in test_rate_limiter.py), the blocking API inside a loop thread, and the exception
hierarchy.
"""

from __future__ import annotations

import asyncio
import math

import pytest


def raises(error: type[BaseException]):
    """``pytest.raises`` that also requires a non-empty message."""
    return pytest.raises(error, match=r"\S")


# --- Lock ---------------------------------------------------------------------------------------


async def test_lock_release_when_not_held(lib, need):
    lock = need(lib, "Lock")()
    with raises(RuntimeError):
        lock.release()


async def test_lock_release_by_another_task(lib, need):
    lock = need(lib, "Lock")()
    await lock.acquire()

    async def intruder() -> None:
        lock.release()

    with raises(RuntimeError):
        await asyncio.create_task(intruder())
    assert lock.locked()
    lock.release()


@pytest.mark.parametrize("fast_acquire", [False, True], ids=["default", "fast_acquire"])
async def test_lock_reacquire_by_the_holder(lib, need, fast_acquire):
    lock = need(lib, "Lock")(fast_acquire=fast_acquire)
    await lock.acquire()
    with raises(RuntimeError):
        await lock.acquire()
    with raises(RuntimeError):
        lock.acquire_nowait()
    assert lock.locked()
    lock.release()
    assert not lock.locked()


async def test_lock_fast_acquire_is_keyword_only(lib, need):
    with pytest.raises(TypeError):
        need(lib, "Lock")(True)


# --- Semaphore ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        ((-1,), {}, ValueError),
        ((1.5,), {}, TypeError),
        (("1",), {}, TypeError),
        ((2,), {"max_value": 1}, ValueError),
        ((1,), {"max_value": "2"}, TypeError),
        ((1,), {"max_value": 2.5}, TypeError),
    ],
    ids=["negative", "float", "str", "max_below_initial", "max_str", "max_float"],
)
async def test_semaphore_bad_counts(lib, need, args, kwargs, error):
    with raises(error):
        need(lib, "Semaphore")(*args, **kwargs)


async def test_semaphore_release_past_max_value(lib, need):
    sem = need(lib, "Semaphore")(1, max_value=1)
    with raises(ValueError):
        sem.release()
    assert sem.value == 1


# --- CapacityLimiter ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("total", "error"),
    [(-1, ValueError), (1.5, TypeError), ("2", TypeError), (None, TypeError)],
    ids=["negative", "float", "str", "None"],
)
async def test_capacity_limiter_bad_total_tokens(lib, need, total, error):
    limiter_class = need(lib, "CapacityLimiter")
    with pytest.raises(error):
        limiter_class(total)
    limiter = limiter_class(2)
    with pytest.raises(error):
        limiter.total_tokens = total
    assert limiter.total_tokens == 2


async def test_capacity_limiter_below_one_is_value_error(tc, need):
    """The contract says ``>= 1`` (AnyIO 4.16 accepts 0: not differential)."""
    limiter_class = need(tc, "CapacityLimiter")
    with raises(ValueError):
        limiter_class(0)
    limiter = limiter_class(1)
    with raises(ValueError):
        limiter.total_tokens = 0
    limiter.total_tokens = math.inf
    assert limiter.total_tokens == math.inf


async def test_capacity_limiter_borrower_acquiring_twice(lib, need):
    limiter = need(lib, "CapacityLimiter")(3)
    await limiter.acquire()
    with raises(RuntimeError):
        await limiter.acquire()
    with raises(RuntimeError):
        limiter.acquire_nowait()
    limiter.acquire_on_behalf_of_nowait("job")
    with raises(RuntimeError):
        await limiter.acquire_on_behalf_of("job")
    with raises(RuntimeError):
        limiter.acquire_on_behalf_of_nowait("job")
    assert limiter.borrowed_tokens == 2
    limiter.release()
    limiter.release_on_behalf_of("job")


async def test_capacity_limiter_release_not_held(lib, need):
    limiter = need(lib, "CapacityLimiter")(1)
    with raises(RuntimeError):
        limiter.release()
    with raises(RuntimeError):
        limiter.release_on_behalf_of("nobody")
    await limiter.acquire()

    async def intruder() -> None:
        limiter.release()

    with raises(RuntimeError):
        await asyncio.create_task(intruder())
    assert limiter.borrowed_tokens == 1
    limiter.release()


# --- Condition ----------------------------------------------------------------------------------


async def test_condition_needs_the_lock_held(lib, need):
    cond = need(lib, "Condition")()
    with raises(RuntimeError):
        cond.notify()
    with raises(RuntimeError):
        cond.notify_all()
    with raises(RuntimeError):
        await cond.wait()
    with raises(RuntimeError):
        cond.release()
    assert not cond.locked()


async def test_condition_held_by_another_task_is_not_held_by_me(lib, need):
    cond = need(lib, "Condition")()
    await cond.acquire()

    async def intruder() -> None:
        cond.notify()

    with raises(RuntimeError):
        await asyncio.create_task(intruder())
    cond.release()


@pytest.mark.parametrize("lock", ["asyncio.Lock", "object", "Semaphore"])
def test_condition_lock_must_be_a_toolcase_lock(tc, need, lock):
    condition = need(tc, "Condition")
    bad = {
        "asyncio.Lock": asyncio.Lock,
        "object": object,
        "Semaphore": lambda: need(tc, "Semaphore")(1),
    }[lock]()
    with raises(TypeError):
        condition(bad)


# --- RLock, Barrier, Queue (toolcase_rs only) ---------------------------------------------------


async def test_rlock_release_more_than_acquired(tc, need):
    lock = need(tc, "RLock")()
    await lock.acquire()
    lock.release()
    with raises(RuntimeError):
        lock.release()


@pytest.mark.parametrize(
    ("parties", "error"),
    [(0, ValueError), (-2, ValueError), ("2", TypeError), (1.5, TypeError)],
)
def test_barrier_bad_parties(tc, need, parties, error):
    with raises(error):
        need(tc, "Barrier")(parties)


@pytest.mark.parametrize("maxsize", ["3", 1.5, None])
def test_queue_bad_maxsize(tc, need, maxsize):
    with raises(TypeError):
        need(tc, "Queue")(maxsize)


def test_exception_hierarchy(tc, need):
    would_block = need(tc, "WouldBlock")
    assert issubclass(would_block, Exception)
    assert issubclass(need(tc, "QueueEmpty"), would_block)
    assert issubclass(tc.QueueEmpty, asyncio.QueueEmpty)
    assert issubclass(need(tc, "QueueFull"), would_block)
    assert issubclass(tc.QueueFull, asyncio.QueueFull)
    assert issubclass(need(tc, "ClosedResourceError"), Exception)
    assert issubclass(need(tc, "EndOfStream"), Exception)
    for name in ("WouldBlock", "QueueEmpty", "QueueFull", "ClosedResourceError", "EndOfStream"):
        assert getattr(tc, name).__module__ == "toolcase_rs"


# --- the blocking API inside a running loop's thread --------------------------------------------


BLOCKING_CALLS = {
    "Lock.acquire_blocking": ("Lock", lambda p: p.acquire_blocking()),
    "Lock sync with": ("Lock", lambda p: p.__enter__()),
    "RLock.acquire_blocking": ("RLock", lambda p: p.acquire_blocking()),
    "Semaphore.acquire_blocking": ("Semaphore", lambda p: p.acquire_blocking()),
    "Semaphore sync with": ("Semaphore", lambda p: p.__enter__()),
    "CapacityLimiter.acquire_blocking": ("CapacityLimiter", lambda p: p.acquire_blocking()),
    "CapacityLimiter sync with": ("CapacityLimiter", lambda p: p.__enter__()),
    "Event.wait_blocking": ("Event", lambda p: p.wait_blocking()),
    "Queue.put_blocking": ("Queue", lambda p: p.put_blocking(1)),
    "Queue.get_blocking": ("Queue", lambda p: p.get_blocking()),
}


def _build(tc, need, name: str):
    cls = need(tc, name)
    if name == "Semaphore":
        return cls(1)
    if name == "CapacityLimiter":
        return cls(1)
    if name == "Queue":
        return cls(1)
    return cls()


@pytest.mark.parametrize("call", list(BLOCKING_CALLS))
async def test_blocking_call_in_the_loop_thread_is_runtime_error(tc, need, call):
    """Even when it could complete at once: the call itself is misplaced on a loop thread."""
    name, invoke = BLOCKING_CALLS[call]
    primitive = _build(tc, need, name)
    with raises(RuntimeError):
        invoke(primitive)
    # Nothing was taken or given.
    if name in ("Lock", "RLock"):
        assert not primitive.locked()
    elif name == "Semaphore":
        assert primitive.value == 1
    elif name == "CapacityLimiter":
        assert primitive.borrowed_tokens == 0
    elif name == "Queue":
        assert primitive.empty()


async def test_blocking_call_in_the_loop_thread_does_not_freeze_when_it_would_wait(tc, need):
    lock = need(tc, "Lock")()
    await lock.acquire()
    with raises(RuntimeError):
        lock.acquire_blocking(timeout=60)
    event = need(tc, "Event")()
    with raises(RuntimeError):
        event.wait_blocking(timeout=60)
    lock.release()
