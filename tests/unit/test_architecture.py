"""The house keeps its shape: one-way layers (import-linter contracts in pyproject.toml), a pure
core, and small units."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from importlinter import configuration
from importlinter.application import use_cases

from tests.conftest import REPO

PACKAGE = REPO / "mirror"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
# what touching the outside world looks like in an expression; core receives bytes and values
_IO_CALLS = frozenset({"open", "read_bytes", "read_text", "write_bytes", "write_text", "mkdir"})


def test_the_import_contracts_hold(capsys: pytest.CaptureFixture[str]) -> None:
    """Layers point down only, adapters are independent, no cycles (TYPE_CHECKING imports
    included), and core imports nothing that reaches files, sockets, clocks or processes."""
    configuration.configure()
    kept = use_cases.lint_imports(
        config_filename=str(REPO / "pyproject.toml"), no_logo=True, cache_dir=None
    )
    assert kept, capsys.readouterr().out


def python_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(path.relative_to(REPO)): n
        for path in python_files()
        if (n := path.read_text().count("\n")) > MAX_MODULE_LINES
    }
    assert long == {}


def test_no_function_is_over_60_lines() -> None:
    long = {}
    for path in python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(REPO)}:{node.lineno} {node.name}"] = length
    assert long == {}


def test_core_never_opens_files() -> None:
    """The forbidden contract keeps os/io/socket out of core; this catches pathlib I/O."""
    found = []
    for path in sorted((PACKAGE / "core").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                if name in _IO_CALLS:
                    found.append(f"{path.relative_to(REPO)}:{node.lineno} {name}()")
    assert found == []
