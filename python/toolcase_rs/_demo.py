"""`python -m toolcase_rs`: a few seconds of toolcase_rs side by side with asyncio and AnyIO.

What it owns: a handful of representative workloads (spawn+join children, a cancel scope's
enter/exit, an uncontended lock, `gather`, `map_async` with a limit), each written once per
implementation (asyncio, the reference, always first; AnyIO when it is installed;
toolcase_rs), the small loop that measures them, a progress bar on stderr and a table on
stdout. It is a demo that works from a plain `pip install .`: it imports nothing outside the
standard library, the package, and the optional peers. The full suite (every workload,
budgets, memory, more peers) is `benches/run.py` in a source checkout; the two share no code,
so neither breaks when the other is absent.

Which thread runs it: the caller's. Every workload runs on one event loop owned by one
`asyncio.Runner` (stdlib or uvloop) for the whole run; the progress bar is drawn between
measurements, outside the loop.

Invariants (the measuring rules of the full suite, in small):
- The first implementation of a workload is the asyncio reference; every ratio is
  `median / reference median` from the same process run, never across runs.
- Rounds are interleaved: each round runs every implementation once, in an order rotated by
  one each round, so machine noise falls on all of them alike. A warm-up round at a tenth of
  the size runs untimed first, and a full `gc.collect()` runs before every measurement.
- Each body times only its measured region (coroutines the API takes as objects are created
  before it) and awaits everything it started before it returns.
- A failing implementation becomes an ERROR row; it never aborts the run or the other rows.

Rejected alternative: running the full suite's engine from the package (as `_bench.py` once
did). It shipped some 2,000 lines of benchmarks in every wheel and ran for about two minutes;
the demo keeps the same rules for five workloads and a few seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import importlib
import importlib.metadata
import io
import os
import platform
import shutil
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

__all__ = ["main"]

LOOPS = ("asyncio", "uvloop")
MAP_LIMIT = 50

#: `body(n)`: run `n` ops and return the seconds its measured region took.
Body = Callable[[int], Awaitable[float]]


def _optional(name: str) -> tuple[Any | None, str]:
    try:
        return importlib.import_module(name), ""
    except Exception as exc:  # a broken install is "not available", not a crash
        return None, f"{type(exc).__name__}: {exc}"


def _load_toolcase() -> tuple[Any | None, str]:
    module, reason = _optional("toolcase_rs")
    if module is not None and not hasattr(module, "TaskGroup"):
        return None, "toolcase_rs has no TaskGroup (native module not built?)"
    return module, reason


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


@dataclass
class _Impl:
    label: str
    body: Body
    samples: list[float] = field(default_factory=list)  # seconds per op, one per round
    error: str = ""


@dataclass
class _Workload:
    key: str  # what `--only` matches
    title: str
    per: str  # what one op is, for "µs/child"; "" when the title says it
    n: int
    impls: list[_Impl]


# ---------------------------------------------------------------------------------------------
# Workloads


async def _suspend_once() -> None:
    await asyncio.sleep(0)


async def _value(i: int) -> int:
    return i


async def _suspend_value(i: int) -> int:
    await asyncio.sleep(0)
    return i


def _check(results: Sequence[Any], n: int) -> None:
    if list(results) != list(range(n)):
        raise RuntimeError("wrong results")


def _spawn(tc: Any, anyio: Any) -> list[_Impl]:
    async def on_asyncio(n: int) -> float:
        t0 = time.perf_counter()
        async with asyncio.TaskGroup() as tg:
            for _ in range(n):
                tg.create_task(_suspend_once())
        return time.perf_counter() - t0

    def start_soon(factory: Callable[[], Any]) -> Body:
        async def body(n: int) -> float:
            t0 = time.perf_counter()
            async with factory() as tg:
                for _ in range(n):
                    tg.start_soon(_suspend_once)
            return time.perf_counter() - t0

        return body

    impls = [_Impl("asyncio.TaskGroup", on_asyncio)]
    if anyio is not None:
        impls.append(_Impl("anyio task group", start_soon(anyio.create_task_group)))
    if tc is not None:
        impls.append(_Impl("toolcase_rs.TaskGroup", start_soon(tc.TaskGroup)))
    return impls


def _cancel_scope(tc: Any, anyio: Any) -> list[_Impl]:
    async def on_asyncio(n: int) -> float:
        timeout = asyncio.timeout
        t0 = time.perf_counter()
        for _ in range(n):
            async with timeout(None):
                pass
        return time.perf_counter() - t0

    def sync_with(factory: Callable[[], Any]) -> Body:
        async def body(n: int) -> float:
            t0 = time.perf_counter()
            for _ in range(n):
                with factory():
                    pass
            return time.perf_counter() - t0

        return body

    impls = [_Impl("async with asyncio.timeout(None)", on_asyncio)]
    if anyio is not None:
        impls.append(_Impl("with anyio.CancelScope()", sync_with(anyio.CancelScope)))
    if tc is not None:
        impls.append(_Impl("with toolcase_rs.CancelScope()", sync_with(tc.CancelScope)))
    return impls


def _lock(tc: Any, anyio: Any) -> list[_Impl]:
    def enter_exit(factory: Callable[[], Any]) -> Body:
        async def body(n: int) -> float:
            lock = factory()
            t0 = time.perf_counter()
            for _ in range(n):
                async with lock:
                    pass
            return time.perf_counter() - t0

        return body

    impls = [_Impl("asyncio.Lock", enter_exit(asyncio.Lock))]
    if anyio is not None:
        fast = enter_exit(lambda: anyio.Lock(fast_acquire=True))
        impls.append(_Impl("anyio.Lock(fast_acquire=True)", fast))
    if tc is not None:
        fast = enter_exit(lambda: tc.Lock(fast_acquire=True))
        impls.append(_Impl("toolcase_rs.Lock(fast_acquire=True)", fast))
    return impls


def _gather(tc: Any, anyio: Any) -> list[_Impl]:
    async def on_asyncio(n: int) -> float:
        coros = [_value(i) for i in range(n)]
        t0 = time.perf_counter()
        results = await asyncio.gather(*coros)
        elapsed = time.perf_counter() - t0
        _check(results, n)
        return elapsed

    async def on_anyio(n: int) -> float:
        results: list[Any] = [None] * n

        async def run(i: int) -> None:
            results[i] = await _value(i)

        t0 = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(run, i)
        elapsed = time.perf_counter() - t0
        _check(results, n)
        return elapsed

    async def on_toolcase(n: int) -> float:
        coros = [_value(i) for i in range(n)]
        t0 = time.perf_counter()
        results = await tc.gather(*coros)
        elapsed = time.perf_counter() - t0
        _check(results, n)
        return elapsed

    impls = [_Impl("asyncio.gather", on_asyncio)]
    if anyio is not None:
        impls.append(_Impl("anyio task group, results by index", on_anyio))
    if tc is not None:
        impls.append(_Impl("toolcase_rs.gather", on_toolcase))
    return impls


def _map(tc: Any, anyio: Any) -> list[_Impl]:
    async def on_asyncio(n: int) -> float:
        t0 = time.perf_counter()
        semaphore = asyncio.Semaphore(MAP_LIMIT)

        async def one(i: int) -> int:
            async with semaphore:
                return await _suspend_value(i)

        results = await asyncio.gather(*[one(i) for i in range(n)])
        elapsed = time.perf_counter() - t0
        _check(results, n)
        return elapsed

    async def on_anyio(n: int) -> float:
        t0 = time.perf_counter()
        limiter = anyio.CapacityLimiter(MAP_LIMIT)
        results: list[Any] = [None] * n

        async def one(i: int) -> None:
            async with limiter:
                results[i] = await _suspend_value(i)

        async with anyio.create_task_group() as tg:
            for i in range(n):
                tg.start_soon(one, i)
        elapsed = time.perf_counter() - t0
        _check(results, n)
        return elapsed

    async def on_toolcase(n: int) -> float:
        t0 = time.perf_counter()
        results = await tc.map_async(_suspend_value, range(n), limit=MAP_LIMIT)
        elapsed = time.perf_counter() - t0
        _check(results, n)
        return elapsed

    impls = [_Impl("asyncio.Semaphore + gather", on_asyncio)]
    if anyio is not None:
        impls.append(_Impl("anyio CapacityLimiter + task group", on_anyio))
    if tc is not None:
        impls.append(_Impl(f"toolcase_rs.map_async(limit={MAP_LIMIT})", on_toolcase))
    return impls


def _workloads(quick: bool, tc: Any, anyio: Any) -> list[_Workload]:
    children, enter_exits = (1_000, 5_000) if quick else (5_000, 20_000)
    return [
        _Workload(
            "spawn",
            f"spawn+join {children:,} children, suspend once",
            "child",
            children,
            _spawn(tc, anyio),
        ),
        _Workload(
            "cancel-scope", "CancelScope() enter/exit", "", enter_exits, _cancel_scope(tc, anyio)
        ),
        _Workload("lock", "uncontended async with Lock", "", enter_exits, _lock(tc, anyio)),
        _Workload(
            "gather",
            f"gather {children:,} trivial coroutines",
            "coroutine",
            children,
            _gather(tc, anyio),
        ),
        _Workload(
            "map",
            f"map {children // 2:,} items, at most {MAP_LIMIT} in flight (fn suspends once)",
            "item",
            children // 2,
            _map(tc, anyio),
        ),
    ]


# ---------------------------------------------------------------------------------------------
# Measuring


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


async def _round(order: Sequence[_Impl], n: int, timed: bool) -> None:
    for impl in order:
        if impl.error:
            continue
        gc.collect()
        try:
            elapsed = await impl.body(n)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # CancelledError leaking out is a failure too
            impl.error = _describe(exc)
            continue
        if timed:
            impl.samples.append(elapsed / n)


def _loop_factory(loop: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if loop == "asyncio":
        return None
    if loop == "uvloop":
        uvloop, reason = _optional("uvloop")
        if uvloop is None:
            raise RuntimeError(f"--loop uvloop needs uvloop ({reason})")
        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory
    raise ValueError(f"unknown loop {loop!r}; expected one of {', '.join(LOOPS)}")


def _run(
    workloads: Sequence[_Workload],
    rounds: int,
    factory: Callable[[], asyncio.AbstractEventLoop] | None,
    progress: Callable[[int, int, str], None],
) -> None:
    total = len(workloads) * rounds
    done = 0
    with asyncio.Runner(loop_factory=factory) as runner:
        for workload in workloads:
            progress(done, total, workload.title)
            impls = workload.impls
            runner.run(_round(impls, max(1, workload.n // 10), timed=False))  # warm-up
            for r in range(rounds):
                k = r % len(impls)
                runner.run(_round(impls[k:] + impls[:k], workload.n, timed=True))
                done += 1
                progress(done, total, workload.title)
    progress(total, total, "done")


# ---------------------------------------------------------------------------------------------
# Reporting


def _env_line(loop: str, quick: bool, rounds: int, tc: Any, anyio: Any) -> str:
    factory = _loop_factory(loop) or asyncio.new_event_loop
    probe_loop = factory()
    loop_desc = f"{loop} ({type(probe_loop).__name__})"
    probe_loop.close()
    if loop == "uvloop":
        loop_desc = f"uvloop {_version('uvloop')}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("model name", "Model")):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    cores = str(os.cpu_count() or "?")
    if hasattr(os, "sched_getaffinity"):
        usable = len(os.sched_getaffinity(0))
        if str(usable) != cores:
            cores = f"{usable} of {cores}"
    versions = []
    if tc is not None:
        versions.append(
            f"toolcase_rs {getattr(tc, '__version__', None) or _version('toolcase_rs')}"
        )
    versions.append(f"AnyIO {_version('anyio')}" if anyio is not None else "no AnyIO")
    mode = "quick demo" if quick else "demo"
    parts = [
        datetime.date.today().isoformat(),
        f"{platform.python_implementation()} {platform.python_version()}",
        f"loop: {loop_desc}",
        cpu,
        f"{cores} cores",
        ", ".join(versions),
        f"{mode}, median of {rounds} interleaved rounds",
    ]
    return " · ".join(parts)


def _fmt_seconds(s: float) -> str:
    for scale, unit in ((1e-6, "ns"), (1e-3, "µs"), (1.0, "ms")):
        if abs(s) < scale:
            return f"{s / scale * 1e3:.3g} {unit}"
    return f"{s:.3g} s"


_HEADERS = ("Workload", "Implementation", "Result", "vs asyncio")
_RIGHT = {2, 3}


def _cells(workloads: Sequence[_Workload]) -> list[list[str]]:
    table = []
    for workload in workloads:
        medians = [statistics.median(i.samples) if i.samples else None for i in workload.impls]
        reference = medians[0]
        for position, (impl, value) in enumerate(zip(workload.impls, medians, strict=True)):
            if value is None:
                result, ratio = ("error" if impl.error else "n/a"), ""
            else:
                result = _fmt_seconds(value) + (f"/{workload.per}" if workload.per else "")
                ratio = f"{value / reference:.2f}x" if reference else ""
            table.append([workload.title if position == 0 else "", impl.label, result, ratio])
    return table


def _footnotes(workloads: Sequence[_Workload], missing: str, only: bool) -> list[str]:
    notes = []
    if missing:
        notes.append(f"toolcase_rs rows skipped: {missing}")
    if only and not workloads:
        notes.append(
            "No workload matches --only; the keys are: spawn, cancel-scope, lock, gather, map."
        )
    for workload in workloads:
        for impl in workload.impls:
            if impl.error:
                notes.append(f"ERROR in {impl.label} ({workload.title}): {impl.error}")
    notes.append(
        "Ratios are to the asyncio row of the same workload in this run (median time per op)."
        " This is a demo of five workloads; the full suite, with budgets, memory and more peers,"
        " is `python benches/run.py` in a source checkout (see benches/README.md)."
    )
    return notes


def _format(cells: list[list[str]], env: str, notes: list[str], markdown: bool) -> str:
    lines = [env, ""]
    if markdown:
        lines.append("| " + " | ".join(_HEADERS) + " |")
        lines.append("|" + "|".join("---:" if i in _RIGHT else "---" for i in range(4)) + "|")
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
        lines.append("")
        lines += [f"- {note}" for note in notes]
    else:
        widths = [max(len(r[i]) for r in [list(_HEADERS), *cells]) for i in range(4)]

        def fmt(row: Sequence[str]) -> str:
            return "  ".join(
                c.rjust(w) if i in _RIGHT else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()

        lines.append(fmt(_HEADERS))
        lines.append("  ".join("-" * w for w in widths))
        lines += [fmt(row) for row in cells]
        lines.append("")
        lines += notes
    return "\n".join(lines)


class _ProgressBar:
    """Redrawn in place on a tty; else one line per workload (no carriage returns in CI logs)."""

    def __init__(self, stream: TextIO, width: int = 20) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._width = width
        self._last_label = ""
        self._drawn = 0

    def __call__(self, done: int, total: int, label: str) -> None:
        if not self._tty:
            if label != self._last_label and label != "done":
                self._stream.write(f"[{done}/{total}] {label}\n")
                self._stream.flush()
            self._last_label = label
            return
        filled = self._width * done // max(total, 1)
        text = f"[{'#' * filled}{'.' * (self._width - filled)}] {done}/{total} {label}"
        text = text[: shutil.get_terminal_size((80, 24)).columns - 1]
        self._stream.write("\r" + text.ljust(self._drawn))
        self._stream.flush()
        self._drawn = len(text)

    def close(self) -> None:
        if self._tty and self._drawn:
            self._stream.write("\r" + " " * self._drawn + "\r")
            self._stream.flush()


# ---------------------------------------------------------------------------------------------
# Command line


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run the demo and print the table; the entry of `python -m toolcase_rs`.

    Returns:
        The exit status: 0, or 1 with `--strict` when toolcase_rs was not measured or a
        workload raised, 2 when `--loop uvloop` is asked for and uvloop is not importable.
    """
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Measure a few toolcase_rs operations against asyncio and AnyIO in one run "
        "and print per-op times and ratios to asyncio (a demo: the full suite is benches/run.py "
        "in a source checkout).",
    )
    parser.add_argument("--quick", action="store_true", help="smaller N, fewer rounds")
    parser.add_argument("--loop", choices=LOOPS, default="asyncio", help="event loop to use")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument(
        "--only",
        action="append",
        metavar="KEY",
        help="run only workloads whose key contains KEY: spawn, cancel-scope, lock, gather, "
        "map; repeatable",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 if toolcase_rs could not be imported or any workload raised",
    )
    args = parser.parse_args(argv)
    rounds = 3 if args.quick else 5
    tc, missing = _load_toolcase()
    anyio, _ = _optional("anyio")
    try:
        factory = _loop_factory(args.loop)
        env = _env_line(args.loop, args.quick, rounds, tc, anyio)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    workloads = _workloads(args.quick, tc, anyio)
    if args.only:
        workloads = [w for w in workloads if any(k in w.key for k in args.only)]
    bar = _ProgressBar(sys.stderr)
    try:
        _run(workloads, rounds, factory, bar)
    finally:
        bar.close()
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="replace")  # "µs" and "·" on an ASCII-only terminal
    notes = _footnotes(workloads, missing, bool(args.only))
    print(_format(_cells(workloads), env, notes, args.markdown))
    if args.strict:
        problems = [f"{i.label}: {i.error}" for w in workloads for i in w.impls if i.error]
        if missing:
            problems.insert(0, f"toolcase_rs not measured: {missing}")
        for problem in problems:
            print(f"error (--strict): {problem}", file=sys.stderr)
        if problems:
            return 1
    return 0
