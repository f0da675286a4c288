"""Fixtures for the worker-thread tests: `tlib` is an AnyIO-shaped namespace over toolcase_rs
or AnyIO 4.16 (the oracle) for the thread and interop API."""

from __future__ import annotations

import types

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread
import pytest

#: The names both libraries have at the top level, under the same meaning.
_SHARED = (
    "to_thread",
    "from_thread",
    "CancelScope",
    "move_on_after",
    "create_task_group",
    "CapacityLimiter",
    "Event",
    "sleep",
    "get_cancelled_exc_class",
)


@pytest.fixture(params=["toolcase_rs", "anyio"])
def tlib(request: pytest.FixtureRequest) -> types.SimpleNamespace:
    if request.param == "anyio":
        module, current_token = anyio, anyio.lowlevel.current_token
    else:
        module = request.getfixturevalue("tc")  # skips while toolcase_rs is not importable
        current_token = module.lowlevel.current_token
    return types.SimpleNamespace(
        name=request.param,
        current_token=current_token,
        **{name: getattr(module, name) for name in _SHARED},
    )
