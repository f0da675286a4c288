"""`python -m toolcase_rs`: measure toolcase_rs against asyncio and AnyIO on this machine.

Runs the small demo of `toolcase_rs._demo` (a few seconds: spawn+join, a cancel scope, a lock,
`gather`, `map_async`) and prints a table of per-op times and ratios to asyncio. Options:
`--quick`, `--loop asyncio|uvloop`, `--markdown`, `--only KEY`, `--strict`. The full benchmark
suite, with budgets, is `python benches/run.py` in a source checkout.
"""

from toolcase_rs._demo import main

if __name__ == "__main__":
    raise SystemExit(main(prog="python -m toolcase_rs"))
