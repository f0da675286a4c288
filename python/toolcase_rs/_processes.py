"""Worker processes: `ProcessPool`, `run_in_process` and `to_process.run_sync`.

Each worker is a fresh interpreter (`toolcase_rs._process_worker`) spawned, fed, killed and
reaped by the native `ProcessWorker`; its reply pipe is watched by the event loop of the job
it runs (`loop.add_reader`), so a job costs no thread and a pool can serve several loops.
Pickling happens here, in the caller, so an unpicklable function or argument fails at once with
a message naming it.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import pickle
import sys
import threading
import weakref
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

from ._toolcase_rs import CancelScope, CapacityLimiter, ProcessWorker

__all__ = ["ProcessPool", "ProcessPoolStatistics", "run_in_process"]

T = TypeVar("T")

_POOLS: weakref.WeakSet[ProcessPool] = weakref.WeakSet()


@dataclass(frozen=True)
class ProcessPoolStatistics:
    """Worker processes of a `ProcessPool`: idle, running a job, and jobs waiting for one."""

    max_workers: int
    idle: int
    busy: int
    queued: int


def _command() -> list[str]:
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    bootstrap = (
        f"import sys; sys.path.insert(0, {package_parent!r}); "
        "from toolcase_rs._process_worker import main; main()"
    )
    return [sys.executable, "-c", bootstrap]


def _start_facts() -> bytes:
    main = sys.modules.get("__main__")
    main_path = getattr(main, "__file__", None)
    paths = [os.path.abspath(p) if p else os.getcwd() for p in sys.path]
    return pickle.dumps({"sys_path": paths, "main_path": main_path})


def _frame_request(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bytes:
    try:
        return pickle.dumps((func, args, kwargs))
    except Exception as exc:
        # Name the part that could not be sent.
        for what, obj in (("the function", func), ("an argument", args), ("a keyword", kwargs)):
            try:
                pickle.dumps(obj)
            except Exception:
                name = getattr(func, "__qualname__", repr(func))
                raise pickle.PicklingError(
                    f"{what} of a process job ({name}) could not be pickled to send it to a "
                    f"worker process: {exc}. Functions must be defined at module level; "
                    "arguments must be picklable"
                ) from exc
        raise


def _validate_workers(max_workers: object) -> int:
    if max_workers is None:
        return os.cpu_count() or 1
    if isinstance(max_workers, bool) or not isinstance(max_workers, int):
        raise TypeError(f"max_workers must be an int >= 1, got {type(max_workers).__name__}")
    if max_workers < 1:
        raise ValueError(f"max_workers must be at least 1, got {max_workers}")
    return max_workers


class ProcessPool:
    """A pool of at most `max_workers` worker processes (default: the CPU count).

    `async with ProcessPool() as pool: await pool.run(fn, *args, **kwargs)`. `fn`, its
    arguments and its result travel by pickle. Cancelling an awaited job kills its worker
    process (the await raises at once) and starts a replacement; a worker that dies (a crash,
    `os._exit`) fails its job with `BrokenProcessPool` and is replaced. Usable from several
    event loops at once. Workers are fresh interpreters with the parent's `sys.path` (and its
    main script importable), whatever `mp_context` says.
    """

    def __init__(self, max_workers: int | None = None, *, mp_context: object = None) -> None:
        self.max_workers = _validate_workers(max_workers)
        if isinstance(mp_context, str):
            if mp_context not in ("spawn", "fork", "forkserver"):
                raise ValueError(
                    f"mp_context must be 'spawn', 'fork' or 'forkserver', got {mp_context!r}"
                )
        elif mp_context is not None and not hasattr(mp_context, "get_start_method"):
            raise TypeError(
                "mp_context must be None, a start-method name or a multiprocessing context, "
                f"got {type(mp_context).__name__}"
            )
        self.mp_context = mp_context
        self._limiter = CapacityLimiter(self.max_workers, fast_acquire=True)
        self._lock = threading.Lock()
        self._idle: list[ProcessWorker] = []
        self._busy: set[ProcessWorker] = set()
        self._dead: list[ProcessWorker] = []
        self._closed = False
        self._facts = _start_facts()
        _POOLS.add(self)

    # -- workers ---------------------------------------------------------------------------

    def _spawn(self) -> ProcessWorker:
        from . import _process_worker

        if _process_worker.bootstrapping:
            raise RuntimeError(
                "a worker process tried to start worker processes while it imported the main "
                'script: protect the script\'s entry point with `if __name__ == "__main__":` '
                "(worker processes import the main script to find the functions defined there)"
            )
        worker = ProcessWorker(_command())
        worker.send(self._facts)
        return worker

    def _checkout(self) -> ProcessWorker:
        with self._lock:
            if self._closed:
                raise RuntimeError("the process pool is shut down: no new jobs can be submitted")
            self._reap()
            while self._idle:
                worker = self._idle.pop()
                if worker.poll() is None:
                    self._busy.add(worker)
                    return worker
        worker = self._spawn()
        with self._lock:
            self._busy.add(worker)
        return worker

    def _checkin(self, worker: ProcessWorker) -> None:
        with self._lock:
            self._busy.discard(worker)
            if not self._closed:
                self._idle.append(worker)
                return
        worker.close_input()

    def _replace(self, worker: ProcessWorker) -> None:
        """`worker` was killed or died: kill it (if not dead yet) and keep the pool at strength.

        It is reaped later (on a following checkout or at shutdown), so the await that
        cancelled it raises at once instead of waiting for the process to exit.
        """
        worker.kill()
        with self._lock:
            self._busy.discard(worker)
            self._dead.append(worker)
            if self._closed:
                return
        # Start the replacement shortly after, once the cancelled caller has run: spawning
        # blocks the loop for about a millisecond.
        try:
            asyncio.get_running_loop().call_later(0.005, self._refill)
        except RuntimeError:
            self._refill()

    def _refill(self) -> None:
        with self._lock:
            if self._closed or len(self._idle) + len(self._busy) >= self.max_workers:
                return
        try:
            fresh = self._spawn()
        except (OSError, RuntimeError):
            return  # the next job spawns one (and reports the error)
        with self._lock:
            if self._closed:
                fresh.close_input()
            else:
                self._idle.append(fresh)

    def _reap(self) -> None:
        """Under the lock: forget killed workers that have exited."""
        if self._dead:
            self._dead = [w for w in self._dead if w.poll() is None]

    # -- jobs ------------------------------------------------------------------------------

    async def run(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        """Run `func(*args, **kwargs)` in a worker process and return its result."""
        if not callable(func):
            raise TypeError(f"ProcessPool.run(): func must be callable, got {type(func).__name__}")
        if self._closed:
            raise RuntimeError("the process pool is shut down: no new jobs can be submitted")
        request = _frame_request(func, args, kwargs)
        async with self._limiter:
            worker = self._checkout()
            reply = await self._exchange(worker, request)
            ok, value = pickle.loads(reply)
            if ok:
                return value
            raise value

    async def _exchange(self, worker: ProcessWorker, request: bytes) -> bytes:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        fd = worker.fileno()

        def readable() -> None:
            if future.done():
                return
            try:
                frames = worker.read_frames()
            except Exception as exc:
                future.set_exception(exc)
                return
            if frames is None:
                code = worker.wait(1.0)
                future.set_exception(
                    BrokenProcessPool(
                        f"the worker process (pid {worker.pid}) running this job died "
                        f"(exit code {code}); it has been replaced"
                    )
                )
            elif frames:
                future.set_result(frames[0])

        loop.add_reader(fd, readable)
        done = False
        try:
            try:
                worker.send(request)
            except BrokenPipeError:
                readable()  # the worker is already gone: report how it ended
                if not future.done():
                    raise
            reply = await future
            done = True
            return reply
        finally:
            loop.remove_reader(fd)
            if done:
                self._checkin(worker)
            else:
                self._replace(worker)

    def submit(self, func: Any, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        """Start `func(*args, **kwargs)` now; an `asyncio.Future` (a Task) for its result."""
        return asyncio.ensure_future(self.run(func, *args, **kwargs))

    # -- life cycle ------------------------------------------------------------------------

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting jobs; idle workers exit. `cancel_futures`: also kill workers running
        a job (their awaits raise). `wait`: block until the workers have exited."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            busy = list(self._busy)
            dead, self._dead = self._dead, []
        for worker in idle:
            worker.close_input()
        if cancel_futures:
            for worker in busy:
                worker.kill()
        if wait:
            for worker in idle + dead + (busy if cancel_futures else []):
                if worker.wait(5.0) is None:
                    worker.kill()
                    worker.wait(1.0)

    def statistics(self) -> ProcessPoolStatistics:
        """Worker processes idle and busy, and jobs waiting for a worker."""
        with self._lock:
            return ProcessPoolStatistics(
                self.max_workers,
                len(self._idle),
                len(self._busy),
                self._limiter.statistics().tasks_waiting,
            )

    async def __aenter__(self) -> ProcessPool:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        from .to_thread import run_sync

        await run_sync(self.shutdown, True)

    def __repr__(self) -> str:
        s = self.statistics()
        return f"<ProcessPool max_workers={self.max_workers} busy={s.busy} idle={s.idle}>"


_default_pool: ProcessPool | None = None
_default_lock = threading.Lock()


def default_process_pool() -> ProcessPool:
    """The lazily created pool behind `run_in_process` and `to_process.run_sync`."""
    global _default_pool
    with _default_lock:
        if _default_pool is None or _default_pool._closed:
            _default_pool = ProcessPool()
        return _default_pool


async def run_in_process(func: Any, *args: Any, **kwargs: Any) -> Any:
    """Run `func(*args, **kwargs)` in a worker process of the default pool."""
    return await default_process_pool().run(func, *args, **kwargs)


async def _to_process_run_sync(
    func: Any, *args: Any, cancellable: bool = False, limiter: CapacityLimiter | None = None
) -> Any:
    pool = default_process_pool()
    with CancelScope(shield=not cancellable):
        if limiter is None:
            return await pool.run(func, *args)
        async with limiter:
            return await pool.run(func, *args)


def _forget_after_fork() -> None:
    # The parent's workers are not this process's children: drop them without touching them.
    global _default_pool
    for pool in list(_POOLS):
        pool._idle = []
        pool._busy = set()
        pool._dead = []
        pool._lock = threading.Lock()
    _default_pool = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


def _shutdown_all() -> None:
    for pool in list(_POOLS):
        pool.shutdown(wait=True, cancel_futures=True)


atexit.register(_shutdown_all)
