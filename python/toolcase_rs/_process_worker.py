"""The body of a worker process of `ProcessPool` (not an API).

Started as a fresh interpreter by the pool. Reads length-prefixed pickled frames from stdin:
first the parent's start-up facts (its `sys.path`, its main script), then `(func, args,
kwargs)` requests, each answered on the original stdout with `(True, result)` or
`(False, exception)`. `sys.stdout` is moved to stderr first, so a function that prints cannot
corrupt the replies. Ends at end of input.
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
import traceback
from typing import Any, BinaryIO


def _read_exact(stream: BinaryIO, n: int) -> bytes | None:
    data = b""
    while len(data) < n:
        chunk = stream.read(n - len(data))
        if not chunk:
            return None
        data += chunk
    return data


def _read_frame(stream: BinaryIO) -> bytes | None:
    head = _read_exact(stream, 4)
    if head is None:
        return None
    (length,) = struct.unpack("<I", head)
    return _read_exact(stream, length)


def _write_frame(stream: BinaryIO, payload: bytes) -> None:
    stream.write(struct.pack("<I", len(payload)) + payload)
    stream.flush()


#: True while this worker runs the parent's main script: a script without an
#: `if __name__ == "__main__":` guard would start pools of its own from here.
bootstrapping = False


def _load_main(path: str | None) -> None:
    """Make the parent's main script importable as `__main__` (as multiprocessing's spawn
    does), so functions defined in it can be unpickled here."""
    if not path or not os.path.isfile(path) or not path.endswith(".py"):
        return
    import runpy
    import types

    global bootstrapping
    bootstrapping = True
    try:
        module = types.ModuleType("__mp_main__")
        module.__dict__.update(runpy.run_path(path, run_name="__mp_main__"))
    finally:
        bootstrapping = False
    sys.modules["__main__"] = sys.modules["__mp_main__"] = module


def _reply_error(exc: BaseException) -> bytes:
    text = "".join(traceback.format_exception(exc))
    try:
        exc.add_note(f"Traceback in the worker process (pid {os.getpid()}):\n{text}")
        return pickle.dumps((False, exc))
    except Exception:
        fallback = RuntimeError(f"{type(exc).__name__}: {exc}")
        fallback.add_note(f"Traceback in the worker process (pid {os.getpid()}):\n{text}")
        return pickle.dumps((False, fallback))


def main() -> None:
    requests = sys.stdin.buffer
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # prints go to stderr from now on
    sys.stdout = sys.stderr
    init = _read_frame(requests)
    if init is None:
        return
    facts: dict[str, Any] = pickle.loads(init)
    sys.path[:] = facts.get("sys_path", sys.path)
    main_error: BaseException | None = None
    try:
        _load_main(facts.get("main_path"))
    except BaseException as exc:  # a broken main script must not kill the worker
        main_error = exc
    while True:
        frame = _read_frame(requests)
        if frame is None:
            return
        try:
            try:
                func, args, kwargs = pickle.loads(frame)
            except AttributeError as exc:
                if main_error is None:
                    raise
                raise RuntimeError(
                    f"the job could not be unpickled ({exc}) because the worker process failed "
                    f"to import the main script: {main_error}"
                ) from None
            result = func(*args, **kwargs)
        except BaseException as exc:
            reply = _reply_error(exc)
        else:
            try:
                reply = pickle.dumps((True, result))
            except Exception as exc:
                error = pickle.PicklingError(
                    f"the result of {getattr(func, '__qualname__', func)!r} "
                    f"({type(result).__name__}) could not be sent back from the worker "
                    f"process: {exc}"
                )
                reply = pickle.dumps((False, error))
        _write_frame(replies, reply)


if __name__ == "__main__":
    main()
