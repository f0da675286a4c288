"""Fixtures for the worker-thread tests: `tlib` is an AnyIO-shaped namespace over toolcase_rs
or AnyIO 4.16 (the oracle) for the thread and interop API."""

from __future__ import annotations

import importlib
import types

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import pytest


def _toolcase_rs() -> types.ModuleType:
    try:
        return importlib.import_module("toolcase_rs")
    except ImportError as exc:  # pragma: no cover
        pytest.skip(f"toolcase_rs is not importable yet: {exc}")


@pytest.fixture(params=["toolcase_rs", "anyio"])
def tlib(request: pytest.FixtureRequest) -> types.SimpleNamespace:
    if request.param == "anyio":
        return types.SimpleNamespace(
            name="anyio",
            to_thread=anyio.to_thread,
            from_thread=anyio.from_thread,
            current_token=anyio.lowlevel.current_token,
            CancelScope=anyio.CancelScope,
            move_on_after=anyio.move_on_after,
            create_task_group=anyio.create_task_group,
            CapacityLimiter=anyio.CapacityLimiter,
            Event=anyio.Event,
            sleep=anyio.sleep,
            get_cancelled_exc_class=anyio.get_cancelled_exc_class,
        )
    tc = _toolcase_rs()
    return types.SimpleNamespace(
        name="toolcase_rs",
        to_thread=tc.to_thread,
        from_thread=tc.from_thread,
        current_token=tc.lowlevel.current_token,
        CancelScope=tc.CancelScope,
        move_on_after=tc.move_on_after,
        create_task_group=tc.create_task_group,
        CapacityLimiter=tc.CapacityLimiter,
        Event=tc.Event,
        sleep=tc.sleep,
        get_cancelled_exc_class=tc.get_cancelled_exc_class,
    )
