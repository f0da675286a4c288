"""Side-by-side benchmarks of toolcase_rs task groups and cancel scopes.

    python benches/bench_core.py [--quick] [--loop asyncio|uvloop] [--markdown] [--only KEY]

A thin entry over the engine in `toolcase_rs._bench` (the one `python -m toolcase_rs` runs);
see benches/README.md for what each row measures and how to read the ratios. When the
installed toolcase_rs has no `_bench` (or cannot be imported at all), the engine is loaded
from this checkout's `python/toolcase_rs/_bench.py`, so the asyncio and AnyIO rows can be
measured before the native module is built.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ENGINE_SOURCE = Path(__file__).resolve().parent.parent / "python" / "toolcase_rs" / "_bench.py"


def load_engine() -> ModuleType:
    """Return `toolcase_rs._bench`, or the checkout's copy of it when that cannot be imported."""
    try:
        return importlib.import_module("toolcase_rs._bench")
    except ImportError:
        spec = importlib.util.spec_from_file_location("_toolcase_rs_bench", ENGINE_SOURCE)
        if spec is None or spec.loader is None:
            raise
        engine = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = engine  # dataclasses look their module up here
        spec.loader.exec_module(engine)
        return engine


if __name__ == "__main__":
    sys.exit(load_engine().main(prog="benches/bench_core.py"))
