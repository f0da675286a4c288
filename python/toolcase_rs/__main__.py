"""`python -m toolcase_rs`: measure toolcase_rs against asyncio and AnyIO on this machine.

Runs the benchmark engine of `toolcase_rs._bench` (the same one `benches/bench_core.py` runs)
and prints a table of per-op times, ratios to asyncio and the budgets they are held to.
Options: `--quick` (a few seconds), `--loop asyncio|uvloop`, `--markdown`, `--only KEY`,
`--strict`.
"""

from toolcase_rs._bench import main

if __name__ == "__main__":
    raise SystemExit(main(prog="python -m toolcase_rs"))
