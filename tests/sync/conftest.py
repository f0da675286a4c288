"""Shared machinery for the synchronisation primitives (spec section 2, docs/sync-api.md).

What lives here:

* ``need(owner, name)``: the attribute, or a skip while the primitive does not exist yet (the
  tests are written before the Rust side lands; a missing name must skip, never fail).
* ``lock_kind`` / ``tc_lock_kind``: one lock-like type per parameter, for the contract that
  trio runs as ``generic_lock_test``: Lock, RLock, Semaphore(1), CapacityLimiter(1) and a
  Condition's lock, each with ``fast_acquire`` off and on where the type has it. ``lock_kind``
  is built on ``lib`` (toolcase_rs and AnyIO: differential), ``tc_lock_kind`` on toolcase_rs
  only, for what AnyIO does not have (timeouts, the blocking API).
* ``threads``: plain threads for a test, whose exceptions fail the test; ``run_loop`` runs a
  coroutine on a fresh event loop in the calling thread (asyncio debug mode on, so a
  non-thread-safe asyncio call made from the wrong thread raises instead of corrupting the loop).
* ``thread_loop``: the loop factories threads use (stdlib and uvloop, like the async tests).
* ``unraisables``: what reached ``sys.unraisablehook`` during the test.

Nothing here sleeps to order events; waiting helpers poll state with a bound and fail loudly.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import types
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is optional on exotic platforms
    uvloop = None

#: How long a thread-side wait may take before the test declares a deadlock (seconds). Far above
#: anything a correct implementation needs; it only turns a hang into a readable failure.
HANG = 10.0


def need(owner: object, name: str) -> Any:
    """``owner.name``, or skip the test while the primitive is missing (None or no attribute)."""
    value = getattr(owner, name, None)
    if value is None:
        module = getattr(owner, "module", owner)
        label = getattr(module, "__name__", repr(owner))
        pytest.skip(f"{label}.{name} is not available (spec section 2)")
    return value


@pytest.fixture(name="need")
def need_fixture() -> Callable[[object, str], Any]:
    """``need(tc, "Queue")``: the attribute, or skip while it is missing."""
    return need


# ---------------------------------------------------------------------------------------------
# The lock-like types of the generic contract


@dataclass(frozen=True)
class KindSpec:
    """How to build one lock-like type from a library namespace, and what it promises."""

    requires: str  # the primitive's name; the test skips while the library lacks it
    build: Callable[[Any], Any]
    fast: bool = False  # acquiring a free lock does not yield to the loop
    owned: bool = True  # only the holder may release; release by anyone else is RuntimeError
    reentrant: bool = False
    nowait: bool = True  # acquire_nowait() is part of the contract for this type
    blocking: bool = True  # the blocking API (acquire_blocking, sync `with`) exists
    condition: bool = False  # the lock is a Condition's (statistics are nested)


def _primitive(lib: Any, name: str) -> Any:
    value = getattr(lib, name, None)
    if value is None:
        value = getattr(lib.module, name, None)
    return value


KINDS: dict[str, KindSpec] = {
    "Lock": KindSpec("Lock", lambda L: L.Lock()),
    "Lock(fast_acquire)": KindSpec("Lock", lambda L: L.Lock(fast_acquire=True), fast=True),
    "RLock": KindSpec("RLock", lambda L: _primitive(L, "RLock")(), reentrant=True),
    "Semaphore(1)": KindSpec("Semaphore", lambda L: L.Semaphore(1), owned=False),
    "Semaphore(1,fast_acquire)": KindSpec(
        "Semaphore", lambda L: L.Semaphore(1, fast_acquire=True), fast=True, owned=False
    ),
    "CapacityLimiter(1)": KindSpec("CapacityLimiter", lambda L: L.CapacityLimiter(1)),
    "Condition()": KindSpec(
        "Condition", lambda L: L.Condition(), nowait=False, blocking=False, condition=True
    ),
    "Condition(Lock(fast_acquire))": KindSpec(
        "Condition",
        lambda L: L.Condition(L.Lock(fast_acquire=True)),
        fast=True,
        nowait=False,
        blocking=False,
        condition=True,
    ),
}


@dataclass(frozen=True)
class LockKind:
    """One lock-like type built on one library (a ``lib`` namespace from tests/conftest.py)."""

    id: str
    lib: types.SimpleNamespace
    spec: KindSpec = field(repr=False)

    @property
    def fast(self) -> bool:
        return self.spec.fast

    @property
    def owned(self) -> bool:
        return self.spec.owned

    @property
    def reentrant(self) -> bool:
        return self.spec.reentrant

    @property
    def nowait(self) -> bool:
        return self.spec.nowait

    @property
    def blocking(self) -> bool:
        return self.spec.blocking

    def make(self) -> Any:
        """A new, free instance."""
        return self.spec.build(self.lib)

    def held(self, lock: Any) -> bool:
        """Whether anyone holds it (read through the public API of that type)."""
        if self.spec.requires == "Semaphore":
            return lock.value == 0
        if self.spec.requires == "CapacityLimiter":
            return lock.borrowed_tokens > 0
        return bool(lock.locked())

    def waiting(self, lock: Any) -> int:
        """How many tasks wait to acquire it, from ``statistics()``."""
        stats = lock.statistics()
        if self.spec.condition:
            stats = stats.lock_statistics
        return int(stats.tasks_waiting)


def _kind(name: str, lib: types.SimpleNamespace) -> LockKind:
    spec = KINDS[name]
    if _primitive(lib, spec.requires) is None:
        if lib.name == "anyio":
            pytest.skip(f"AnyIO has no {spec.requires} (toolcase_rs only)")
        pytest.skip(f"{lib.name}.{spec.requires} is not available (spec section 2)")
    if spec.requires == "Condition" and lib.Lock is None:
        pytest.skip(f"{lib.name}.Lock is not available (spec section 2)")
    return LockKind(name, lib, spec)


@pytest.fixture(params=list(KINDS))
def lock_kind(request: pytest.FixtureRequest, lib: types.SimpleNamespace) -> LockKind:
    """Every lock-like type, on toolcase_rs and on AnyIO (the types AnyIO has)."""
    return _kind(request.param, lib)


@pytest.fixture(params=list(KINDS))
def tc_lock_kind(
    request: pytest.FixtureRequest, make_lib: Callable[[str], types.SimpleNamespace]
) -> LockKind:
    """Every lock-like type, on toolcase_rs only."""
    return _kind(request.param, make_lib("toolcase_rs"))


# ---------------------------------------------------------------------------------------------
# Threads and loops in threads


def _thread_loop_factories() -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop
    }
    if uvloop is not None:
        factories["uvloop"] = uvloop.new_event_loop
    return factories


THREAD_LOOPS = _thread_loop_factories()


@pytest.fixture(params=list(THREAD_LOOPS), ids=[f"threads_on_{k}" for k in THREAD_LOOPS])
def thread_loop(request: pytest.FixtureRequest) -> Callable[[], asyncio.AbstractEventLoop]:
    """The loop factory for event loops that a test runs in its own threads."""
    return THREAD_LOOPS[request.param]


def run_loop(
    factory: Callable[[], asyncio.AbstractEventLoop],
    main: Callable[[], Coroutine[Any, Any, Any]],
) -> Any:
    """Run ``main()`` on a new loop from ``factory`` in this thread, in asyncio debug mode."""
    with asyncio.Runner(loop_factory=factory, debug=True) as runner:
        return runner.run(main())


@pytest.fixture(name="run_loop")
def run_loop_fixture() -> Callable[..., Any]:
    return run_loop


class Threads:
    """Plain threads started by one test; the first exception any of them raised fails it."""

    def __init__(self) -> None:
        self._threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    def start(self, target: Callable[..., object], *args: object, name: str = "") -> None:
        def run() -> None:
            try:
                target(*args)
            except BaseException as exc:
                self.errors.append(exc)

        thread = threading.Thread(target=run, name=name or None, daemon=True)
        self._threads.append(thread)
        thread.start()

    def join(self, timeout: float = HANG) -> None:
        """Wait for every thread; re-raise the first error; fail if one is still running."""
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self.errors:
            raise self.errors[0]
        alive = [t.name for t in self._threads if t.is_alive()]
        assert not alive, f"threads still running after {timeout} s (deadlock?): {alive}"

    async def ajoin(self, timeout: float = HANG) -> None:
        """``join`` without blocking the running loop."""
        await asyncio.to_thread(self.join, timeout)

    def reap(self) -> None:
        """Wait (bounded) for every thread, ignoring errors: teardown after a failed test."""
        for thread in self._threads:
            thread.join(HANG)


@pytest.fixture
def threads() -> Iterator[Threads]:
    """Start plain threads with ``threads.start(fn, *args)``; ``join()`` / ``await ajoin()``."""
    runner = Threads()
    yield runner
    runner.reap()  # a test that failed early must not leave threads running into the next


def wait_until(predicate: Callable[[], object], what: str, timeout: float = HANG) -> None:
    """Block this (non-loop) thread until ``predicate()`` is true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.0005)


@pytest.fixture(name="wait_until")
def wait_until_fixture() -> Callable[..., None]:
    return wait_until


async def await_until(predicate: Callable[[], object], what: str, timeout: float = HANG) -> None:
    """Let the loop run until ``predicate()`` is true (state set by another thread)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.0005)


@pytest.fixture(name="await_until")
def await_until_fixture() -> Callable[..., Awaitable[None]]:
    return await_until


@pytest.fixture
def unraisables() -> Iterator[list[str]]:
    """The unraisable exceptions reported during the test (Rust drops, __del__, callbacks)."""
    seen: list[str] = []
    previous = sys.unraisablehook

    def hook(info: Any) -> None:
        seen.append(f"{info.exc_type.__name__}: {info.exc_value} (in {info.object!r})")

    sys.unraisablehook = hook
    try:
        yield seen
    finally:
        sys.unraisablehook = previous
