"""One writer per tree, whoever writes: the lock is keyed to the tree, no child holds it after
its parent is killed, and `mirror index` never rebuilds a channel others keep."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, run_cli, write_config
from tests.support.builder import PackageSpec, build_channel, build_package


def children_of(pid: int) -> set[int]:
    """Live processes whose parent is `pid` (from /proc: no third-party library needed)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry.name))
    return found


def descendants_of(pid: int) -> set[int]:
    """Children, their children, and so on (pool workers may be forked from a server)."""
    found = children_of(pid)
    for child in list(found):
        found |= descendants_of(child)
    return found


def pool_workers(pid: int) -> set[int]:
    """The descendants that read packages: not multiprocessing's resource tracker, not a fork
    server (a descendant with children of its own)."""
    workers = set()
    for candidate in descendants_of(pid):
        try:
            command = (Path("/proc") / str(candidate) / "cmdline").read_bytes()
        except OSError:
            continue
        if b"resource_tracker" not in command and not children_of(candidate):
            workers.add(candidate)
    return workers


def alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(condition: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_kill_9_of_index_leaves_no_worker_and_the_next_run_takes_the_tree(tmp_path: Path) -> None:
    channel = tmp_path / "chan"
    payload = {"share/blob.bin": os.urandom(400_000)}  # enough reading to catch the pool busy
    for i in range(120):
        build_package(
            PackageSpec(f"p{i:03d}", "1.0", fmt=".tar.bz2", files=payload), channel / "noarch"
        )
    proc = subprocess.Popen(
        [sys.executable, "-m", "mirror", "index", str(channel), "--workers", "2"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert wait_for(lambda: len(pool_workers(proc.pid)) >= 2, 30), "no worker started"
        everyone = descendants_of(proc.pid)  # the workers, and whatever started them
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert wait_for(lambda: not any(alive(p) for p in everyone), 5), "workers outlived it"
    finally:
        if proc.poll() is None:
            proc.kill()
    result = run_cli(["index", str(channel)])
    assert result.code == 0, result.stderr
    assert "another mirror process" not in result.stderr


def test_index_refuses_a_mirrored_channel_and_names_its_config(tmp_path: Path) -> None:
    build_channel(tmp_path / "up", [PackageSpec("a", "1.0")])
    config = write_config(tmp_path, {"cf": {"upstream": "up", "subdirs": ["noarch"]}})
    assert run_cli(["sync", "--config", str(config)]).code == 0
    published = (tmp_path / "tree" / "cf" / "noarch" / "repodata.json").read_bytes()

    result = run_cli(["index", str(tmp_path / "tree" / "cf")])

    assert result.code == 2
    assert "mirrored channel" in result.stderr and str(config) in result.stderr
    assert "mirror sync" in result.stderr
    assert (tmp_path / "tree" / "cf" / "noarch" / "repodata.json").read_bytes() == published
    assert not any(p.name.startswith(".mirror-state") for p in (tmp_path / "tree").iterdir())


def test_index_of_a_daemons_local_channel_works_through_the_daemons_catalog(
    tmp_path: Path,
) -> None:
    """Not through a catalog of its own: the next drop would publish an index without it."""
    drops = tmp_path / "drops"
    drops.mkdir()
    config = write_config(tmp_path, {"local": {"subdirs": ["noarch"], "drop_folders": ["drops"]}})
    channel = tmp_path / "tree" / "local"
    build_package(PackageSpec("first", "1.0"), channel / "noarch")
    assert run_cli(["index", str(channel)]).code == 0  # before any daemon: its own state
    state = tmp_path / "state"
    # what the daemon's worker writes for its channels when it starts
    from mirror.adapters.store import ChannelMarker, local_tree

    local_tree(tmp_path / "tree").mark_channel(
        "local", ChannelMarker("local", str(state), str(config))
    )
    build_package(PackageSpec("second", "1.0"), channel / "noarch")
    result = run_cli(["index", str(channel)])
    assert result.code == 0, result.stderr
    assert (state / "catalog.sqlite").exists()
    other = run_cli(["index", str(channel), "--state-dir", str(tmp_path / "mine")])
    assert other.code == 2 and str(state) in other.stderr


@pytest.mark.parametrize("command", ["index", "sync"])
def test_the_state_dir_is_never_inside_the_published_tree(tmp_path: Path, command: str) -> None:
    build_channel(tmp_path / "up", [PackageSpec("a", "1.0")])
    config = write_config(tmp_path, {"cf": {"upstream": "up", "subdirs": ["noarch"]}})
    if command == "sync":
        assert run_cli(["sync", "--config", str(config)]).code == 0
    else:
        build_package(PackageSpec("b", "1.0"), tmp_path / "tree" / "loc" / "noarch")
        assert run_cli(["index", str(tmp_path / "tree" / "loc")]).code == 0
    leftovers = [
        p.relative_to(tmp_path / "tree")
        for p in (tmp_path / "tree").rglob("*")
        if p.name.startswith(".") and p.name not in (".mirror-lock", ".mirror-channel.json")
    ]
    assert leftovers == []
