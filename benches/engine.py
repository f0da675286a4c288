# Benchmark engine: side-by-side ratios of toolcase_rs against asyncio and AnyIO.
#
# What it owns: the loop that measures workloads, the table that reports them and the command
# line (`main`). The workloads themselves live in the suites named by `SUITES` (sibling
# modules of this one: `suite_core` for task groups, cancel scopes and deadlines,
# `suite_sync` for the synchronisation primitives, `suite_many` for the combinators), each
# written once per implementation (asyncio = the reference, AnyIO 4.16 when importable,
# toolcase_rs when importable). `benches/run.py` is the entry. This directory is not part of
# the installed package; `python -m toolcase_rs` runs a small self-contained demo instead
# (`toolcase_rs/_demo.py`), which imports nothing from here.
#
# Which thread runs it: the caller's. Every timed workload runs on one event loop owned by one
# `asyncio.Runner` (stdlib or uvloop) for the whole run; memory samples run in child
# interpreters (see below). The engine steps between workloads synchronously, so the progress
# callback is called on the caller's thread, never from inside the loop.
#
# Invariants:
# - The first implementation of a workload is the asyncio reference: every ratio is
#   `value / reference value` from the same process run.
# - Every round runs every implementation once, in an order rotated by one each round, so
#   machine noise, GC pressure and cache state fall on all implementations alike.
# - An implementation body marks its measured region with `probe.start()` / `probe.stop()`;
#   setup (spawning the children that a cancel benchmark then cancels, say) stays outside.
# - A failing implementation becomes an ERROR row; it never aborts the run or the other rows.
#
# Rejected alternatives:
# - pyperf / one process per implementation: absolute times across processes drift by more
#   than the differences we budget for; ratios are only meaningful within one run.
# - Best-of-N: the spawn workloads allocate and collect 10,000 tasks per round, so GC cost is a
#   real part of them; the median keeps it while still ignoring a stray slow round.
# - Memory in the benchmark process: after the spawn workloads, pymalloc keeps partly used
#   arenas whose free blocks absorb the next 10,000 children without any RSS growth (asyncio
#   measured 0.08 KiB/child that way). Each memory sample runs in a fresh interpreter instead
#   (`_memory_child`), rounds still interleaved; it is the one exception to "one process".
# - tracemalloc alone for memory: it sees only Python's allocators, not the Rust heap, and
#   would flatter the native module. The RSS growth with the children parked is the figure;
#   the tracemalloc one (Python heap only) is shown beside it.
# - Keeping the engine and suites inside the package (`toolcase_rs._bench*`, as they once
#   were): every wheel shipped some 2,000 lines of benchmarks for peers it does not depend on.
#   The package keeps only the small demo; the full suite runs from a checkout.
from __future__ import annotations

import argparse
import asyncio
import ctypes
import ctypes.util
import datetime
import gc
import importlib
import importlib.metadata
import io
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TextIO

__all__ = [
    "BenchEnv",
    "Progress",
    "Row",
    "format_table",
    "load_toolcase",
    "main",
    "run_benchmarks",
]

#: `progress(done, total, label)`: `done` of `total` steps are finished, `label` is running.
Progress = Callable[[int, int, str], None]

#: Deadline used by the firing-overshoot workload.
FIRE_DELAY = 0.001
#: A firing sample slower than this means the deadline did not interrupt the sleep at all.
FIRE_GIVE_UP = 0.25

LOOPS = ("asyncio", "uvloop")


# ---------------------------------------------------------------------------------------------
# Optional peers


def _optional_module(name: str) -> tuple[Any | None, str]:
    try:
        return importlib.import_module(name), ""
    except Exception as exc:  # a broken install is "not available", not a crash
        return None, f"{type(exc).__name__}: {exc}"


def load_toolcase() -> tuple[Any | None, str]:
    """Import toolcase_rs for benchmarking, if its native module is usable.

    Returns:
        `(module, "")` when `toolcase_rs.TaskGroup` is importable, else `(None, reason)`.
    """
    module, reason = _optional_module("toolcase_rs")
    if module is None:
        return None, reason
    if not hasattr(module, "TaskGroup"):
        return None, "toolcase_rs has no TaskGroup (native module not built?)"
    return module, ""


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


# ---------------------------------------------------------------------------------------------
# Probes: what a body's measured region records


class Probe(Protocol):
    """Marks the measured region of one benchmark body."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Stopwatch:
    """Wall time of the region, in seconds (`time.perf_counter`)."""

    def __init__(self) -> None:
        self.value = math.nan
        self._t0 = 0.0

    def start(self) -> None:
        self._t0 = time.perf_counter()

    def stop(self) -> None:
        self.value = time.perf_counter() - self._t0


def _malloc_trim() -> Callable[[], object]:
    # glibc keeps freed memory mapped; without a trim, a peer measured after another one would
    # reuse that memory and look cheaper. A no-op where the call does not exist.
    path = ctypes.util.find_library("c")
    try:
        trim: Callable[[int], object] = ctypes.CDLL(path).malloc_trim
    except (OSError, AttributeError, TypeError):
        return lambda: None
    return lambda: trim(0)


_trim = _malloc_trim()
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _rss() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


RSS_AVAILABLE = _rss() is not None


class RssMeter:
    """Resident-set growth over the region, in bytes (sees the Rust heap too)."""

    def __init__(self) -> None:
        self.value = math.nan
        self._base = 0

    def start(self) -> None:
        gc.collect()
        _trim()
        self._base = _rss() or 0

    def stop(self) -> None:
        self.value = float((_rss() or 0) - self._base)


class TraceMeter:
    """Bytes allocated through Python's allocators and still alive at the end of the region."""

    def __init__(self) -> None:
        self.value = math.nan

    def start(self) -> None:
        gc.collect()
        tracemalloc.start()

    def stop(self) -> None:
        self.value = float(tracemalloc.get_traced_memory()[0])
        tracemalloc.stop()


# ---------------------------------------------------------------------------------------------
# Workloads

Body = Callable[[int, Probe], Coroutine[Any, Any, None]]
#: time: seconds per op, median of rounds; latency: firing overshoot per sample, mean and p95;
#: memory: RSS bytes per parked child, measured in a fresh interpreter; efficiency: ideal time
#: over measured time (a throughput row, higher is better; its budget is a minimum value).
Kind = Literal["time", "latency", "memory", "efficiency"]


@dataclass
class Impl:
    """One implementation of a workload."""

    label: str
    body: Body
    budget: float | None = None  # max ratio to the asyncio reference; None: not budgeted
    samples: list[float] = field(default_factory=list)
    extra: list[float] = field(default_factory=list)  # memory: tracemalloc bytes per op
    error: str = ""
    # Labels of other implementations of the same workload that `budget` is a ratio to,
    # instead of the asyncio reference; with several, it must hold against each of them.
    budget_vs: tuple[str, ...] = ()
    max_value: float | None = None  # a ceiling on the value itself (seconds per op, say)


@dataclass
class Workload:
    """A measured operation with its implementations; `impls[0]` is the asyncio reference."""

    key: str
    title: str
    kind: Kind
    n: int  # ops per measurement (children, enter/exits); latency: samples per round
    rounds: int
    per: str  # what one op is, for "µs/child"; "" when the title says it
    impls: list[Impl]
    ideal: float = 0.0  # efficiency: the ideal seconds per op (value = ideal * n / elapsed)
    # latency: what is subtracted from each measured sample (None: the firing delay)
    offset: float | None = None


@dataclass(frozen=True)
class Sizes:
    """How big each workload is: a full run, or a quick one that finishes in seconds."""

    children: int
    enter_exits: int
    empty_groups: int
    fire_samples: int
    cancel_children: int
    memory_children: int
    rounds: int
    memory_rounds: int

    @classmethod
    def for_mode(cls, quick: bool) -> Sizes:
        if quick:
            return cls(1_000, 5_000, 1_000, 40, 1_000, 2_000, 3, 1)
        return cls(10_000, 50_000, 5_000, 200, 1_000, 10_000, 7, 3)


#: The modules (siblings of this one) that contribute the workloads, in table order, each with
#: a function `workloads(sizes: Sizes, tc: Any, anyio: Any) -> list[Workload]`.
SUITES = ("suite_core", "suite_sync", "suite_many", "suite_threads")


def _workloads(sizes: Sizes, tc: Any, anyio: Any) -> list[Workload]:
    # Imported here, not at the top: the suites import this module for Impl, Probe and Sizes.
    out: list[Workload] = []
    for name in SUITES:
        out.extend(importlib.import_module(name).workloads(sizes, tc, anyio))
    return out


# ---------------------------------------------------------------------------------------------
# Measuring


def _describe(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, BaseExceptionGroup):
        text += " [" + "; ".join(_describe(e) for e in exc.exceptions[:3]) + "]"
    return text


async def _measure(impl: Impl, n: int) -> float:
    probe = Stopwatch()
    await impl.body(n, probe)
    value: float = probe.value
    if math.isnan(value):
        raise RuntimeError("benchmark body never closed its measured region")
    return value


async def _round(workload: Workload, order: Sequence[Impl], n: int) -> None:
    """Run one round: every implementation once on `n` ops (latency: `n` samples each)."""
    reps = n if workload.kind == "latency" else 1
    for rep in range(reps):
        k = rep % len(order)  # latency: rotate per sample too, against timer-phase effects
        for impl in [*order[k:], *order[:k]]:
            if impl.error:
                continue
            gc.collect()
            try:
                elapsed = await _measure(impl, 1 if workload.kind == "latency" else n)
                if workload.kind == "time":
                    impl.samples.append(elapsed / n)
                elif workload.kind == "efficiency":
                    impl.samples.append(workload.ideal * n / elapsed)
                elif elapsed > FIRE_GIVE_UP:
                    raise RuntimeError(f"deadline did not fire ({elapsed * 1e3:.0f} ms)")
                else:
                    offset = FIRE_DELAY if workload.offset is None else workload.offset
                    impl.samples.append(elapsed - offset)
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException as exc:  # CancelledError leaking out is a failure too
                impl.error = _describe(exc)


# A memory probe imports this module as `engine` from its own directory, as the suites do.
_CHILD_BOOT = """\
import os, sys
sys.path.insert(0, os.path.dirname(sys.argv[1]))
import engine
sys.exit(engine._memory_child(sys.argv[2:]))
"""


def _memory_round(workload: Workload, order: Sequence[Impl], loop: str) -> None:
    """Run one memory round: each implementation in a fresh interpreter, one after another."""
    for impl in order:
        if impl.error:
            continue
        argv = [sys.executable, "-c", _CHILD_BOOT, __file__, impl.label, str(workload.n), loop]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
            if proc.returncode != 0:
                tail = proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
                raise RuntimeError(f"memory probe failed: {tail[0]}")
            rss, heap = json.loads(proc.stdout.strip().splitlines()[-1])
        except (OSError, ValueError, RuntimeError, subprocess.TimeoutExpired) as exc:
            impl.error = _describe(exc)
            continue
        impl.samples.append(rss if rss is not None else heap)
        impl.extra.append(heap)


def _memory_child(argv: Sequence[str]) -> int:
    """Entry of a memory probe interpreter: measure one implementation, print JSON to stdout.

    Args:
        argv: `[implementation label, number of children, loop name]`.

    Returns:
        0; prints `[rss_bytes_per_child or null, tracemalloc_bytes_per_child]`.
    """
    label, n_text, loop = argv
    n = int(n_text)
    tc, _ = load_toolcase()
    anyio, _ = _optional_module("anyio")
    workloads = _workloads(Sizes.for_mode(quick=False), tc, anyio)
    impl = next(i for w in workloads if w.kind == "memory" for i in w.impls if i.label == label)
    with asyncio.Runner(loop_factory=_loop_factory(loop)) as runner:
        runner.run(impl.body(64, Stopwatch()))  # lazy imports and first-use caches
        rss, heap = RssMeter(), TraceMeter()
        runner.run(impl.body(n, rss))
        runner.run(impl.body(n, heap))
    print(json.dumps([rss.value / n if RSS_AVAILABLE else None, heap.value / n]))
    return 0


def _warm_up(runner: asyncio.Runner, workload: Workload) -> None:
    # Imports, caches and the allocator's first growth land here, not in round 1.
    if workload.kind == "memory":
        return
    n = 1 if workload.kind == "latency" else max(1, workload.n // 10)
    runner.run(_round(workload, workload.impls, n))
    for impl in workload.impls:
        impl.samples.clear()


@dataclass(frozen=True)
class Row:
    """One implementation's result for one workload.

    `value` is seconds per op (kind "time"), mean overshoot in seconds (kind "latency") or
    bytes per op (kind "memory"); `ratio` is `value` over the asyncio reference's value.
    """

    workload: str
    impl: str
    kind: Kind
    per: str
    value: float | None
    ratio: float | None
    budget: float | None
    p95: float | None = None
    heap: float | None = None  # memory: tracemalloc bytes per op
    error: str = ""
    samples: int = 0  # how many measurements the value summarises
    budget_vs: tuple[str, ...] = ()  # see Impl.budget_vs
    budget_ratio: float | None = None  # the largest ratio to the `budget_vs` rows
    max_value: float | None = None

    @property
    def status(self) -> str:
        """The row's verdict: ERROR, PASS or OVER (against the budget), or "" if unbudgeted."""
        if self.error:
            return "ERROR"
        verdicts: list[bool] = []
        ratio = self.budget_ratio if self.budget_vs else self.ratio
        if self.budget is not None and ratio is not None:
            if self.kind == "efficiency":  # the budget is a minimum efficiency
                verdicts.append(self.value is not None and self.value >= self.budget)
            else:
                verdicts.append(ratio <= self.budget)
        if self.max_value is not None and self.value is not None:
            verdicts.append(self.value <= self.max_value)
        if not verdicts:
            return ""
        return "PASS" if all(verdicts) else "OVER"


def _rows(workload: Workload) -> list[Row]:
    def center(impl: Impl) -> float | None:
        if not impl.samples:
            return None
        if workload.kind == "latency":
            return statistics.fmean(impl.samples)
        return statistics.median(impl.samples)

    reference = center(workload.impls[0])
    centers = {impl.label: center(impl) for impl in workload.impls}
    rows = []
    for impl in workload.impls:
        value = center(impl)
        ratio = None
        if value is not None and reference:
            ratio = value / reference
        budget_ratio = None
        others = [centers.get(label) for label in impl.budget_vs]
        if value is not None and any(others):
            budget_ratio = max(value / other for other in others if other)
        p95 = None
        if workload.kind == "latency" and len(impl.samples) >= 2:
            p95 = statistics.quantiles(impl.samples, n=20, method="inclusive")[-1]
        heap = statistics.median(impl.extra) if impl.extra else None
        rows.append(
            Row(
                workload.title,
                impl.label,
                workload.kind,
                workload.per,
                value,
                ratio,
                impl.budget,
                p95,
                heap,
                impl.error,
                len(impl.samples),
                impl.budget_vs,
                budget_ratio,
                impl.max_value,
            )
        )
    return rows


def _loop_factory(loop: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    if loop == "asyncio":
        return None
    if loop == "uvloop":
        uvloop, reason = _optional_module("uvloop")
        if uvloop is None:
            raise RuntimeError(f"--loop uvloop needs uvloop ({reason})")
        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
        return factory
    raise ValueError(f"unknown loop {loop!r}; expected one of {', '.join(LOOPS)}")


def run_benchmarks(
    quick: bool = False,
    progress: Progress | None = None,
    *,
    loop: str = "asyncio",
    only: Iterable[str] | None = None,
) -> list[Row]:
    """Measure every workload for asyncio, AnyIO and toolcase_rs side by side in this process.

    Args:
        quick: smaller N and fewer rounds (a smoke run of a few seconds; ratios are rough).
        progress: called as `progress(done, total, label)` before each step and once at the end.
        loop: "asyncio" (the stdlib default loop) or "uvloop".
        only: keep only workloads whose key contains one of these strings (e.g. "spawn").

    Returns:
        One `Row` per workload and implementation, in table order; the asyncio row first.
        AnyIO and toolcase_rs rows are absent when they cannot be imported.

    Raises:
        RuntimeError: `loop="uvloop"` and uvloop is not importable.
        ValueError: an unknown `loop`.
    """
    factory = _loop_factory(loop)
    sizes = Sizes.for_mode(quick)
    tc, _ = load_toolcase()
    anyio, _ = _optional_module("anyio")
    workloads = _workloads(sizes, tc, anyio)
    if only is not None:
        keys = list(only)
        workloads = [w for w in workloads if any(k in w.key for k in keys)]
    total = sum(w.rounds for w in workloads)
    done = 0
    rows: list[Row] = []
    with asyncio.Runner(loop_factory=factory) as runner:
        for workload in workloads:
            if progress is not None:
                progress(done, total, workload.title)
            _warm_up(runner, workload)
            impls = workload.impls
            for r in range(workload.rounds):
                k = r % len(impls)
                order = impls[k:] + impls[:k]
                if workload.kind == "memory":
                    _memory_round(workload, order, loop)
                else:
                    runner.run(_round(workload, order, workload.n))
                done += 1
                if progress is not None:
                    progress(done, total, workload.title)
            rows.extend(_rows(workload))
    if progress is not None:
        progress(total, total, "done")
    return rows


# ---------------------------------------------------------------------------------------------
# Reporting


@dataclass(frozen=True)
class BenchEnv:
    """Where and how a run was measured: the table's header line."""

    date: str
    python: str
    loop: str
    cpu: str
    cores: str
    versions: str
    mode: str
    quick: bool
    toolcase_missing: str  # why toolcase_rs rows are absent; "" when it was measured

    @classmethod
    def collect(cls, loop: str = "asyncio", quick: bool = False) -> BenchEnv:
        """Describe this machine and interpreter for a run with the given settings."""
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
        tc, reason = load_toolcase()
        anyio, _ = _optional_module("anyio")
        versions = []
        if tc is not None:
            tc_version = getattr(tc, "__version__", None) or _version("toolcase_rs")
            versions.append(f"toolcase_rs {tc_version}")
        versions.append(f"AnyIO {_version('anyio')}" if anyio is not None else "no AnyIO")
        sizes = Sizes.for_mode(quick)
        mode = "quick run" if quick else "full run"
        mode += f", median of {sizes.rounds} interleaved rounds"
        return cls(
            date=datetime.date.today().isoformat(),
            python=f"{platform.python_implementation()} {platform.python_version()}",
            loop=loop_desc,
            cpu=cpu,
            cores=f"{cores} cores",
            versions=", ".join(v for v in versions if v),
            mode=mode,
            quick=quick,
            toolcase_missing=reason,
        )

    def line(self) -> str:
        parts = [self.date, self.python, f"loop: {self.loop}", self.cpu, self.cores]
        parts += [self.versions, self.mode]
        return " · ".join(parts)


def _fmt_seconds(s: float) -> str:
    for scale, unit in ((1e-6, "ns"), (1e-3, "µs"), (1.0, "ms")):
        if abs(s) < scale:
            return f"{s / scale * 1e3:.3g} {unit}"
    return f"{s:.3g} s"


def _fmt_result(row: Row) -> str:
    if row.value is None:
        return "error" if row.error else "n/a"
    if row.kind == "time":
        return _fmt_seconds(row.value) + (f"/{row.per}" if row.per else "")
    if row.kind == "efficiency":
        return f"{row.value:.1%} of ideal"
    if row.kind == "latency":
        text = f"mean {row.value * 1e3:.3f} ms"
        if row.p95 is not None:
            text += f", p95 {row.p95 * 1e3:.3f} ms"
        return text
    text = f"{row.value / 1024:.2f} KiB/{row.per}"
    if row.heap is not None and RSS_AVAILABLE:
        text += f" (Python heap {row.heap / 1024:.2f})"
    return text


def _fmt_budget(row: Row) -> str:
    parts = []
    if row.budget is not None:
        if row.kind == "efficiency":
            parts.append(f">= {row.budget:.0%}")
        else:
            digits = 1 if round(row.budget, 1) == row.budget else 2
            text = f"<= {row.budget:.{digits}f}x"
            if row.budget_vs:
                text += " vs " + " / ".join(row.budget_vs)
                if row.budget_ratio is not None:
                    text += f" (is {row.budget_ratio:.2f}x)"
            parts.append(text)
    if row.max_value is not None:
        parts.append(f"<= {_fmt_seconds(row.max_value)}" + (f"/{row.per}" if row.per else ""))
    return "; ".join(parts)


def _cells(rows: Sequence[Row]) -> list[list[str]]:
    table = []
    previous = None
    for row in rows:
        table.append(
            [
                row.workload if row.workload != previous else "",
                row.impl,
                _fmt_result(row),
                f"{row.ratio:.2f}x" if row.ratio is not None else "",
                _fmt_budget(row),
                row.status,
            ]
        )
        previous = row.workload
    return table


_HEADERS = ["Workload", "Implementation", "Result", "vs asyncio", "Budget", "Status"]
_RIGHT = {2, 3, 4}


def _footnotes(rows: Sequence[Row], env: BenchEnv) -> list[str]:
    notes = []
    if env.toolcase_missing:
        notes.append(f"toolcase_rs rows skipped: {env.toolcase_missing}")
    for row in rows:
        if row.error:
            notes.append(f"ERROR in {row.impl} ({row.workload}): {row.error}")
    memory = "RSS growth, in a fresh interpreter," if RSS_AVAILABLE else "tracemalloc"
    notes.append(
        "Ratios are to the asyncio row of the same workload in this run (time: median per op;"
        f" overshoot: mean lateness past the deadline); memory is {memory} with the children"
        " parked; efficiency is ideal time / measured time (higher is better, its budget is a"
        ' minimum). A budget "vs X" is a ratio to row X of the same workload instead (the'
        " largest, with several). Budgets are set in the suite files."
    )
    budgeted = [r for r in rows if r.status in ("PASS", "OVER")]
    if budgeted:
        over = sum(r.status == "OVER" for r in budgeted)
        notes.append(f"Budgets: {len(budgeted) - over} PASS, {over} OVER.")
        if env.quick:
            notes.append("Quick run (small N, few rounds): verdicts are indicative only.")
    return notes


def format_table(rows: Sequence[Row], env: BenchEnv | None = None, *, markdown: bool = True) -> str:
    """Render rows as a Markdown table (or aligned plain text) under an environment line.

    Args:
        rows: as returned by `run_benchmarks`.
        env: the run's environment; defaults to `BenchEnv.collect()` (stdlib loop, full run).
        markdown: Markdown (for the README) when true, else space-aligned columns.

    Returns:
        The header line, a blank line, the table, a blank line and the footnotes.
    """
    env = env or BenchEnv.collect()
    cells = _cells(rows)
    lines = [env.line(), ""]
    if markdown:
        lines.append("| " + " | ".join(_HEADERS) + " |")
        lines.append(
            "|" + "|".join("---:" if i in _RIGHT else "---" for i in range(len(_HEADERS))) + "|"
        )
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]
        lines.append("")
        lines += [f"- {note}" for note in _footnotes(rows, env)]
    else:
        widths = [max(len(r[i]) for r in [_HEADERS, *cells]) for i in range(len(_HEADERS))]

        def fmt(row: Sequence[str]) -> str:
            return "  ".join(
                c.rjust(w) if i in _RIGHT else c.ljust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()

        lines.append(fmt(_HEADERS))
        lines.append("  ".join("-" * w for w in widths))
        lines += [fmt(row) for row in cells]
        lines.append("")
        lines += _footnotes(rows, env)
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------
# Command line


class ProgressBar:
    """A hand-drawn progress bar on a stream: redrawn in place on a tty, else one line per step
    label (so a CI log shows which workload is running without carriage-return noise)."""

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
        columns = shutil.get_terminal_size((80, 24)).columns - 1
        text = text[:columns]
        self._stream.write("\r" + text.ljust(self._drawn))
        self._stream.flush()
        self._drawn = len(text)

    def close(self) -> None:
        """Erase the bar (tty only) so the table starts on a clean line."""
        if self._tty and self._drawn:
            self._stream.write("\r" + " " * self._drawn + "\r")
            self._stream.flush()


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Run the benchmarks and print the table; the entry of `benches/run.py`.

    Args:
        argv: command-line arguments (default: `sys.argv[1:]`).
        prog: program name shown in `--help`.

    Returns:
        The exit status: 0, or 1 with `--strict` when toolcase_rs was not measured or a
        workload raised, 2 for a bad `--loop`.
    """
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Measure toolcase_rs task groups and cancel scopes against asyncio and "
        "AnyIO in one run and print ratios against the project's budgets.",
    )
    parser.add_argument("--quick", action="store_true", help="small N, few rounds (seconds)")
    parser.add_argument("--loop", choices=LOOPS, default="asyncio", help="event loop to use")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument(
        "--only",
        action="append",
        metavar="KEY",
        help="run only workloads whose key contains KEY: core (spawn, empty-group, "
        "cancel-scope, move-on-after, fire-overshoot, cancel-children, memory), primitives "
        "(lock, semaphore, limiter, handoff, event, queue, thread, rate), many (gather, "
        "map-limit, race, fan-out); repeatable",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 if toolcase_rs could not be imported or any workload raised",
    )
    args = parser.parse_args(argv)
    try:
        env = BenchEnv.collect(loop=args.loop, quick=args.quick)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    bar = ProgressBar(sys.stderr)
    try:
        rows = run_benchmarks(args.quick, bar, loop=args.loop, only=args.only)
    finally:
        bar.close()
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="replace")  # "µs" and "·" on an ASCII-only terminal
    print(format_table(rows, env, markdown=args.markdown))
    if args.strict:
        problems = [f"{row.impl}: {row.error}" for row in rows if row.error]
        if env.toolcase_missing:
            problems.insert(0, f"toolcase_rs not measured: {env.toolcase_missing}")
        for problem in problems:
            print(f"error (--strict): {problem}", file=sys.stderr)
        if problems:
            return 1
    return 0
