"""Helpers for the regression tests of the 2026-12-02 defect repros (shared/repros/2026-12-02).

Some of those defects hang the interpreter in a way that neither ``asyncio.timeout`` nor the
per-test timeout can end (a task group that waits forever for a child the loop can no longer
step, a cancelled teardown that waits for it again). Their tests run the body in a subprocess
with a hard limit (``run_script``) and assert what it printed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field

import pytest

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is optional on exotic platforms
    uvloop = None

#: Hard limit for one subprocess; a body that is still running then is reported as hung.
SCRIPT_TIMEOUT = 20

#: Prepended to every script: ``report(**values)`` prints one JSON record (flushed, so the
#: records printed before a hang survive the kill), ``run(main)`` runs ``main()`` on the loop
#: named by ``sys.argv[1]`` ("asyncio" or "uvloop").
PRELUDE = """
import asyncio
import json
import sys


def report(**values):
    print(json.dumps(values), flush=True)


def run(main):
    if sys.argv[1] == "uvloop":
        import uvloop

        return uvloop.run(main())
    return asyncio.run(main())
"""


@dataclass
class ScriptOutcome:
    """What a script printed: the merged ``report()`` records, and how it ended."""

    hung: bool
    returncode: int | None
    records: dict = field(default_factory=dict)
    stderr: str = ""

    def describe(self) -> str:
        ending = f"HUNG (killed after {SCRIPT_TIMEOUT} s)" if self.hung else f"rc={self.returncode}"
        tail = "\n".join(self.stderr.strip().splitlines()[-8:])
        return f"{ending}; reported {self.records}; stderr tail:\n{tail}"


def _decode(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def _run_script(
    source: str, loop: str = "asyncio", *args: str, timeout: float = SCRIPT_TIMEOUT
) -> ScriptOutcome:
    script = PRELUDE + textwrap.dedent(source)
    command = [sys.executable, "-u", "-c", script, loop, *args]
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        hung, returncode, stdout, stderr = True, None, _decode(exc.stdout), _decode(exc.stderr)
    else:
        hung, returncode, stdout, stderr = False, proc.returncode, proc.stdout, proc.stderr
    records: dict = {}
    for line in stdout.splitlines():
        if line.startswith("{"):
            records.update(json.loads(line))
    return ScriptOutcome(hung=hung, returncode=returncode, records=records, stderr=stderr)


@pytest.fixture
def run_script():
    """``run_script(source, loop, *args)``: run ``PRELUDE + source`` in a fresh interpreter (the
    one running the tests) with ``sys.argv[1:] == [loop, *args]``; returns a ``ScriptOutcome``."""
    return _run_script


@pytest.fixture(params=["asyncio", "uvloop"])
def script_loop(request: pytest.FixtureRequest) -> str:
    """The loop a subprocess script runs on (the subprocess counterpart of the loop factories
    the top-level conftest gives every async test)."""
    if request.param == "uvloop" and uvloop is None:
        pytest.skip("uvloop is not installed")
    return request.param
