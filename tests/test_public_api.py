"""The public surface: `__all__`, the runtime objects and the native stub agree."""

from __future__ import annotations

import ast
import pathlib
import types

import toolcase_rs
from toolcase_rs import _toolcase_rs

STUB = pathlib.Path(toolcase_rs.__file__).with_name("_toolcase_rs.pyi")


def _stub_names() -> set[str]:
    tree = ast.parse(STUB.read_text())
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def test_every_name_in_all_exists_and_is_public():
    for name in toolcase_rs.__all__:
        obj = getattr(toolcase_rs, name)
        module = getattr(obj, "__module__", "toolcase_rs")
        assert module == "toolcase_rs", f"{name}.__module__ is {module!r}"


def test_all_is_sorted_and_unique():
    assert list(toolcase_rs.__all__) == sorted(set(toolcase_rs.__all__))


def test_native_exports_are_in_the_stub():
    missing = set(_toolcase_rs.__all__) - _stub_names()
    assert not missing, f"native names without a stub: {sorted(missing)}"


def test_stub_declares_nothing_the_runtime_lacks():
    phantom = {n for n in _stub_names() if not n.startswith("_")} - set(dir(_toolcase_rs))
    assert not phantom, f"stubbed but missing at runtime: {sorted(phantom)}"


def test_all_is_exactly_the_public_names_the_package_imports():
    """`__all__` is written out for static tools; it must match what the package imports."""
    imported = {
        name
        for name, value in vars(toolcase_rs).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(toolcase_rs.__all__) == imported
