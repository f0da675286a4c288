"""Regression: after ``os.fork()`` the child's primitives still serve the parent's threads.

Repro: /work/shared/repros/2026-12-02/fork_child_loses_permits_to_dead_thread_waiters.py.
Plain threads of the parent wait on a Semaphore and a Queue when the process forks. Those
threads do not exist in the child, but the old build keeps them queued there: the child's
``release()`` / ``put_nowait()`` is granted to a nonexistent thread, so the child can never
take the permit or the item back. ``threading.Semaphore`` and ``queue.Queue`` keep working in
the same situation (the control).
"""

from __future__ import annotations

import json
import os
import queue
import select
import signal
import threading
import time
import warnings

import pytest

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

HANG = 10.0


def _wait_until(predicate, what: str) -> None:
    deadline = time.monotonic() + HANG
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"setup: timed out waiting for {what}")
        time.sleep(0.001)


def _in_child(fn) -> dict:
    """Run ``fn()`` in a forked child; returns the dict it returned (sent back as JSON). The
    child always leaves through ``os._exit``, whatever happens in it."""
    r, w = os.pipe()
    with warnings.catch_warnings():
        # 3.12+: "This process is multi-threaded, use of fork() may lead to deadlocks".
        warnings.filterwarnings("ignore", category=DeprecationWarning, message=r".*fork")
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(r)
            try:
                payload = {"result": fn()}
            except BaseException as exc:
                payload = {"error": f"{type(exc).__name__}: {exc}"}
            os.write(w, json.dumps(payload).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    try:
        ready, _, _ = select.select([r], [], [], HANG)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung")
        chunks = []
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
    finally:
        os.close(r)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, f"child exit status {status}"
    payload = json.loads(b"".join(chunks).decode())
    assert "error" not in payload, payload["error"]
    return payload["result"]


# Pins fork_child_loses_permits_to_dead_thread_waiters.py (toolcase_rs Semaphore and Queue).
def test_forked_child_gets_back_what_it_releases_despite_parent_thread_waiters(tc):
    sem = tc.Semaphore(0)
    q = tc.Queue()
    sem_waiter = threading.Thread(target=sem.acquire_blocking, kwargs={"timeout": HANG})
    q_waiter = threading.Thread(target=q.get_blocking, kwargs={"timeout": HANG})
    sem_waiter.start()
    q_waiter.start()
    try:
        _wait_until(lambda: sem.statistics().tasks_waiting == 1, "the Semaphore waiter")
        _wait_until(lambda: q.statistics().tasks_waiting_receive == 1, "the Queue waiter")

        def child() -> dict:
            sem.release()
            got_sem = sem.acquire_blocking(timeout=0.5)
            q.put_nowait("x")
            try:
                got_q = q.get_nowait()
            except tc.WouldBlock as exc:
                got_q = type(exc).__name__
            return {"sem_reacquired": got_sem, "sem_value": sem.value, "queue_item": got_q}

        result = _in_child(child)
    finally:
        sem.release()  # the parent's own waiters are real: let them finish
        q.put_nowait("for the parent")
        sem_waiter.join(HANG)
        q_waiter.join(HANG)
    assert result == {"sem_reacquired": True, "sem_value": 0, "queue_item": "x"}


# Control for fork_child_loses_permits_to_dead_thread_waiters.py: the stdlib primitives.
def test_forked_child_stdlib_control():
    """threading.Semaphore and queue.Queue in the same situation (passes on the old build too)."""
    sem = threading.Semaphore(0)
    q: queue.Queue[str] = queue.Queue()
    waiting = threading.Barrier(3)

    def sem_wait() -> None:
        waiting.wait(HANG)
        sem.acquire(timeout=HANG)

    def q_wait() -> None:
        waiting.wait(HANG)
        q.get(timeout=HANG)

    threads = [threading.Thread(target=sem_wait), threading.Thread(target=q_wait)]
    for t in threads:
        t.start()
    try:
        waiting.wait(HANG)

        def child() -> dict:
            sem.release()
            got_sem = sem.acquire(timeout=0.5)
            q.put("x")
            return {"sem_reacquired": got_sem, "queue_item": q.get(timeout=0.5)}

        result = _in_child(child)
    finally:
        sem.release()
        q.put("for the parent")
        for t in threads:
            t.join(HANG)
    assert result == {"sem_reacquired": True, "queue_item": "x"}
