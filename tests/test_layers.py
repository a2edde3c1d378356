"""The layer picture of DESIGN.md stays true: imports only point down."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "mirror"

# module prefix -> the mirror modules it may import (besides itself and its own layer)
ALLOWED = {
    "mirror.errors": set(),
    "mirror.core": {"mirror.errors", "mirror.core"},
    "mirror.config": {"mirror.errors", "mirror.core", "mirror.config"},
    "mirror.adapters": {"mirror.errors", "mirror.core", "mirror.config", "mirror"},
}
USE_CASES = ("mirror.sync", "mirror.indexer", "mirror.downloads", "mirror.reports")


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
    return {name for name in found if name == "mirror" or name.startswith("mirror.")}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(name: str) -> str | None:
    return next(
        (prefix for prefix in ALLOWED if name == prefix or name.startswith(prefix + ".")), None
    )


def test_lower_layers_import_only_lower_layers() -> None:
    problems = []
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        layer = layer_of(name)
        if layer is None:
            continue
        for imported in imports_of(path):
            if imported == "mirror":  # the version string
                continue
            allowed = ALLOWED[layer]
            if not any(imported == a or imported.startswith(a + ".") for a in allowed):
                problems.append(f"{name} imports {imported}")
    assert problems == []


def adapter_of(name: str) -> str | None:
    """`mirror.adapters.archive.tar` -> `archive`: an adapter may be a module or a package."""
    parts = name.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["mirror", "adapters"] else None


def test_adapters_do_not_import_each_other() -> None:
    problems = []
    for path in (PACKAGE / "adapters").rglob("*.py"):
        name = module_name(path)
        for imported in imports_of(path):
            other = adapter_of(imported)
            if other is not None and other != adapter_of(name):
                problems.append(f"{name} imports {imported}")
    assert problems == []


def test_use_cases_never_import_the_cli() -> None:
    for name in USE_CASES:
        path = PACKAGE / (name.split(".", 1)[1] + ".py")
        assert "mirror.cli" not in imports_of(path), name


def test_core_does_no_io_setup() -> None:
    forbidden = {"logging", "socket", "httpx", "sqlite3", "os", "subprocess", "threading"}
    for path in (PACKAGE / "core").glob("*.py"):
        tree = ast.parse(path.read_text())
        names = {
            alias.name.split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import | ast.ImportFrom)
            for alias in (
                node.names if isinstance(node, ast.Import) else [ast.alias(node.module or "")]
            )
        }
        assert not names & forbidden, (path.name, names & forbidden)
