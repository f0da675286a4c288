"""Shared test machinery for the toolcase_rs core.

Every async test runs once per event loop (the stdlib loop and uvloop, through pytest-asyncio's
``pytest_asyncio_loop_factories`` hook). Tests marked ``fake_clock`` run instead on a selector
loop whose clock only moves when the test advances it, so deadline tests need no wall-clock
sleeps.

Two fixtures give access to the library under test:

* ``lib`` is an AnyIO-shaped namespace over toolcase_rs *or* AnyIO. A test that uses it is a
  differential test: AnyIO 4.16 is the oracle for the behaviour it checks. Only use it for
  behaviour the contract (docs/core-api.md) does not list as a difference from AnyIO. One known
  difference: toolcase_rs computes ``move_on_after``/``fail_after`` deadlines at scope entry,
  AnyIO's ``move_on_after`` at the call, so differential tests create and enter a scope in the
  same statement.
* ``tc`` is the toolcase_rs module itself, for toolcase_rs-only behaviour.

Both skip (rather than fail) while the native module is not importable, so the AnyIO variants
can validate the tests on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib
import inspect
import os
import types
import warnings
from collections.abc import Callable, Iterator, Mapping

import anyio
import anyio.lowlevel
import pytest

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is optional on exotic platforms
    uvloop = None

#: How many checkpoints a test waits for something that must happen "at the next checkpoint"
#: or "within a loop iteration or two", before declaring that it did not happen.
PATIENCE = 10

#: Per-test timeout for tests that do not set their own (pyproject sets a global 60 s).
DEFAULT_TIMEOUT = 15


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "fake_clock: run on a selector loop whose clock the test advances by hand"
    )
    # Hypothesis imports libcst when it reports a failing example; libcst's import emits a
    # DeprecationWarning (mypy_extensions.TypedDict) that `filterwarnings = error` would turn
    # into an INTERNALERROR hiding the real failure. Import it once, quietly, up front.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with contextlib.suppress(ImportError):
            import hypothesis.extra._patching  # noqa: F401


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(DEFAULT_TIMEOUT))


class FakeClockLoop(asyncio.SelectorEventLoop):
    """A selector loop whose ``time()`` is real time plus an offset the test controls.

    Timers scheduled with ``call_at``/``call_later`` (and so every deadline that is built on
    ``loop.time()``) fire as soon as ``advance()`` has moved the clock past them and the loop
    runs its next iteration. Tests use deadlines of seconds or more, so the real-time part is
    negligible.
    """

    def __init__(self) -> None:
        super().__init__()
        self._offset = 0.0

    def time(self) -> float:
        return super().time() + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += seconds


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    if item.get_closest_marker("fake_clock") is not None:
        return {"fake_clock": FakeClockLoop}
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop
    }
    if uvloop is not None:
        factories["uvloop"] = uvloop.new_event_loop
    if os.environ.get("TOOLCASE_RS_TEST_EAGER") and hasattr(asyncio, "eager_task_factory"):
        # Opt-in (3.12+): the whole suite on loops whose tasks start eagerly, to hunt crashes
        # and hangs. About twenty tests assert that a spawned child has not started yet, which
        # eager start changes by design (their AnyIO variants fail the same way).
        factories = {"asyncio-eager": _eager_loop}
    return factories


def _eager_loop() -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    loop.set_task_factory(asyncio.eager_task_factory)  # type: ignore[attr-defined]
    return loop


def _import_toolcase_rs() -> types.ModuleType:
    try:
        return importlib.import_module("toolcase_rs")
    except ImportError as exc:
        pytest.skip(f"toolcase_rs is not importable yet: {exc}")


def _namespace(module: types.ModuleType, checkpoint: Callable[[], object]) -> types.SimpleNamespace:
    return types.SimpleNamespace(
        name=module.__name__,
        module=module,
        CancelScope=module.CancelScope,
        move_on_after=module.move_on_after,
        fail_after=module.fail_after,
        move_on_at=module.move_on_at,
        fail_at=module.fail_at,
        create_task_group=module.create_task_group,
        sleep=module.sleep,
        sleep_forever=module.sleep_forever,
        checkpoint=checkpoint,
        current_effective_deadline=module.current_effective_deadline,
        current_time=module.current_time,
        get_cancelled_exc_class=module.get_cancelled_exc_class,
        TASK_STATUS_IGNORED=module.TASK_STATUS_IGNORED,
        # Section 2 of the spec (docs/sync-api.md), the primitives AnyIO has too. A name the
        # module does not have (yet) is None; tests that need it skip (tests/sync: `need`).
        Lock=getattr(module, "Lock", None),
        Semaphore=getattr(module, "Semaphore", None),
        CapacityLimiter=getattr(module, "CapacityLimiter", None),
        Event=getattr(module, "Event", None),
        Condition=getattr(module, "Condition", None),
        WouldBlock=getattr(module, "WouldBlock", None),
    )


@pytest.fixture
def tc() -> types.ModuleType:
    """The toolcase_rs module (skips the test while it cannot be imported)."""
    return _import_toolcase_rs()


def _make_lib(name: str) -> types.SimpleNamespace:
    if name == "anyio":
        return _namespace(anyio, anyio.lowlevel.checkpoint)
    module = _import_toolcase_rs()
    return _namespace(module, module.checkpoint)


LIB_NAMES = ["toolcase_rs", "anyio"]


@pytest.fixture(params=LIB_NAMES)
def lib(request: pytest.FixtureRequest) -> types.SimpleNamespace:
    """An AnyIO-shaped namespace over toolcase_rs or AnyIO, for differential tests."""
    return _make_lib(request.param)


@pytest.fixture
def make_lib() -> Callable[[str], types.SimpleNamespace]:
    """``make_lib("toolcase_rs" | "anyio")``: the same namespace as ``lib``, for tests that mix
    the two libraries (skips while toolcase_rs is not importable)."""
    return _make_lib


# ---------------------------------------------------------------------------------------------
# Small helpers, exposed as fixtures so test modules need no imports from here.
# ---------------------------------------------------------------------------------------------


class CountingTask(asyncio.Task):
    """An ``asyncio.Task`` subclass that counts ``cancel()`` and ``uncancel()`` calls."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.cancel_calls = 0
        self.uncancel_calls = 0

    def cancel(self, msg: object = None) -> bool:
        self.cancel_calls += 1
        return super().cancel(msg)

    def uncancel(self) -> int:
        self.uncancel_calls += 1
        return super().uncancel()


class CountingPyTask(asyncio.tasks._PyTask):  # type: ignore[name-defined,misc]
    """The same counters on the pure-Python Task implementation (different private state)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.cancel_calls = 0
        self.uncancel_calls = 0

    def cancel(self, msg: object = None) -> bool:
        self.cancel_calls += 1
        return super().cancel(msg)

    def uncancel(self) -> int:
        self.uncancel_calls += 1
        return super().uncancel()


@contextlib.contextmanager
def _task_factory(task_class: type[asyncio.Task]) -> Iterator[list[asyncio.Task]]:
    """Make the running loop create every new task as ``task_class`` for the block; yields the
    list of tasks created so far."""
    loop = asyncio.get_running_loop()
    previous = loop.get_task_factory()
    created: list[asyncio.Task] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: object, **kwargs: object) -> asyncio.Task:
        task = task_class(coro, loop=loop, **kwargs)
        created.append(task)
        return task

    loop.set_task_factory(factory)
    try:
        yield created
    finally:
        loop.set_task_factory(previous)


@pytest.fixture
def task_factory() -> Callable[..., contextlib.AbstractContextManager[list[asyncio.Task]]]:
    """``with task_factory(cls) as created:`` makes the running loop build every new task as
    ``cls`` (default ``CountingTask``); ``created`` lists them."""

    def install(task_class: type[asyncio.Task] = CountingTask):
        return _task_factory(task_class)

    return install


@pytest.fixture(params=[CountingTask, CountingPyTask], ids=["c_task_subclass", "py_task_subclass"])
def counting_task_class(request: pytest.FixtureRequest) -> type[asyncio.Task]:
    return request.param


def _assert_closed_without_warning(coros: list) -> None:
    """Every coroutine in ``coros`` is closed, and dropping them (the list must hold the last
    references) emits no "coroutine ... was never awaited" RuntimeWarning."""
    assert all(inspect.getcoroutinestate(c) == inspect.CORO_CLOSED for c in coros)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        coros.clear()
        gc.collect()
    assert not [w for w in caught if "never awaited" in str(w.message)]


@pytest.fixture
def assert_closed_without_warning() -> Callable[[list], None]:
    return _assert_closed_without_warning


async def _checkpoints(n: int = PATIENCE) -> None:
    """Yield to the loop ``n`` times with plain ``asyncio.sleep(0)``."""
    for _ in range(n):
        await asyncio.sleep(0)


@pytest.fixture
def yield_loop() -> Callable[..., object]:
    """``await yield_loop(n)``: let the loop run ``n`` iterations (native ``sleep(0)``)."""
    return _checkpoints
