"""ProcessPool, run_in_process and to_process.run_sync: results, errors, cancellation that
kills, dying workers, pickling errors, several loops. Functions run in worker processes are
defined at module level (they travel by pickle; the workers import this module)."""

from __future__ import annotations

import asyncio
import os
import pickle
import threading
import time
from concurrent.futures.process import BrokenProcessPool

import pytest


def _running(pid: int) -> bool:
    """True while `pid` runs (a killed child that is not reaped yet is a zombie: not running)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def square(x: int) -> int:
    return x * x


def pid_of_worker() -> int:
    return os.getpid()


def fail(message: str) -> None:
    raise ValueError(message)


def die(code: int) -> None:
    os._exit(code)


def sleep_then(seconds: float, value: object) -> object:
    time.sleep(seconds)
    return value


def unpicklable_result() -> object:
    return threading.Lock()


def prints_and_returns() -> str:
    print("noise on stdout must not break the protocol")
    return "fine"


async def test_run_returns_results_from_another_process(tc):
    async with tc.ProcessPool(2) as pool:
        assert await pool.run(square, 7) == 49
        assert await pool.run(pid_of_worker) != os.getpid()
        assert await asyncio.gather(*(pool.run(square, i) for i in range(8))) == [
            i * i for i in range(8)
        ]


async def test_keyword_arguments_and_prints(tc):
    async with tc.ProcessPool(1) as pool:
        assert await pool.run(sleep_then, 0, value="kw") == "kw"
        assert await pool.run(prints_and_returns) == "fine"


async def test_worker_exceptions_keep_their_type_and_remote_traceback(tc):
    async with tc.ProcessPool(1) as pool:
        with pytest.raises(ValueError, match="remote failure") as info:
            await pool.run(fail, "remote failure")
    notes = "".join(getattr(info.value, "__notes__", []))
    assert "Traceback in the worker process" in notes
    assert "fail" in notes


async def test_cancel_kills_the_worker_and_the_pool_keeps_working(tc):
    async with tc.ProcessPool(1) as pool:
        first = await pool.run(pid_of_worker)
        t0 = time.monotonic()
        with tc.move_on_after(0.1) as scope:
            await pool.run(sleep_then, 30, None)
        assert scope.cancelled_caught
        assert time.monotonic() - t0 < 5
        second = await pool.run(pid_of_worker)
        assert second != first, "the cancelled job's worker should have been replaced"
        assert not _running(first), "the cancelled job's worker process is still running"


async def test_dying_worker_fails_its_job_and_is_replaced(tc):
    async with tc.ProcessPool(1) as pool:
        with pytest.raises(BrokenProcessPool, match="died"):
            await pool.run(die, 7)
        assert await pool.run(square, 3) == 9


async def test_unpicklable_function_is_a_clear_error(tc):
    async with tc.ProcessPool(1) as pool:
        with pytest.raises(pickle.PicklingError, match="function"):
            await pool.run(lambda: 1)
        with pytest.raises(pickle.PicklingError, match="argument"):
            await pool.run(square, threading.Lock())


async def test_unpicklable_result_is_a_clear_error(tc):
    async with tc.ProcessPool(1) as pool:
        with pytest.raises(pickle.PicklingError, match="could not be sent back"):
            await pool.run(unpicklable_result)
        assert await pool.run(square, 2) == 4


async def test_statistics_count_idle_and_busy_workers(tc):
    async with tc.ProcessPool(2) as pool:
        job = asyncio.ensure_future(pool.run(sleep_then, 0.3, None))
        await asyncio.sleep(0.1)
        busy = pool.statistics()
        await job
        idle = pool.statistics()
    assert (busy.max_workers, busy.busy) == (2, 1)
    assert (idle.busy, idle.idle, idle.queued) == (0, 1, 0)


async def test_shut_down_pool_refuses_jobs(tc):
    pool = tc.ProcessPool(1)
    pool.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        await pool.run(square, 1)


def test_one_pool_serves_several_event_loops(tc):
    pool = tc.ProcessPool(2)
    results: list[object] = []

    def in_thread(i: int) -> None:
        results.append(asyncio.run(pool.run(square, i)))

    threads = [threading.Thread(target=in_thread, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    pool.shutdown()
    assert sorted(results) == [0, 1, 4, 9]


@pytest.mark.parametrize("bad", [0, -2])
def test_bad_sizes(tc, bad):
    with pytest.raises(ValueError, match="max_workers"):
        tc.ProcessPool(bad)


def test_bad_mp_context(tc):
    with pytest.raises(ValueError, match="mp_context"):
        tc.ProcessPool(1, mp_context="threads")


async def test_run_in_process_and_to_process(tc, tlib):
    assert await tc.run_in_process(square, 5) == 25
    assert await tlib_to_process(tlib).run_sync(square, 6) == 36


def tlib_to_process(tlib):  # AnyIO's to_process next to ours
    if tlib.name == "anyio":
        import anyio.to_process

        if "uvloop" in type(asyncio.get_running_loop()).__module__:
            # An idle AnyIO worker process can keep uvloop's loop.close() waiting forever.
            pytest.skip("AnyIO's to_process on uvloop can hang the loop's close()")

        return anyio.to_process
    import toolcase_rs

    return toolcase_rs.to_process


async def test_to_process_not_cancellable_waits_for_the_job(tlib):
    to_process = tlib_to_process(tlib)
    await to_process.run_sync(square, 1)  # a warm worker: AnyIO shields only the job itself
    t0 = time.monotonic()
    with tlib.move_on_after(0.05):
        value = await to_process.run_sync(sleep_then, 0.3, "finished")
        assert value == "finished"
    assert time.monotonic() - t0 >= 0.25


async def test_to_process_cancellable_raises_at_once(tlib):
    to_process = tlib_to_process(tlib)
    t0 = time.monotonic()
    with tlib.move_on_after(0.1) as scope:
        await to_process.run_sync(sleep_then, 30, None, cancellable=True)
    assert scope.cancelled_caught
    assert time.monotonic() - t0 < 10


def _run_script(path, text: str):
    import subprocess
    import sys

    path.write_text(text)
    return subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=60)


def test_script_without_a_main_guard_does_not_recurse(tmp_path):
    """The worker imports the main script; a script without a guard tries to start a pool
    there: that attempt fails with a message about the guard (on the worker's stderr), and
    nothing recurses."""
    proc = _run_script(
        tmp_path / "unguarded.py",
        "import asyncio, toolcase_rs as tc\n"
        "def square(x):\n"
        "    return x * x\n"
        "try:\n"
        "    print(asyncio.run(tc.run_in_process(square, 3)))\n"
        "except RuntimeError as exc:\n"
        "    print('RuntimeError:', exc)\n",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "9"
    assert 'if __name__ == "__main__":' in proc.stderr


def test_script_functions_run_in_workers(tmp_path):
    proc = _run_script(
        tmp_path / "guarded.py",
        "import asyncio, toolcase_rs as tc\n"
        "def square(x):\n"
        "    return x * x\n"
        "if __name__ == '__main__':\n"
        "    print(asyncio.run(tc.run_in_process(square, 3)))\n",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "9"
    assert proc.stderr == ""
