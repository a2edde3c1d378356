"""Drop folders watched by real watchdog observers: a polled folder sees what inotify cannot
(files written on the far side of a FUSE share), and never takes a file before it is complete."""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mirror.adapters.mounts import filesystem_type, read_mounts
from mirror.adapters.watcher import DropWatcher, WatchedFolder
from mirror.core.watch_modes import WatchMode, decide_watch_mode
from tests.conftest import run_cli
from tests.support.builder import PackageSpec, package_bytes
from tests.support.daemon_proc import DaemonProcess, free_port, wait_for
from tests.support.fuse_share import fuse_share

POLL_S = 0.1


class Seen:
    """What the watcher reported: (path, size when reported, monotonic time), and event kinds."""

    def __init__(self) -> None:
        self.ready: list[tuple[Path, int, float]] = []
        self.kinds: list[str] = []
        self._lock = threading.Lock()

    def on_ready(self, _channel: str, path: Path, ready_at: float) -> None:
        with self._lock:
            self.ready.append((path, path.stat().st_size, ready_at))

    def on_event(self, kind: str) -> None:
        with self._lock:
            self.kinds.append(kind)

    def paths(self) -> set[Path]:
        with self._lock:
            return {path for path, _size, _at in self.ready}


def watching(folders: dict[Path, WatchedFolder], seen: Seen) -> DropWatcher:
    watcher = DropWatcher(folders, on_ready=seen.on_ready, on_event=seen.on_event)
    watcher.start()
    return watcher


def polled(settle_s: float) -> WatchedFolder:
    return WatchedFolder("c", settle_s=settle_s, poll=True, poll_interval_s=POLL_S)


def test_a_polled_folder_takes_a_slowly_written_file_only_once_complete(tmp_path: Path) -> None:
    seen = Seen()
    watcher = watching({tmp_path: polled(settle_s=0.3)}, seen)
    target = tmp_path / "slow-1.0-0.conda"
    try:
        with target.open("wb") as handle:  # pauses shorter than the settle time, many polls
            for _ in range(8):
                assert seen.ready == [], "taken while still being written"
                handle.write(b"x" * 1000)
                handle.flush()
                last_write = time.monotonic()
                time.sleep(0.1)
        wait_for(lambda: seen.ready, timeout=10)
        time.sleep(0.3)
    finally:
        watcher.stop()
    ((path, size, ready_at),) = seen.ready
    assert path == target and size == 8000
    assert ready_at - last_write >= 0.3  # quiet for the settle time, not vouched for by a close
    assert "closed" not in seen.kinds and "created" in seen.kinds  # a poll never sees a close


def test_neither_a_close_nor_a_rename_shortens_the_wait_in_a_polled_folder(
    tmp_path: Path,
) -> None:
    """Event-watched: a quick copy is taken at its close. Polled: a copy and a rename into the
    folder both wait the settle time (a share's cached attributes may still be catching up)."""
    events_dir, poll_dir = tmp_path / "events", tmp_path / "poll"
    events_dir.mkdir()
    poll_dir.mkdir()
    (poll_dir / "renamed-1.0-0.conda.part").write_bytes(b"z" * 100)
    seen = Seen()
    watcher = watching(
        {events_dir: WatchedFolder("c", settle_s=1.0), poll_dir: polled(settle_s=1.0)}, seen
    )
    try:
        time.sleep(3 * POLL_S)  # the polls know the .part file
        written = {}
        for path in (events_dir / "quick-1.0-0.conda", poll_dir / "quick-1.0-0.conda"):
            path.write_bytes(b"y" * 100)
            written[path] = time.monotonic()
        renamed = poll_dir / "renamed-1.0-0.conda"
        (poll_dir / "renamed-1.0-0.conda.part").rename(renamed)
        written[renamed] = time.monotonic()
        wait_for(lambda: len(seen.ready) == 3, timeout=10)
    finally:
        watcher.stop()
    waited = {path: ready_at - written[path] for path, _size, ready_at in seen.ready}
    assert waited[events_dir / "quick-1.0-0.conda"] < 1.0
    assert waited[poll_dir / "quick-1.0-0.conda"] >= 1.0
    assert waited[renamed] >= 1.0
    assert "moved" in seen.kinds  # the poll saw the rename as such


def test_inotify_misses_writes_behind_a_fuse_share_and_polling_sees_them(tmp_path: Path) -> None:
    """Files written into the backing folder of a FUSE mount stand for files another host
    writes into an NFS or SMB share: the native observer on the mount never hears of them."""
    with (
        fuse_share(tmp_path / "backing-a", tmp_path / "share-a") as share_a,
        fuse_share(tmp_path / "backing-b", tmp_path / "share-b") as share_b,
    ):
        seen = Seen()
        watcher = watching(
            {share_a: WatchedFolder("c", settle_s=0.2), share_b: polled(settle_s=0.2)}, seen
        )
        try:
            (tmp_path / "backing-a" / "far-1.0-0.conda").write_bytes(b"a" * 100)
            (tmp_path / "backing-b" / "far-1.0-0.conda").write_bytes(b"b" * 100)
            wait_for(lambda: share_b / "far-1.0-0.conda" in seen.paths(), timeout=10)
            time.sleep(1.0)  # ten poll intervals: the events side had every chance
            assert share_a / "far-1.0-0.conda" not in seen.paths()
            # the control: a write made through the mount itself is heard on the events side
            (share_a / "near-1.0-0.conda").write_bytes(b"c" * 100)
            wait_for(lambda: share_a / "near-1.0-0.conda" in seen.paths(), timeout=10)
        finally:
            watcher.stop()


def test_a_polled_folder_that_disappears_is_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A polling observer stops for good when its folder is gone: say so, loudly."""
    folder = tmp_path / "share"
    folder.mkdir()
    watcher = watching({folder: polled(settle_s=0.2)}, Seen())
    try:
        with caplog.at_level(logging.ERROR, logger="mirror.adapters.watcher"):
            folder.rmdir()
            wait_for(lambda: f"drop folder {folder} disappeared" in caplog.text, timeout=10)
    finally:
        watcher.stop()


# -- the daemon ----------------------------------------------------------------------------


def write_config(base: Path, port: int, folders: list[object]) -> Path:
    document = {
        "root": "tree",
        "state_dir": "state",
        "metrics": {"listen": f"127.0.0.1:{port}"},
        "watch": {"settle_s": 0.2, "debounce_s": 0.1, "poll_interval_s": 0.2},
        "channels": {"local": {"subdirs": ["noarch"], "drop_folders": folders}},
    }
    path = base / "mirror.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def published(base: Path) -> set[str]:
    path = base / "tree" / "local" / "noarch" / "repodata.json"
    data = json.loads(path.read_bytes()) if path.exists() else {}
    return set(data.get("packages.conda", {}))


def folders_in_status(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    (row,) = [r for r in rows if (r["channel"], r["subdir"]) == ("local", "noarch")]
    return list(row["drop_folders"])


def test_the_daemon_reports_each_folders_mode_in_log_metrics_and_status(tmp_path: Path) -> None:
    for name in ("drops", "polled"):
        (tmp_path / name).mkdir()
    port = free_port()
    config = write_config(tmp_path, port, ["drops", {"path": "polled", "mode": "poll"}])
    fs_type = filesystem_type(tmp_path / "drops", read_mounts())
    auto = decide_watch_mode(WatchMode.AUTO, fs_type).mode  # events on a local disk
    with DaemonProcess(config, tmp_path / "daemon.log", port) as daemon:
        daemon.start()
        assert f"drop folder 0 {tmp_path / 'drops'}: {auto}" in daemon.text()
        assert (
            f"drop folder 1 {tmp_path / 'polled'}: poll every 0.2 s (configured)" in daemon.text()
        )
        modes = {
            (index, mode): daemon.metric(
                "conda_mirror_watch_mode", channel="local", folder_index=index, mode=mode
            )
            for index in ("0", "1")
            for mode in ("events", "poll")
        }
        assert modes == {
            ("0", "events"): float(auto == "events"),
            ("0", "poll"): float(auto == "poll"),
            ("1", "events"): 0.0,
            ("1", "poll"): 1.0,
        }
        spec = PackageSpec("polled", "1.0")
        (tmp_path / "polled" / spec.filename).write_bytes(package_bytes(spec))
        wait_for(lambda: spec.filename in published(tmp_path), timeout=20)
        served = httpx.get(f"http://127.0.0.1:{port}/status.json", timeout=5).json()
        status = run_cli(["status", "--config", str(config), "--json"])
        for rows in (served, json.loads(status.stdout)):
            assert folders_in_status(rows) == [
                {
                    "path": str(tmp_path / "drops"),
                    "watch_mode": auto,
                    "filesystem": fs_type,
                    "poll_interval_s": 0.2 if auto == "poll" else None,
                },
                {
                    "path": str(tmp_path / "polled"),
                    "watch_mode": "poll",
                    "filesystem": fs_type,
                    "poll_interval_s": 0.2,
                },
            ]
        table = run_cli(["status", "--config", str(config)]).stdout
        assert f"local[1]  poll every 0.2 s ({fs_type})  {tmp_path / 'polled'}" in table
        daemon.stop()


def test_a_reload_watches_a_folder_in_its_new_mode(tmp_path: Path) -> None:
    (tmp_path / "drops").mkdir()
    port = free_port()
    config = write_config(tmp_path, port, [{"path": "drops", "mode": "events"}])
    with DaemonProcess(config, tmp_path / "daemon.log", port) as daemon:
        daemon.start()
        labels = {"channel": "local", "folder_index": "0"}
        assert daemon.metric("conda_mirror_watch_mode", mode="events", **labels) == 1
        write_config(tmp_path, port, [{"path": "drops", "mode": "poll", "poll_interval_s": 0.1}])
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: daemon.metric("conda_mirror_watch_mode", mode="poll", **labels) == 1)
        assert daemon.metric("conda_mirror_watch_mode", mode="events", **labels) == 0
        assert "drop folder 0" in daemon.text() and "poll every 0.1 s (configured)" in daemon.text()
        daemon.stop()


def test_auto_polls_a_fuse_share_and_publishes_what_the_far_side_writes(tmp_path: Path) -> None:
    port = free_port()
    with fuse_share(tmp_path / "backing", tmp_path / "share"):
        config = write_config(tmp_path, port, ["share"])
        check = yaml.safe_load(run_cli(["check-config", "--config", str(config)]).stdout)
        (folder,) = check["channels"]["local"]["drop_folders"]
        assert folder["mode"] == "auto"
        assert folder["watched_by"] == "poll every 0.2 s (auto: fuse is a network or FUSE fs)"
        with DaemonProcess(config, tmp_path / "daemon.log", port) as daemon:
            daemon.start()
            assert daemon.metric(
                "conda_mirror_watch_mode", channel="local", folder_index="0", mode="poll"
            )
            spec = PackageSpec("far", "1.0")
            (tmp_path / "backing" / spec.filename).write_bytes(package_bytes(spec))
            wait_for(lambda: spec.filename in published(tmp_path), timeout=20)
            assert not (tmp_path / "backing" / spec.filename).exists()  # taken from the share
            rows = httpx.get(f"http://127.0.0.1:{port}/status.json", timeout=5).json()
            (folder,) = folders_in_status(rows)
            assert (folder["watch_mode"], folder["filesystem"]) == ("poll", "fuse")
            daemon.stop()
