"""One regression test per row of design/PITFALLS.md (rows 1-19, 28, 30).

Each test is named ``test_rowNN_<what>_<upstream issue>`` and pins the exact scenario of the
row. Where AnyIO defines the behaviour the test takes ``lib`` and runs against AnyIO as well
(differential); rows about toolcase_rs-only API take ``tc``. Every test runs on the stdlib loop
and on uvloop (conftest); the deadline rows run on the fake-clock loop instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import sys
import threading
import time

import pytest

NEVER = 3600
GROUP_MESSAGE = "unhandled errors in a TaskGroup"


async def park():
    await asyncio.Event().wait()


def leaf_types(group: BaseExceptionGroup) -> list[type]:
    leaves = []
    for exc in group.exceptions:
        leaves.extend(leaf_types(exc) if isinstance(exc, BaseExceptionGroup) else [type(exc)])
    return leaves


async def assert_no_pending_cancellation():
    """The current task has no cancellation pending and cancelling() is balanced: plain awaits
    go through and a native timeout reports TimeoutError, not CancelledError."""
    assert asyncio.current_task().cancelling() == 0
    for _ in range(3):
        await asyncio.sleep(0)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0):
            await asyncio.sleep(NEVER)


def fake_loop():
    loop = asyncio.get_running_loop()
    assert hasattr(loop, "advance"), "this test needs the fake_clock marker"
    return loop


# --- rows 1-4: delivering a cancellation ----------------------------------------------------------


@pytest.mark.parametrize("order", ["scope_then_native", "native_then_scope"])
async def test_row01_native_cancel_same_iteration_not_swallowed_anyio1214(lib, order):
    entered = asyncio.Event()
    seen = {}

    async def body():
        try:
            with lib.CancelScope() as scope:
                seen["scope"] = scope
                entered.set()
                await park()
        except asyncio.CancelledError:
            seen["cancelling"] = asyncio.current_task().cancelling()
            raise

    task = asyncio.create_task(body())
    await entered.wait()
    if order == "scope_then_native":
        seen["scope"].cancel()
        task.cancel()
    else:
        task.cancel()
        seen["scope"].cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    # The scope's own request was balanced; only the native one is left.
    assert seen["cancelling"] == 1


@pytest.mark.parametrize("which", ["outermost", "innermost"])
@pytest.mark.parametrize("depth", [1, 3])
@pytest.mark.parametrize("deliveries", [1, 3])
async def test_row02_cancelling_balanced_after_catch_anyio606_anyio718_anyio774_gh95289(
    lib, which, depth, deliveries
):
    with contextlib.ExitStack() as stack:
        scopes = [stack.enter_context(lib.CancelScope()) for _ in range(depth)]
        target = scopes[0] if which == "outermost" else scopes[-1]
        target.cancel()
        for _ in range(deliveries - 1):
            with contextlib.suppress(asyncio.CancelledError):
                await lib.sleep(NEVER)
        await lib.sleep(NEVER)
    assert target.cancelled_caught
    await assert_no_pending_cancellation()


@pytest.mark.parametrize("how", ["cancel", "past_deadline", "nested_cancel"])
async def test_row03_cancel_then_exit_without_await_gh116720(lib, how):
    if how == "past_deadline":
        with lib.move_on_at(lib.current_time() - 1) as scope:
            pass
    elif how == "cancel":
        with lib.CancelScope() as scope:
            scope.cancel()
    else:
        with lib.CancelScope() as scope:
            with lib.CancelScope():
                scope.cancel()
    assert scope.cancel_called
    assert not scope.cancelled_caught
    await asyncio.sleep(0)  # must not raise CancelledError (3.11/3.12: _must_cancel)
    await assert_no_pending_cancellation()


async def test_row04_cancel_is_not_synchronous(lib):
    steps = []
    with lib.CancelScope() as scope:
        scope.cancel()  # must not raise here
        steps.append("after cancel()")
        assert lib.current_effective_deadline() == float("-inf")
        await lib.checkpoint()
        steps.append("after checkpoint")
    assert steps == ["after cancel()"]
    assert scope.cancel_called
    assert scope.cancelled_caught


# --- rows 5-8: nesting, shields, re-delivery ------------------------------------------------------


async def test_row05_inner_scope_does_not_swallow_outer_cancel_anyio34(lib):
    seen = []
    with lib.CancelScope() as outer:
        try:
            with lib.CancelScope() as inner:
                outer.cancel()
                try:
                    await lib.checkpoint()
                except asyncio.CancelledError as exc:
                    seen.append(exc)
                    raise
        except asyncio.CancelledError as exc:
            seen.append(exc)
            raise
        pytest.fail("the inner scope swallowed the outer cancellation")
    assert len(seen) == 2
    assert seen[0] is seen[1]  # the same exception object crossed the inner scope
    assert not inner.cancelled_caught
    assert outer.cancelled_caught


async def test_row06_shield_defers_outer_cancel_while_siblings_are_cancelled_anyio642(lib):
    log = []
    sibling_started = asyncio.Event()
    sibling_cancelled = asyncio.Event()

    async def sibling():
        sibling_started.set()
        try:
            await park()
        except asyncio.CancelledError:
            sibling_cancelled.set()
            raise

    async with lib.create_task_group() as tg:
        tg.start_soon(sibling)
        await sibling_started.wait()
        with lib.CancelScope(shield=True) as shielded:
            tg.cancel_scope.cancel()
            await lib.checkpoint()
            await sibling_cancelled.wait()  # the sibling is cancelled while we are shielded
            log.append("shielded body finished")
        log.append("shield exited")
        await lib.checkpoint()
        log.append("past checkpoint")
    assert log == ["shielded body finished", "shield exited"]
    assert not shielded.cancelled_caught
    assert tg.cancel_scope.cancelled_caught


async def test_row06_native_cancel_gets_through_a_shield_anyio370(lib):
    inside = asyncio.Event()
    log = []

    async def shielded():
        with lib.CancelScope(shield=True):
            inside.set()
            try:
                await park()
            except asyncio.CancelledError:
                log.append("cancelled inside the shield")
                raise

    task = asyncio.create_task(shielded())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert log == ["cancelled inside the shield"]


@pytest.mark.parametrize("waiter", ["sleep", "lock"])
async def test_row07_level_triggered_redelivery(lib, waiter):
    holder = None
    release = asyncio.Event()
    if waiter == "lock":
        if lib.Lock is None:
            pytest.skip(f"{lib.name}.Lock is not available (spec section 2)")
        lock = lib.Lock()
        locked = asyncio.Event()

        async def hold():
            async with lock:
                locked.set()
                await release.wait()

        holder = asyncio.create_task(hold())
        await locked.wait()
        wait = lock.acquire
    else:

        def wait():
            return lib.sleep(1)

    deliveries = 0
    with lib.CancelScope() as scope:
        scope.cancel()
        for _ in range(3):
            try:
                await wait()
            except asyncio.CancelledError:
                deliveries += 1
            else:
                pytest.fail("the cancellation was not delivered again")
    assert deliveries == 3
    assert asyncio.current_task().cancelling() == 0
    release.set()
    if holder is not None:
        await holder


@pytest.mark.timeout(20)
@pytest.mark.parametrize("where", ["scope_host", "group_child"])
async def test_row08_no_cpu_spin_while_parked_in_a_shield_anyio1111_anyio1257(
    lib, task_factory, where
):
    """A task parked in a shielded scope inside a cancelled scope must not be woken or
    re-cancelled over and over: count ``cancel()`` calls over a window, and the process CPU
    time (the loop is otherwise idle)."""
    parked = asyncio.Event()
    release = asyncio.Event()

    async def park_shielded():
        with lib.CancelScope(shield=True):
            parked.set()
            await release.wait()

    async def scope_host():
        with lib.CancelScope() as scope:
            scope.cancel()
            await park_shielded()
            await lib.checkpoint()  # the deferred cancellation lands here
        return scope.cancelled_caught

    async def group_child():
        async with lib.create_task_group() as tg:
            tg.start_soon(park_shielded)
            await parked.wait()
            tg.cancel_scope.cancel()
        return tg.cancel_scope.cancel_called

    with task_factory() as created:
        host = asyncio.create_task(scope_host() if where == "scope_host" else group_child())
        await parked.wait()
        for _ in range(5):  # let any immediate delivery happen before measuring
            await asyncio.sleep(0)
        calls_before = sum(task.cancel_calls for task in created)
        cpu_before, wall_before = time.process_time(), time.perf_counter()
        await asyncio.sleep(0.2)
        cpu = time.process_time() - cpu_before
        wall = time.perf_counter() - wall_before
        deliveries = sum(task.cancel_calls for task in created) - calls_before
        release.set()
        assert await host is True
    assert deliveries <= 3, f"{deliveries} cancel() calls while parked: a delivery loop spins"
    assert cpu < 0.25 * wall, f"{cpu:.3f}s CPU in {wall:.3f}s wall while parked"


# --- rows 9-13: scope lifecycle and deadlines -----------------------------------------------------


@pytest.mark.fake_clock
@pytest.mark.parametrize("cancelled", [False, True], ids=["uncancelled", "cancelled"])
@pytest.mark.parametrize("misuse", ["out_of_order", "other_task"])
async def test_row09_misnested_exit_leaves_no_timer_or_delivery(lib, misuse, cancelled, yield_loop):
    loop = fake_loop()
    outer = lib.move_on_at(loop.time() + 10)
    inner = lib.move_on_at(loop.time() + 10)
    outer.__enter__()
    inner.__enter__()
    if misuse == "out_of_order":
        with pytest.raises(RuntimeError):
            outer.__exit__(None, None, None)
    else:

        async def intruder():
            with pytest.raises(RuntimeError):
                inner.__exit__(None, None, None)

        await asyncio.create_task(intruder())
    if cancelled:
        inner.cancel()  # a delivery is due at the next checkpoint, but the scope exits first
    for scope in (inner, outer):
        # Which scopes a misnested exit leaves open is a policy question tested in
        # test_misuse.py; this row is about what is left behind once they are all closed.
        with contextlib.suppress(RuntimeError):
            scope.__exit__(None, None, None)
    loop.advance(20)  # both deadlines are now in the past
    await yield_loop()
    assert not outer.cancel_called
    assert inner.cancel_called == cancelled
    await assert_no_pending_cancellation()


async def test_row10_cancel_before_enter_anyio433(lib):
    scope = lib.CancelScope()
    scope.cancel()
    steps = []
    with scope:
        steps.append("entered")
        await lib.checkpoint()
        steps.append("past first checkpoint")
    assert steps == ["entered"]
    assert scope.cancelled_caught
    await assert_no_pending_cancellation()


@pytest.mark.fake_clock
@pytest.mark.parametrize("case", ["past_at_enter", "rescheduled", "infinite", "nan"])
async def test_row11_deadline_edge_cases_on_a_fake_clock(lib, case, yield_loop):
    loop = fake_loop()
    if case == "past_at_enter":
        with lib.move_on_at(loop.time() - 1) as scope:
            await lib.checkpoint()
            pytest.fail("a past deadline did not cancel at the first checkpoint")
        assert scope.cancelled_caught
    elif case == "rescheduled":
        with lib.move_on_at(loop.time() + 10) as scope:
            scope.deadline = loop.time() + 20
            loop.advance(15)  # past the old deadline only
            await yield_loop()
            loop.advance(10)
            await yield_loop()
            pytest.fail("the rescheduled deadline did not fire")
        assert scope.cancelled_caught
    elif case == "infinite":
        with lib.CancelScope(deadline=float("inf")) as scope:
            loop.advance(1e9)
            await yield_loop()
        assert not scope.cancel_called
    else:
        with pytest.raises(ValueError):
            lib.CancelScope(deadline=float("nan"))
        with lib.CancelScope(deadline=loop.time() + 10) as scope:
            with pytest.raises(ValueError):
                scope.deadline = float("nan")
            loop.advance(10)
            await yield_loop()
            pytest.fail("a rejected NaN deadline replaced the valid one")
        assert scope.cancelled_caught
    await assert_no_pending_cancellation()


@pytest.mark.fake_clock
async def test_row12_no_stale_timer_after_exit(lib, yield_loop):
    loop = fake_loop()
    with lib.move_on_at(loop.time() + 10) as scope:
        loop.advance(9.99)  # exit just before the deadline
        await lib.checkpoint()
    loop.advance(1)  # the loop runs past the old deadline
    await yield_loop()
    assert not scope.cancel_called
    assert not scope.cancelled_caught
    await assert_no_pending_cancellation()


async def test_row13_fail_after_converts_only_its_own_timeout(lib):
    # The outer scope's deadline fires: the inner fail_after must not turn it into TimeoutError.
    with lib.move_on_after(0) as outer:
        with lib.fail_after(1) as inner:
            await lib.sleep(NEVER)
    assert outer.cancelled_caught
    assert not inner.cancelled_caught

    # The inner deadline fires: TimeoutError, caused by the cancellation, through the outer.
    with pytest.raises(TimeoutError) as info:
        with lib.move_on_after(NEVER) as outer:
            with lib.fail_after(0):
                await lib.sleep(NEVER)
    assert not outer.cancelled_caught
    assert isinstance(info.value.__cause__ or info.value.__context__, asyncio.CancelledError)
    await assert_no_pending_cancellation()


# --- rows 14-17: task groups ----------------------------------------------------------------------


async def test_row14_child_and_body_errors_form_one_group(lib):
    async def failing(exc_type):
        raise exc_type

    caught = []
    try:
        async with lib.create_task_group() as tg:
            tg.start_soon(failing, KeyError)
            tg.start_soon(failing, LookupError)
            await asyncio.sleep(0)  # both children raise before the body resumes
            raise ZeroDivisionError
    except* ZeroDivisionError as group:
        caught.append(("body", group.message, leaf_types(group)))
    except* LookupError as group:  # KeyError is a LookupError
        caught.append(("children", group.message, sorted(t.__name__ for t in leaf_types(group))))
    assert caught == [
        ("body", GROUP_MESSAGE, [ZeroDivisionError]),
        ("children", GROUP_MESSAGE, ["KeyError", "LookupError"]),
    ]


@pytest.mark.parametrize("exc_type", [KeyboardInterrupt, SystemExit])
async def test_row14_body_base_exception_is_wrapped_in_base_exception_group(lib, exc_type):
    async def child():
        await asyncio.sleep(0)

    with pytest.raises(BaseExceptionGroup) as info:
        async with lib.create_task_group() as tg:
            tg.start_soon(child)
            raise exc_type
    assert not isinstance(info.value, ExceptionGroup)
    assert info.value.message == GROUP_MESSAGE
    assert leaf_types(info.value) == [exc_type]


@pytest.mark.parametrize("lib_name", ["toolcase_rs", "anyio"])
def test_row14_child_system_exit_is_not_swallowed(make_lib, lib_name):
    """A child's SystemExit escapes asyncio's loop (``Task.__step`` re-raises it). Whatever the
    group makes of it, it must reach the caller of the loop and the loop must not hang. Runs
    in its own thread and loop so the escape cannot disturb the test runner."""
    lib = make_lib(lib_name)
    escaped = []

    async def main():
        async def child():
            await asyncio.sleep(0)
            raise SystemExit(3)

        async with lib.create_task_group() as tg:
            tg.start_soon(child)
            await park()

    def target():
        try:
            asyncio.run(main())
        except BaseException as exc:  # the point is to see what escapes
            escaped.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the loop hung after a child raised SystemExit"
    assert len(escaped) == 1
    (exc,) = escaped
    if isinstance(exc, BaseExceptionGroup):
        assert SystemExit in leaf_types(exc)
    else:
        assert isinstance(exc, SystemExit)


async def test_row15_outer_deadline_while_exit_waits_anyio695(lib):
    log = []

    async def child(i):
        try:
            await park()
        finally:
            with lib.CancelScope(shield=True):
                for _ in range(3):
                    await lib.checkpoint()
            log.append(f"child {i} cleaned up")

    with pytest.raises(TimeoutError):
        try:
            with lib.fail_after(0.02):
                async with lib.create_task_group() as tg:
                    tg.start_soon(child, 0)
                    tg.start_soon(child, 1)
                # the body is done at once: the deadline fires while __aexit__ waits
        finally:
            log.append("outer scope exited")
    assert sorted(log[:2]) == ["child 0 cleaned up", "child 1 cleaned up"]
    assert log[2:] == ["outer scope exited"]
    await assert_no_pending_cancellation()


@pytest.mark.parametrize("method", ["start_soon", "create_task"])
async def test_row16_spawn_into_closed_group_closes_coroutine(
    lib, method, assert_closed_without_warning
):
    async with lib.create_task_group() as tg:
        pass
    created = []

    async def child():
        pass

    def make():
        created.append(child())
        return created[-1]

    with pytest.raises(RuntimeError):
        if method == "start_soon":
            tg.start_soon(make)
        else:
            tg.create_task(make())
    assert_closed_without_warning(created)


@pytest.mark.parametrize(
    "case", ["started_twice", "no_started", "error_before_started", "caller_cancelled"]
)
async def test_row17_start_edge_cases_anyio685_anyio710(lib, case):
    log = []
    release_sibling = asyncio.Event()
    child_waiting = asyncio.Event()

    async def sibling():
        await release_sibling.wait()
        log.append("sibling finished")

    async def child(*, task_status):
        if case == "started_twice":
            task_status.started("first")
            try:
                task_status.started("second")
            except RuntimeError:
                log.append("second started() refused")
        elif case == "error_before_started":
            await asyncio.sleep(0)
            raise KeyError("before started")
        elif case == "caller_cancelled":
            child_waiting.set()
            try:
                await park()
            except asyncio.CancelledError:
                log.append("child cancelled")
                raise

    async def cancel_caller(scope):
        await child_waiting.wait()
        scope.cancel()

    async with lib.create_task_group() as tg:
        tg.start_soon(sibling)
        if case == "started_twice":
            assert await tg.start(child) == "first"
        elif case == "no_started":
            with pytest.raises(RuntimeError, match=r"without calling task_status\.started\(\)"):
                await tg.start(child)
        elif case == "error_before_started":
            with pytest.raises(KeyError):
                await tg.start(child)
        else:
            with lib.CancelScope() as caller_scope:
                tg.start_soon(cancel_caller, caller_scope)
                await tg.start(child)
                pytest.fail("the caller of start() was not cancelled")
            assert caller_scope.cancelled_caught
            assert log == ["child cancelled"]  # the child was waited for before start() left
        assert not tg.cancel_scope.cancel_called  # the group survives
        release_sibling.set()
    expected = {
        "started_twice": ["second started() refused"],
        "caller_cancelled": ["child cancelled"],
    }.get(case, [])
    assert log == [*expected, "sibling finished"]


# --- rows 18-19: eager start, handles -------------------------------------------------------------

EAGER_MODES = [
    ("eager_task_factory", "toolcase_rs"),
    ("eager_task_factory", "anyio"),
    ("eager=True", "toolcase_rs"),
]


@contextlib.contextmanager
def eager_task_factory():
    if sys.version_info < (3, 12):
        pytest.skip("asyncio.eager_task_factory needs Python 3.12+ (this is 3.11)")
    loop = asyncio.get_running_loop()
    previous = loop.get_task_factory()
    loop.set_task_factory(asyncio.eager_task_factory)
    try:
        yield
    finally:
        loop.set_task_factory(previous)


EAGER_IDS = [f"{mode}-{lib_name}" for mode, lib_name in EAGER_MODES]


@pytest.mark.parametrize(("mode", "lib_name"), EAGER_MODES, ids=EAGER_IDS)
@pytest.mark.parametrize("scenario", ["raises_at_once", "cancels_group", "failing_grandchild"])
async def test_row18_eager_start_does_not_hang_gh128550_gh155418_anyio822_anyio853(
    make_lib, mode, lib_name, scenario
):
    lib = make_lib(lib_name)
    if mode == "eager=True":

        def make_group():
            return lib.module.TaskGroup(eager=True)

        context = contextlib.nullcontext()
    else:
        make_group = lib.create_task_group
        context = eager_task_factory()

    async def raises_at_once():
        raise ValueError("at once")

    async def cancels_group(tg):
        tg.cancel_scope.cancel()
        await lib.checkpoint()
        pytest.fail("the group's cancellation did not reach the eager child")

    async def spawns_failing_grandchild(tg):
        tg.start_soon(raises_at_once)
        await park()

    body_log = []
    with context:
        try:
            async with make_group() as tg:
                if scenario == "raises_at_once":
                    tg.start_soon(raises_at_once)
                elif scenario == "cancels_group":
                    tg.start_soon(cancels_group, tg)
                else:
                    tg.start_soon(spawns_failing_grandchild, tg)
                try:
                    await lib.sleep(NEVER)
                except asyncio.CancelledError:
                    body_log.append("body cancelled")
                    raise
        except* ValueError as group:
            body_log.append(leaf_types(group))
    if scenario == "cancels_group":
        assert body_log == ["body cancelled"]
        assert tg.cancel_scope.cancelled_caught
    else:
        assert body_log == ["body cancelled", [ValueError]]
    await assert_no_pending_cancellation()


@pytest.mark.parametrize("outcome", ["value", "error", "cancelled"])
async def test_row19_task_handle_await_and_state_transitions(tc, outcome):
    proceed = asyncio.Event()
    states = []

    async def child():
        await proceed.wait()
        if outcome == "error":
            raise KeyError("child")
        return "value"

    sibling_done = []

    async def sibling():
        for _ in range(3):
            await asyncio.sleep(0)
        sibling_done.append(True)

    with contextlib.suppress(ExceptionGroup):
        async with tc.TaskGroup() as tg:
            handle = tg.start_soon(child)
            tg.start_soon(sibling)
            states.append(handle.state)
            await asyncio.sleep(0)
            states.append(handle.state)
            if outcome == "cancelled":
                assert handle.cancel() is True
            else:
                proceed.set()
            with tc.CancelScope(shield=True):  # a failing child cancels the body
                await handle.wait()
            states.append(handle.state)
    final = {
        "value": tc.TaskState.COMPLETED,
        "error": tc.TaskState.FAILED,
        "cancelled": tc.TaskState.CANCELLED,
    }[outcome]
    assert states == [tc.TaskState.PENDING, tc.TaskState.RUNNING, final]
    if outcome == "value":
        assert await handle == "value"
    elif outcome == "error":
        with pytest.raises(KeyError):
            await handle
    else:
        with pytest.raises(tc.TaskCancelled):
            await handle
        # handle.cancel() cancelled only that child: no group error, the sibling finished
        assert sibling_done == [True]
        assert not tg.cancel_scope.cancel_called


# --- rows 28, 30: context and foreign task implementations ----------------------------------------

CONTEXT_MODES = [("toolcase_rs", False), ("anyio", False), ("toolcase_rs", True)]


@pytest.mark.parametrize(
    ("lib_name", "eager"), CONTEXT_MODES, ids=["toolcase_rs", "anyio", "toolcase_rs-eager"]
)
async def test_row28_contextvars_copied_into_children_and_not_leaked_back(
    make_lib, lib_name, eager
):
    lib = make_lib(lib_name)
    var = contextvars.ContextVar("row28", default="unset")
    seen = []

    async def child(label):
        seen.append((label, var.get()))
        var.set(f"{label} changed it")
        await asyncio.sleep(0)
        seen.append((label, var.get()))

    var.set("parent")
    group = lib.module.TaskGroup(eager=True) if eager else lib.create_task_group()
    async with group as tg:
        tg.start_soon(child, "a")
        assert var.get() == "parent"
        tg.start_soon(child, "b")
    assert var.get() == "parent"
    assert sorted(seen) == [
        ("a", "a changed it"),
        ("a", "parent"),
        ("b", "b changed it"),
        ("b", "parent"),
    ]


async def test_row30_custom_task_class_from_task_factory(lib, task_factory, counting_task_class):
    """A task factory building a Task subclass (C-based or the pure-Python implementation, with
    different private state); run on uvloop too by the conftest. Everything must still work and
    every cancel() a scope issues is balanced and bounded."""

    async def failing():
        await asyncio.sleep(0)
        raise KeyError

    async def scenario():
        results = {}
        # a failing child cancels its sibling
        with contextlib.suppress(ExceptionGroup):
            async with lib.create_task_group() as tg:
                tg.start_soon(park)
                tg.start_soon(failing)
        results["group cancelled"] = tg.cancel_scope.cancel_called
        # level-triggered re-delivery
        redeliveries = 0
        with lib.CancelScope() as scope:
            scope.cancel()
            for _ in range(3):
                try:
                    await lib.sleep(NEVER)
                except asyncio.CancelledError:
                    redeliveries += 1
        results["redeliveries"] = redeliveries
        # a deadline
        with lib.move_on_after(0.01) as timed:
            await lib.sleep(NEVER)
        results["deadline caught"] = timed.cancelled_caught
        results["cancelling"] = asyncio.current_task().cancelling()
        return results

    with task_factory(counting_task_class) as created:
        host = asyncio.create_task(scenario())
        results = await host
    assert results == {
        "group cancelled": True,
        "redeliveries": 3,
        "deadline caught": True,
        "cancelling": 0,
    }
    assert len(created) >= 3  # the host and both children came from the factory
    assert all(type(task) is counting_task_class for task in created)
    assert host.cancel_calls == host.uncancel_calls  # every scope-issued cancel was balanced
    assert host.cancel_calls <= 10  # bounded retries
