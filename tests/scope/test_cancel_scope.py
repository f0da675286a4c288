"""CancelScope: cancellation delivery, nesting, shielding and the cancelling() balance.

Most tests are differential (the ``lib`` fixture): AnyIO 4.16 defines the behaviour. The
hypothesis test at the end checks random chains of nested scopes against a small model of those
rules. The exact scenarios of known bugs (cancel before enter, nesting, shields, same-iteration
native cancels, ...) are pinned in pitfalls/test_pitfalls.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

# The awaits the contract calls checkpoints: the library's own, and native suspensions.
CHECKPOINTS = {
    "lib.checkpoint": lambda lib: lib.checkpoint(),
    "lib.sleep0": lambda lib: lib.sleep(0),
    "asyncio.sleep0": lambda lib: asyncio.sleep(0),
    "event.wait": lambda lib: asyncio.Event().wait(),
}

# Waits that only a cancellation can end.
WAITS = {
    "lib.sleep": lambda lib: lib.sleep(3600),
    "asyncio.sleep": lambda lib: asyncio.sleep(3600),
    "event.wait": lambda lib: asyncio.Event().wait(),
}


async def test_new_scope_defaults(lib):
    scope = lib.CancelScope()
    assert scope.deadline == float("inf")
    assert scope.shield is False
    assert scope.cancel_called is False
    assert scope.cancelled_caught is False
    with scope:
        await lib.checkpoint()
    assert scope.cancel_called is False
    assert scope.cancelled_caught is False


async def test_constructor_keywords_are_stored(lib):
    scope = lib.CancelScope(deadline=12345.0, shield=True)
    assert scope.deadline == 12345.0
    assert scope.shield is True


@pytest.mark.parametrize("kind", list(CHECKPOINTS))
async def test_cancel_in_body_is_delivered_at_the_next_checkpoint(lib, kind):
    reached_after_cancel = False
    with lib.CancelScope() as scope:
        scope.cancel()
        reached_after_cancel = True
        await CHECKPOINTS[kind](lib)
        pytest.fail("the cancelled scope's body ran past a checkpoint")
    assert reached_after_cancel
    assert scope.cancel_called
    assert scope.cancelled_caught
    assert asyncio.current_task().cancelling() == 0


@pytest.mark.parametrize("waiter", list(WAITS))
async def test_level_triggered_redelivery(lib, waiter):
    deliveries = 0
    with lib.CancelScope() as scope:
        scope.cancel()
        for _ in range(3):
            try:
                await WAITS[waiter](lib)
            except lib.get_cancelled_exc_class():
                deliveries += 1
    assert deliveries == 3
    # The body swallowed every delivery, so the scope itself caught nothing.
    assert not scope.cancelled_caught
    assert asyncio.current_task().cancelling() == 0


async def test_both_cancelled_outermost_catches(lib):
    with lib.CancelScope() as outer:
        with lib.CancelScope() as inner:
            inner.cancel()
            outer.cancel()
            await lib.checkpoint()
        pytest.fail("the outer cancelled scope let its body continue")
    assert outer.cancelled_caught
    assert not inner.cancelled_caught


async def test_cancelled_inner_shielded_scope_catches_its_own_cancel(lib):
    after_inner = False
    with lib.CancelScope() as outer:
        with lib.CancelScope(shield=True) as inner:
            outer.cancel()
            inner.cancel()
            await lib.checkpoint()
        after_inner = True
        await lib.checkpoint()
        pytest.fail("the outer cancellation was not delivered after the shield exited")
    assert inner.cancelled_caught
    assert after_inner
    assert outer.cancelled_caught


async def test_effective_cancel_state_follows_shield_toggle(lib):
    with lib.CancelScope() as outer:
        with lib.CancelScope() as inner:
            inner.shield = True
            outer.cancel()
            await lib.checkpoint()  # shielded: survives
            inner.shield = False
            await lib.checkpoint()
            pytest.fail("unshielding did not expose the outer cancellation")
    assert not inner.cancelled_caught
    assert outer.cancelled_caught


async def test_native_cancel_passes_through_an_uncancelled_scope(lib):
    inside = asyncio.Event()
    scopes = []

    async def body():
        with lib.CancelScope() as scope:
            scopes.append(scope)
            inside.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(body())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()
    assert not scopes[0].cancel_called
    assert not scopes[0].cancelled_caught


async def test_cancel_from_another_task(lib):
    entered = asyncio.Event()
    scopes = []

    async def body():
        with lib.CancelScope() as scope:
            scopes.append(scope)
            entered.set()
            await asyncio.Event().wait()
        return scope.cancelled_caught

    task = asyncio.create_task(body())
    await entered.wait()
    scopes[0].cancel()
    assert await task is True
    assert scopes[0].cancel_called


async def test_cancel_from_another_thread(tc):
    """toolcase_rs-only: the contract says cancel() from another thread is safe."""
    loop = asyncio.get_running_loop()
    with tc.CancelScope() as scope:
        await loop.run_in_executor(None, scope.cancel)
        await tc.sleep(3600)
        pytest.fail("a cross-thread cancel() was not delivered")
    assert scope.cancel_called
    assert scope.cancelled_caught


async def test_cancel_reason_is_recorded(tc):
    """toolcase_rs-only: AnyIO has no public ``cancel_reason``."""
    with tc.CancelScope() as scope:
        assert scope.cancel_reason is None
        scope.cancel("because")
        await tc.checkpoint()
    assert scope.cancelled_caught
    assert "because" in scope.cancel_reason


async def test_async_with_is_supported(tc):
    """toolcase_rs-only: AnyIO's CancelScope is sync-only."""
    async with tc.CancelScope() as scope:
        scope.cancel()
        await tc.checkpoint()
        pytest.fail("not cancelled")
    assert scope.cancelled_caught


async def test_cancelling_balance_is_restored_for_a_task_with_pending_requests(lib):
    """A scope that catches its own cancellation restores cancelling() to its value at entry,
    even if that value was not zero."""
    task = asyncio.current_task()
    task.cancel()
    try:
        await asyncio.sleep(0)
    except asyncio.CancelledError:
        pass
    assert task.cancelling() == 1
    try:
        with lib.CancelScope() as scope:
            scope.cancel()
            await lib.checkpoint()
        assert scope.cancelled_caught
        assert task.cancelling() == 1
    finally:
        task.uncancel()
    assert task.cancelling() == 0


# ---------------------------------------------------------------------------------------------
# Random chains of nested scopes against a model of the rules above.
# ---------------------------------------------------------------------------------------------

# When a scope gets cancelled: never, before entry, first thing in its body, or from the
# innermost body (just before the innermost checkpoint).
CANCEL_POINTS = [None, "before_enter", "in_body", "from_innermost"]


@dataclass(frozen=True)
class ScopeSpec:
    shield: bool
    cancel_at: str | None


def model(specs: list[ScopeSpec]) -> tuple[list[str], list[bool]]:
    """Expected event log and ``cancelled_caught`` of each scope (outermost first).

    The program: enter scope 0, 1, ... n-1 (cancelling as specified); in each body, after the
    nested scope (if any) exits, run one checkpoint and log ``"k passed"``. A checkpoint raises
    when a scope between it and the nearest enclosing shielded scope (inclusive) is cancelled;
    the outermost cancelled scope in that stretch catches the exception, and execution resumes
    in its parent's body.
    """
    n = len(specs)
    cancelled = [False] * n
    caught = [False] * n
    log: list[str] = []

    def visible_cancelled(level: int) -> int | None:
        """The outermost cancelled scope visible from the body of ``level``."""
        catcher = None
        for k in range(level, -1, -1):
            if cancelled[k]:
                catcher = k
            if specs[k].shield:
                break
        return catcher

    for k, spec in enumerate(specs):
        if spec.cancel_at in ("before_enter", "in_body"):
            cancelled[k] = True
    for k, spec in enumerate(specs):
        if spec.cancel_at == "from_innermost":
            cancelled[k] = True

    level = n - 1
    while level >= 0:
        catcher = visible_cancelled(level)
        if catcher is None:
            log.append(f"{level} passed")
            level -= 1
        else:
            caught[catcher] = True
            level = catcher - 1
    return log, caught


scope_specs = st.lists(
    st.builds(ScopeSpec, shield=st.booleans(), cancel_at=st.sampled_from(CANCEL_POINTS)),
    min_size=1,
    max_size=4,
)


@settings(
    max_examples=50,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(specs=scope_specs)
async def test_nested_scope_chains_match_model(lib, specs):
    expected_log, expected_caught = model(specs)
    task = asyncio.current_task()
    baseline = task.cancelling()
    scopes = [lib.CancelScope(shield=spec.shield) for spec in specs]
    log: list[str] = []

    async def run(level: int) -> None:
        scope, spec = scopes[level], specs[level]
        if spec.cancel_at == "before_enter":
            scope.cancel()
        with scope:
            if spec.cancel_at == "in_body":
                scope.cancel()
            if level + 1 < len(scopes):
                await run(level + 1)
            else:
                for other, other_spec in zip(scopes, specs, strict=True):
                    if other_spec.cancel_at == "from_innermost":
                        other.cancel()
            await lib.checkpoint()
            log.append(f"{level} passed")

    await run(0)
    assert log == expected_log
    assert [scope.cancelled_caught for scope in scopes] == expected_caught
    assert task.cancelling() == baseline
    # Nothing is left pending for this task: a native timeout still behaves.
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0):
            await asyncio.sleep(3600)
