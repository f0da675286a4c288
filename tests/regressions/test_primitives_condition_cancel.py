"""Regressions: ``Condition.wait()`` cancelled at the wrong moment.

Repros (/work/shared/repros/2026-12-02/):

* condition_native_cancel_masks_cancellederror.py: a native ``task.cancel()`` while ``wait()``
  re-acquires the lock after a notify interrupts the (shielded) re-acquire, so the task leaves
  ``wait()`` without the lock and ``async with cond:`` raises ``RuntimeError("...not holding this
  lock")``, which hides the ``CancelledError``. asyncio.Condition re-raises ``CancelledError``
  with the lock held (the control; AnyIO 4.16 has the same defect, so it is no oracle here).
* condition_xthread_notify_vs_cancel_valueerror.py: a Condition shared by two loops in two
  threads; a waiter cancelled after ``notify()`` (in the other thread) picked it but before
  ``notify()`` woke it raises ``ValueError`` from ``wait()`` and the notification is lost.

The cross-thread tests run in a subprocess (``timeout=``): a regression there can deadlock two
threads, and a deadlocked interpreter must not take the test session with it.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap

import pytest

PATIENCE = 50


async def _until(predicate, what: str) -> None:
    for _ in range(PATIENCE):
        if predicate():
            return
        await asyncio.sleep(0)
    assert predicate(), f"setup: {what}"


# Pins condition_native_cancel_masks_cancellederror.py (asyncio.Condition: the control).
@pytest.mark.parametrize("kind", ["toolcase_rs", "asyncio"])
async def test_native_cancel_during_reacquire_raises_cancelled_and_frees_the_lock(
    kind, tc, yield_loop
):
    """The waiter sees CancelledError, holding the lock (docs/sync-api.md: "a cancelled wait()
    re-acquires the lock before raising"), not RuntimeError; the lock is free afterwards."""
    cond = tc.Condition() if kind == "toolcase_rs" else asyncio.Condition()
    outcome: dict[str, object] = {}
    main_released = False

    async def waiter() -> None:
        try:
            async with cond:
                try:
                    await cond.wait()
                except asyncio.CancelledError:
                    # Only the waiter can hold it now if the test task has let go.
                    outcome["held_when_cancelled"] = cond.locked() and main_released
                    raise
            outcome["exit"] = "normal"
        except BaseException as exc:
            outcome["exit"] = type(exc).__name__
            outcome["message"] = str(exc)
            raise

    task = asyncio.create_task(waiter())
    if kind == "toolcase_rs":
        await _until(lambda: cond.statistics().tasks_waiting == 1, "the waiter should wait")
    else:
        await yield_loop()
    async with cond:
        cond.notify()
        if kind == "toolcase_rs":
            await _until(
                lambda: cond.statistics().lock_statistics.tasks_waiting == 1,
                "the notified waiter should wait for the lock the test holds",
            )
        else:
            await yield_loop()
        task.cancel()  # a native cancel while it re-acquires
        await yield_loop()
        main_released = True
    with pytest.raises(asyncio.CancelledError):
        await task
    await yield_loop()
    assert outcome["exit"] == "CancelledError", outcome
    assert outcome.get("held_when_cancelled") is True, outcome
    assert not cond.locked()


# ---------------------------------------------------------------------------------------------
# Cross-thread: notify() in loop B versus a cancel of the picked waiter in loop A.

# Systematic interleaving: thread B's notify() is paused at its k-th C call (a profile hook,
# k = 1, 2, ... until notify() makes fewer than k calls); while it is paused, loop A cancels the
# waiter that notify() is about to wake (or has just picked), and B resumes once A's waiter has
# settled (it waits for the lock B holds). Two waiters wait, so a notification passed on by a
# cancelled waiter is visible. For every k: no exception but cancellation leaves wait(), and
# exactly one waiter was woken by the one notify() (none lost, none doubled).
INTERLEAVING_SCRIPT = r"""
import asyncio, json, sys, threading, time
import toolcase_rs as tc

if sys.argv[1] == "uvloop":
    import uvloop
    new_loop = uvloop.new_event_loop
else:
    new_loop = asyncio.new_event_loop
HANG = 10.0
SETTLE = 0.25


def poll(predicate, bound):
    deadline = time.monotonic() + bound
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.0005)
    return True


def scenario(k):
    cond = tc.Condition()
    a_ready, paused, resume, b_done = (threading.Event() for _ in range(4))
    calls = [0]
    scopes, tasks, where = {}, {}, {}
    out = {"k": k, "paused": False, "woken": [], "errors": []}

    def hook(frame, event, arg):
        if event == "c_call":
            calls[0] += 1
            if calls[0] == k:
                out["paused"] = True
                paused.set()
                resume.wait(HANG)

    async def waiter(name):
        with tc.CancelScope() as scope:
            scopes[name] = scope
            async with cond:
                await cond.wait()
                out["woken"].append(name)

    async def main_a():
        where["loop"] = asyncio.get_running_loop()
        for name in ("first", "second"):
            tasks[name] = asyncio.create_task(waiter(name))
            for _ in range(100):
                if cond.statistics().tasks_waiting == len(tasks):
                    break
                await asyncio.sleep(0)
        a_ready.set()
        first, second = tasks["first"], tasks["second"]
        await asyncio.wait([first], timeout=HANG)
        # Passed on to the second waiter (it leaves the wait queue), or not (it stays).
        deadline = time.monotonic() + HANG
        while not (second.done() or cond.statistics().tasks_waiting == 1):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.0005)
        out["woken_by_notify"] = list(out["woken"])
        if not second.done():
            async with cond:
                cond.notify_all()
        await asyncio.wait([second], timeout=HANG)
        for name, task in tasks.items():
            if not task.done():
                out["errors"].append(f"{name}: still waiting")
            elif task.cancelled():
                out["errors"].append(f"{name}: the task was cancelled (scope did not catch it)")
            elif task.exception() is not None:
                exc = task.exception()
                out["errors"].append(f"{name}: {type(exc).__name__}: {exc}")

    async def main_b():
        async with cond:
            sys.setprofile(hook)
            try:
                cond.notify()
            finally:
                sys.setprofile(None)
        b_done.set()

    def run(main):
        with asyncio.Runner(loop_factory=new_loop) as runner:
            runner.run(main())

    ta = threading.Thread(target=run, args=(main_a,), daemon=True)
    ta.start()
    if not a_ready.wait(HANG):
        out["errors"].append("setup: the waiters never waited")
    tb = threading.Thread(target=run, args=(main_b,), daemon=True)
    tb.start()
    poll(lambda: paused.is_set() or b_done.is_set(), HANG)
    if paused.is_set():
        first = tasks["first"]
        where["loop"].call_soon_threadsafe(scopes["first"].cancel)
        # Settled: it waits for the lock B holds (or it is done). If it cannot get that far
        # (B is paused inside a critical section A needs), B resumes after SETTLE anyway.
        poll(lambda: first.done() or cond.statistics().lock_statistics.tasks_waiting >= 1, SETTLE)
    resume.set()
    ta.join(HANG)
    tb.join(HANG)
    out["alive"] = [t.is_alive() for t in (ta, tb)]
    return out


results = []
for k in range(1, 200):
    out = scenario(k)
    results.append(out)
    if not out["paused"] or any(out["alive"]):
        break
print(json.dumps(results))
"""


def _loops() -> list[str]:
    try:
        import uvloop  # noqa: F401
    except ImportError:  # pragma: no cover
        return ["asyncio"]
    return ["asyncio", "uvloop"]


def _run_script(tmp_path, source: str, *args: str, timeout: float) -> str:
    script = tmp_path / "scenario.py"
    script.write_text(textwrap.dedent(source))
    proc = subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


# Pins condition_xthread_notify_vs_cancel_valueerror.py (deterministic interleavings).
@pytest.mark.timeout(120)
@pytest.mark.parametrize("loop", _loops())
def test_xthread_cancel_at_any_point_of_notify_raises_nothing_and_loses_nothing(tmp_path, loop):
    """Every interleaving of the cancel with notify()'s C calls (INTERLEAVING_SCRIPT). The old build
    raises ValueError when notify() is paused between picking the waiter and waking it, and the
    notification is lost."""
    results = json.loads(_run_script(tmp_path, INTERLEAVING_SCRIPT, loop, timeout=100))
    assert results, "no scenario ran"
    stuck = [r for r in results if any(r["alive"])]
    assert not stuck, f"threads still running (deadlock?): {stuck}"
    assert results[0]["paused"], "the profile hook never paused notify()"
    bad = [
        {"k": r["k"], "errors": r["errors"], "woken_by_notify": r.get("woken_by_notify")}
        for r in results
        if r["errors"] or len(r.get("woken_by_notify", [])) != 1
    ]
    assert not bad, f"pausing notify() at its k-th C call: {bad}"


# The repro's shape: 8 waiters in loop A time out (move_on_after) while 2 notifiers in loop B
# notify(2) in a loop, 1.5 s, sys.setswitchinterval(1e-5). Unaided, the old build hits the race
# in about one run in ten; the notifiers therefore yield the GIL (time.sleep(0)) at every C call
# made inside notify(), which widens the race window without choosing an interleaving.
STRESS_SCRIPT = r"""
import asyncio, json, random, sys, threading, time
import toolcase_rs as tc

if sys.argv[1] == "uvloop":
    import uvloop
    new_loop = uvloop.new_event_loop
else:
    new_loop = asyncio.new_event_loop
DURATION = 1.5
cond = tc.Condition()
stop = threading.Event()
errors = []
counts = {"notify": 0, "woken": 0, "timed_out": 0}


def yield_gil(frame, event, arg):
    if event == "c_call":
        time.sleep(0)


async def waiter(rng):
    while not stop.is_set():
        try:
            with tc.move_on_after(rng.choice([0.0002, 0.0005, 0.001])) as scope:
                async with cond:
                    await cond.wait()
                    counts["woken"] += 1
            if scope.cancelled_caught:
                counts["timed_out"] += 1
        except Exception as exc:
            errors.append(f"waiter: {type(exc).__name__}: {exc}")


async def notifier():
    while not stop.is_set():
        try:
            async with cond:
                sys.setprofile(yield_gil)
                try:
                    cond.notify(2)
                finally:
                    sys.setprofile(None)
                counts["notify"] += 1
        except Exception as exc:
            errors.append(f"notifier: {type(exc).__name__}: {exc}")
        await asyncio.sleep(0)


def run(make, n):
    async def main():
        async with tc.TaskGroup() as tg:
            for i in range(n):
                tg.start_soon(*make(i))

    try:
        with asyncio.Runner(loop_factory=new_loop) as runner:
            runner.run(main())
    except BaseException as exc:
        errors.append(f"loop: {type(exc).__name__}: {exc}")


previous = sys.getswitchinterval()
sys.setswitchinterval(1e-5)
try:
    ths = [
        threading.Thread(target=run, args=(lambda i: (waiter, random.Random(i)), 8), daemon=True),
        threading.Thread(target=run, args=(lambda i: (notifier,), 2), daemon=True),
    ]
    for t in ths:
        t.start()
    time.sleep(DURATION)
    stop.set()
    for t in ths:
        t.join(10)
finally:
    sys.setswitchinterval(previous)
print(json.dumps({"errors": errors[:10], "n_errors": len(errors), "counts": counts,
                  "alive": [t.is_alive() for t in ths]}))
"""


# Pins condition_xthread_notify_vs_cancel_valueerror.py (the repro's stress shape).
@pytest.mark.timeout(60)
@pytest.mark.parametrize("loop", _loops())
def test_xthread_notify_against_timing_out_waiters_raises_nothing(tmp_path, loop):
    """No exception but cancellation ever leaves wait() or notify(), and both loops finish."""
    result = json.loads(_run_script(tmp_path, STRESS_SCRIPT, loop, timeout=45))
    assert result["alive"] == [False, False], result
    assert result["counts"]["notify"] > 0, result
    assert result["n_errors"] == 0, result
