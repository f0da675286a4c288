"""Side-by-side benchmarks of toolcase_rs against asyncio, AnyIO and other peers.

    python benches/run.py [--quick] [--loop asyncio|uvloop] [--markdown] [--only KEY] [--strict]

The entry of the full suite: the engine is `engine.py` beside this file, the workloads are the
suites it names (`suite_core.py`, `suite_sync.py`, `suite_many.py`). See benches/README.md for
what each row measures and how to read the ratios. toolcase_rs is imported from the active
environment; when it cannot be imported, its rows are left out and the asyncio and AnyIO rows
still run. (`python -m toolcase_rs` is a separate, much smaller demo shipped in the package.)
"""

from __future__ import annotations

import sys

import engine

if __name__ == "__main__":
    sys.exit(engine.main(prog="benches/run.py"))
