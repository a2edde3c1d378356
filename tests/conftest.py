"""Shared fixtures: a real upstream channel of real package files, served on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from mirror.config import load_config
from mirror.reports import SyncReport
from mirror.sync.run import SyncOptions, run_sync
from tests.support.builder import PackageSpec, build_channel
from tests.support.upstream_server import UpstreamServer

REPO = Path(__file__).resolve().parents[1]
SHARED_REAL = REPO.parent / "shared" / "testdata" / "real"
E2E_DIR = Path(__file__).resolve().parent / "e2e"


@pytest.fixture(autouse=True)
def _state_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """`mirror index` keeps its default state under $XDG_STATE_HOME: never the tester's home."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("xdg-state")))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests under tests/e2e/ (servers, subprocesses, real clients) are marked `e2e`, so the
    everyday run is `pytest -m "not e2e"`; the README's command runs both tiers."""
    for item in items:
        if E2E_DIR in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.e2e)


def world_specs() -> list[PackageSpec]:
    """A small upstream with dependencies across linux-64 and noarch, both formats."""
    specs = [
        PackageSpec("zlib", "1.2.13", build="h0_0", subdir="linux-64"),
        PackageSpec("zlib", "1.3.1", build="h0_0", subdir="linux-64"),
        PackageSpec("zlib", "1.3.1", build="h0_0", subdir="linux-64", fmt=".tar.bz2"),
        PackageSpec("libfoo", "1.9", build="h1_0", subdir="linux-64", depends=("zlib >=1.2",)),
        PackageSpec("libfoo", "1.10", build="h1_0", subdir="linux-64", depends=("zlib >=1.3",)),
        PackageSpec(
            "libfoo",
            "1.10",
            build="h1_1",
            build_number=1,
            subdir="linux-64",
            depends=("zlib >=1.3",),
        ),
        PackageSpec(
            "tool",
            "0.5",
            build="h2_0",
            subdir="linux-64",
            depends=("libfoo >=1.10",),
            license="GPL-3.0-only",
            license_family="GPL",
        ),
        PackageSpec("pyapp", "2.0", build="pyh_0", depends=("libfoo >=1.9", "appdata")),
        PackageSpec("appdata", "2024.1", build="0"),
    ]
    return specs


@pytest.fixture
def upstream_dir(tmp_path: Path) -> Path:
    root = tmp_path / "upstream"
    build_channel(root, world_specs())
    return root


@pytest.fixture
def server(upstream_dir: Path) -> Iterator[UpstreamServer]:
    with UpstreamServer(upstream_dir) as srv:
        yield srv


@dataclass
class Site:
    """A mirror site in a temp dir: a config file, its tree and its state."""

    base: Path
    config_path: Path

    @property
    def root(self) -> Path:
        return self.base / "tree"

    @property
    def state(self) -> Path:
        return self.base / "state"

    def subdir(self, channel: str, subdir: str) -> Path:
        return self.root / channel / subdir

    def packages(self, channel: str = "up", subdir: str = "linux-64") -> set[str]:
        directory = self.subdir(channel, subdir)
        if not directory.exists():
            return set()
        return {p.name for p in directory.iterdir() if p.name.endswith((".conda", ".tar.bz2"))}

    def sync(self, **options: Any) -> SyncReport:
        env = options.pop("env", None)
        config = load_config(self.config_path)
        return run_sync(config, SyncOptions(**options), env=env)


def write_config(base: Path, channels: dict[str, dict[str, Any]], **top: Any) -> Path:
    document = {
        "root": "tree",
        "state_dir": "state",
        "retry_backoff_s": 0.01,
        **top,
        "channels": channels,
    }
    path = base / "mirror.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@pytest.fixture
def make_site(tmp_path: Path) -> Any:
    def make(upstream: str, **channel: Any) -> Site:
        top = channel.pop("top", {})
        settings = {"upstream": upstream, "subdirs": ["linux-64", "noarch"], **channel}
        base = tmp_path / "site"
        base.mkdir(exist_ok=True)
        return Site(base, write_config(base, {"up": settings}, **top))

    return make


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str


def run_cli(
    args: Sequence[str], env: dict[str, str] | None = None, timeout: float = 120
) -> CliResult:
    """Run the real `mirror` command in a subprocess (real exit codes, real signal handling)."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("MIRROR_CONFIG", None) if env is None or "MIRROR_CONFIG" not in env else None
    proc = subprocess.run(
        [sys.executable, "-m", "mirror", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=REPO,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr)
