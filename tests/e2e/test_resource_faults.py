"""Resource faults: a full disk, a read-only tree, a locked, lost or damaged state database.

Each fault gets a clear message naming the file and what to do, a non-zero exit, and leaves
what was published byte for byte as it was; the next run after the fault is gone completes.
The disk is a real small tmpfs when we may mount one (root); otherwise, and in addition, the
full disk is injected as ENOSPC from fsync (what NFS and quota'd disks report), in-process.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import logging
import os
import random
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zstandard

from mirror import cli
from mirror.adapters.catalog import Catalog
from mirror.adapters.store import QUARANTINE_DIR, Quarantine, local_tree
from mirror.config import load_config
from mirror.core.shards import SHARD_INDEX_NAME, read_shard_index
from mirror.errors import CatalogError
from mirror.local.indexer import IndexContext, index_channel
from tests.conftest import CliResult, run_cli, write_config
from tests.support.builder import PackageSpec, build_channel, build_package, write_repodata
from tests.support.daemon_proc import DaemonProcess, free_port, wait_for
from tests.support.upstream_server import UpstreamServer

PAGE = 4096
BIG = PackageSpec(
    "bigdata",
    "1.0",
    build="h0_0",
    subdir="linux-64",
    files={"share/bigdata/blob.bin": random.Random(7).randbytes(384 << 10)},  # incompressible
)
EXTRA = [
    PackageSpec("extra-a", "1.0", build="h0_0", subdir="linux-64"),
    PackageSpec("extra-b", "2.0", build="h0_0", subdir="linux-64"),
]
NO_SPACE = ("no space left on device", "the disk is full")


def small_world() -> list[PackageSpec]:
    return [
        PackageSpec("zlib", "1.3.1", build="h0_0", subdir="linux-64"),
        PackageSpec("libfoo", "1.10", build="h1_0", subdir="linux-64", depends=("zlib >=1.3",)),
        PackageSpec("appdata", "2024.1", build="0"),
    ]


# -- the file systems ---------------------------------------------------------------------------


class Disk:
    """The tree's file system; `fill` leaves about `leave_bytes` free, `free` undoes it."""

    kind = ""
    root: Path

    def fill(self, leave_bytes: int = 0) -> None:
        raise NotImplementedError

    def free(self) -> None:
        raise NotImplementedError


class Tmpfs(Disk):
    """A real tmpfs mounted on `root` (needs root); a filler file beside the tree takes space."""

    kind = "tmpfs"

    def __init__(self, root: Path, size_kb: int) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        _mount("-t", "tmpfs", "-o", f"size={size_kb}k,mode=0755", "tmpfs", str(root))
        self.filler = root / "filler.bin"

    def free_bytes(self) -> int:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def fill(self, leave_bytes: int = 0) -> None:
        leave = -(-leave_bytes // PAGE) * PAGE
        with open(self.filler, "ab") as handle, contextlib.suppress(OSError):
            handle.write(b"\0" * max(0, self.free_bytes() - leave))  # ENOSPC at the end is fine
        assert abs(self.free_bytes() - leave) <= PAGE, (self.free_bytes(), leave)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def read_only(self, ro: bool) -> None:
        _mount("-o", f"remount,{'ro' if ro else 'rw'}", str(self.root))

    def unmount(self) -> None:
        if subprocess.run(["umount", str(self.root)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(self.root)], capture_output=True)


class InjectedFull(Disk):
    """No mount possible: fsync of a file under `root` fails with ENOSPC while "full" (network
    shares and quotas report a full disk that late). Works only in-process."""

    kind = "injected"

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.full = False
        self.only: Callable[[str], bool] = lambda path: True
        real_fsync = os.fsync

        def fsync(fd: int) -> None:
            path = os.readlink(f"/proc/self/fd/{fd}")
            if self.full and path.startswith(f"{self.root}/") and self.only(path):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)

    def fill(self, leave_bytes: int = 0) -> None:
        self.full = True

    def free(self) -> None:
        self.full = False


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True)


def _can_mount() -> str | None:
    """None when a tmpfs can be mounted here, else why not."""
    if os.geteuid() != 0:
        return "needs root to mount a tmpfs (the injected variant covers this case)"
    return None


@contextlib.contextmanager
def tmpfs_at(root: Path, size_kb: int) -> Iterator[Tmpfs]:
    reason = _can_mount()
    if reason:
        pytest.skip(reason)
    try:
        fs = Tmpfs(root, size_kb)
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        pytest.skip(f"cannot mount a tmpfs here: {getattr(exc, 'stderr', exc)}")
    try:
        yield fs
    finally:
        fs.unmount()


@pytest.fixture(params=["tmpfs", "injected"])
def disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Disk]:
    """The tree's disk (tmp_path/site/tree), 1 MiB; both variants of every full-disk test."""
    root = tmp_path / "site" / "tree"
    if request.param == "injected":
        yield InjectedFull(root, request.getfixturevalue("monkeypatch"))
        return
    with tmpfs_at(root, 1024) as fs:
        yield fs


# -- the upstream -------------------------------------------------------------------------------


class HookedUpstream(UpstreamServer):
    """The loopback upstream, calling `on_request(path)` before it answers each request."""

    on_request: Callable[[str], None] = staticmethod(lambda path: None)

    def _take_fault(self, match_path: str) -> str | None:
        self.on_request(match_path)
        return super()._take_fault(match_path)


@dataclass
class World:
    upstream: Path
    server: HookedUpstream
    base: Path
    config: Path

    @property
    def tree(self) -> Path:
        return self.base / "tree"

    @property
    def state(self) -> Path:
        return self.base / "state"

    def subdir(self, subdir: str = "linux-64") -> Path:
        return self.tree / "up" / subdir

    def publish_upstream(self, specs: list[PackageSpec]) -> None:
        """Rebuild the upstream with these packages; every record carries a key and a
        dependency that only upstream's repodata has (a repodata patch), never the files."""
        records = build_channel(self.upstream, specs)
        for subdir, by_name in records.items():
            for record in by_name.values():
                record["x_upstream_only"] = "patched"
                record["depends"] = [*record.get("depends", []), "patched-dep"]
            write_repodata(self.upstream, subdir, by_name)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    upstream = tmp_path / "upstream"
    base = tmp_path / "site"
    base.mkdir()
    (base / "tree").mkdir()
    server = HookedUpstream(upstream)
    with server:
        config = write_config(
            base,
            {"up": {"upstream": server.url, "subdirs": ["linux-64", "noarch"], "workers": 2}},
            free_space_margin=0,
            retries=1,
        )
        w = World(upstream, server, base, config)
        w.publish_upstream(small_world())
        yield w


# -- checks -------------------------------------------------------------------------------------


INDEX_FILES = ("repodata.json", "repodata.json.zst", "repodata_shards.msgpack.zst")


def published(world: World) -> dict[str, bytes]:
    return {
        f"{s}/{name}": (world.subdir(s) / name).read_bytes()
        for s in ("linux-64", "noarch")
        for name in INDEX_FILES
    }


def same_index(now: dict[str, bytes], before: dict[str, bytes]) -> bool:
    """Byte-identical repodata, and shard indexes naming the same shards."""
    for name, data in now.items():
        if name.endswith(SHARD_INDEX_NAME):
            if read_shard_index(data) != read_shard_index(before[name]):
                return False
        elif data != before[name]:
            return False
    return now.keys() == before.keys()


def assert_valid(directory: Path) -> dict[str, Any]:
    """repodata.json parses and the .zst holds exactly the same bytes."""
    data = (directory / "repodata.json").read_bytes()
    reader = zstandard.ZstdDecompressor().stream_reader(
        (directory / "repodata.json.zst").read_bytes()
    )
    assert reader.read() == data
    doc: dict[str, Any] = json.loads(data)
    return doc


def temp_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob(".mirror-*.tmp") if p.is_file())


def catalog_rows(state: Path) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(state / "catalog.sqlite")) as db:
        return sorted(
            db.execute("SELECT channel, subdir, filename, size, sha256, record FROM files")
        )


def records_of(world: World, subdir: str = "linux-64") -> dict[str, Any]:
    doc = json.loads((world.subdir(subdir) / "repodata.json").read_bytes())
    return {**doc["packages"], **doc["packages.conda"]}


def mirror(args: list[str], disk: Disk | None = None) -> CliResult:
    """The real command: a subprocess, or in-process when the fault is injected in-process."""
    if disk is None or disk.kind != "injected":
        return run_cli(args)
    return _cli_in_process(args)


def _cli_in_process(args: list[str]) -> CliResult:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.run(args)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    return CliResult(code, out.getvalue(), err.getvalue())


def assert_clear_failure(result: CliResult, *needles: str) -> str:
    """Exit 1, no traceback, and every needle (case-insensitive) in what the user sees."""
    text = (result.stdout + result.stderr).lower()
    assert result.code == 1, result
    assert "traceback" not in text and "internal error" not in text, result.stderr
    for needle in needles:
        assert needle.lower() in text, (needle, result.stderr)
    return text


def assert_verify_clean(world: World) -> None:
    result = run_cli(["verify", "--full", "--config", str(world.config)])
    assert result.code == 0, result


# -- 1. a full disk -----------------------------------------------------------------------------


def test_disk_full_mid_download_names_the_file_keeps_the_index_and_the_next_run_completes(
    world: World, disk: Disk
) -> None:
    assert mirror(["sync", "--config", str(world.config)], disk).code == 0
    before, rows_before = published(world), catalog_rows(world.state)
    world.publish_upstream([*small_world(), BIG])

    def fill_when_big_is_asked_for(path: str) -> None:
        if path.endswith(BIG.filename):
            disk.fill(leave_bytes=64 << 10)  # the file is 384 KiB: it cannot fit

    world.server.on_request = fill_when_big_is_asked_for
    result = mirror(["sync", "--config", str(world.config)], disk)

    text = assert_clear_failure(result, BIG.filename, str(world.subdir()), "free some space")
    assert any(n in text for n in NO_SPACE), result.stderr
    assert published(world) == before
    for subdir in ("linux-64", "noarch"):
        assert_valid(world.subdir(subdir))
    assert temp_files(world.tree) == []
    assert not (world.subdir() / BIG.filename).exists()
    assert catalog_rows(world.state) == rows_before

    world.server.on_request = lambda path: None
    disk.free()
    assert mirror(["sync", "--config", str(world.config)], disk).code == 0
    assert BIG.filename in records_of(world)
    assert temp_files(world.tree) == []
    assert_verify_clean(world)


def test_disk_full_while_writing_the_index_keeps_the_old_index_and_downloads_nothing_again(
    world: World, disk: Disk
) -> None:
    assert mirror(["sync", "--config", str(world.config)], disk).code == 0
    before, rows_before = published(world), catalog_rows(world.state)
    world.publish_upstream([*small_world(), *EXTRA])
    new_records = records_of_upstream(world, [s.filename for s in EXTRA])
    if isinstance(disk, InjectedFull):
        disk.only = lambda path: "/shards/" in path  # the packages land, the index does not
    # room for the new package files, page for page, and not one page more
    disk.fill(leave_bytes=sum(-(-r["size"] // PAGE) * PAGE for r in new_records.values()))

    result = mirror(["sync", "--config", str(world.config)], disk)

    text = assert_clear_failure(result, str(world.subdir()), "free some space")
    assert any(n in text for n in NO_SPACE), result.stderr
    assert published(world) == before
    assert_valid(world.subdir())
    assert temp_files(world.tree) == []
    assert {s.filename for s in EXTRA} <= {p.name for p in world.subdir().iterdir()}
    rows = catalog_rows(world.state)
    assert set(rows_before) <= set(rows)  # the new files are known, nothing was forgotten
    assert {r[2] for r in rows} - {r[2] for r in rows_before} == {s.filename for s in EXTRA}

    disk.free()
    world.server.clear_log()
    assert mirror(["sync", "--config", str(world.config)], disk).code == 0
    assert world.server.count("*.conda") == 0  # verified in place, not fetched again
    assert {s.filename for s in EXTRA} <= set(records_of(world))
    assert_verify_clean(world)


def records_of_upstream(world: World, filenames: list[str]) -> dict[str, Any]:
    doc = json.loads((world.upstream / "linux-64" / "repodata.json").read_bytes())
    records = {**doc["packages"], **doc["packages.conda"]}
    return {name: records[name] for name in filenames}


def test_index_of_a_local_channel_on_a_full_disk_fails_clearly_and_recovers(
    disk: Disk,
) -> None:
    channel = disk.root / "local"
    for spec in small_world():
        build_package(spec, channel / spec.subdir)
    index = ["index", str(channel), "--workers", "1"]
    assert mirror(index, disk).code == 0
    names = ("linux-64/repodata.json", "linux-64/repodata.json.zst")
    before = {name: (channel / name).read_bytes() for name in names}
    build_package(EXTRA[0], channel / "linux-64")
    disk.fill(leave_bytes=0)  # the state database lives on this disk too (the default)

    result = mirror(index, disk)

    # the state database (tmpfs) or the index files (injected) name the place that is full
    text = assert_clear_failure(result, str(disk.root), "free some space")
    assert any(n in text for n in NO_SPACE), result.stderr
    assert {p: (channel / p).read_bytes() for p in before} == before
    assert_valid(channel / "linux-64")
    assert temp_files(disk.root) == []

    disk.free()
    assert mirror(index, disk).code == 0
    doc = assert_valid(channel / "linux-64")
    assert EXTRA[0].filename in doc["packages.conda"]
    assert temp_files(disk.root) == []


# -- 2. a read-only tree ------------------------------------------------------------------------


def test_a_sync_with_nothing_to_do_succeeds_on_a_read_only_tree(world: World) -> None:
    """It used to exit 1: `cannot delete .../channeldata.json: Read-only file system`, for a
    file that does not exist (unlink of a missing file fails with EROFS there)."""
    with tmpfs_at(world.tree, 2048) as fs:
        assert run_cli(["sync", "--config", str(world.config)]).code == 0
        before = published(world)
        fs.read_only(True)
        try:
            result = run_cli(["sync", "--config", str(world.config)])
        finally:
            fs.read_only(False)
        assert result.code == 0, result.stderr
        assert published(world) == before


def test_a_read_only_tree_fails_sync_and_index_clearly_and_loses_nothing(
    world: World, tmp_path: Path
) -> None:
    with tmpfs_at(world.tree, 2048) as fs:
        assert run_cli(["sync", "--config", str(world.config)]).code == 0
        local = world.tree / "local"
        build_package(small_world()[0], local / "linux-64")
        state = ["--state-dir", str(tmp_path / "local-state")]
        assert run_cli(["index", str(local), *state]).code == 0
        before = published(world)
        local_before = (local / "linux-64" / "repodata.json").read_bytes()
        world.publish_upstream([*small_world(), EXTRA[0]])
        build_package(EXTRA[1], local / "linux-64")
        fs.read_only(True)
        try:
            synced = run_cli(["sync", "--config", str(world.config)])
            indexed = run_cli(["index", str(local), *state])
        finally:
            fs.read_only(False)

        assert_clear_failure(synced, EXTRA[0].filename, str(world.subdir()), "read-only")
        assert_clear_failure(indexed, str(local / "linux-64"), "read-only")
        assert published(world) == before
        assert (local / "linux-64" / "repodata.json").read_bytes() == local_before
        assert temp_files(world.tree) == []

        assert run_cli(["sync", "--config", str(world.config)]).code == 0
        assert EXTRA[0].filename in records_of(world)
        assert run_cli(["index", str(local), *state]).code == 0
        assert EXTRA[1].filename in assert_valid(local / "linux-64")["packages.conda"]
        assert_verify_clean(world)


# -- 3. the state database ----------------------------------------------------------------------


@contextlib.contextmanager
def held_write_lock(path: Path) -> Iterator[None]:
    """Another program holding a write transaction on the state database."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN EXCLUSIVE")
    try:
        yield
    finally:
        db.execute("ROLLBACK")
        db.close()


def test_a_locked_state_database_is_waited_for_briefly_then_named_in_a_clear_error(
    world: World,
) -> None:
    assert run_cli(["sync", "--config", str(world.config)]).code == 0
    path = world.state / "catalog.sqlite"
    rows = catalog_rows(world.state)

    with held_write_lock(path), Catalog(path, busy_timeout_s=0.3) as catalog:
        started = time.monotonic()
        with pytest.raises(CatalogError) as caught, catalog.transaction():
            pass
        assert time.monotonic() - started < 5
    message = str(caught.value)
    assert str(path) in message and "locked" in message and "another" in message

    # a lock held for a moment: the sync waits for it and then does its work
    world.publish_upstream([*small_world(), EXTRA[0]])
    with held_write_lock(path):
        proc = subprocess.Popen(
            [sys.executable, "-m", "mirror", "sync", "--config", str(world.config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.5)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert EXTRA[0].filename in records_of(world)
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    after = {row[2] for row in catalog_rows(world.state)}
    assert after == {row[2] for row in rows} | {EXTRA[0].filename}


def _damage_deleted(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _damage_garbage(path: Path) -> None:
    _damage_deleted(path)
    path.write_bytes(random.Random(3).randbytes(64 << 10))


def _damage_truncated(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for suffix in ("-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    "damage", [_damage_deleted, _damage_garbage, _damage_truncated], ids=lambda f: f.__name__[8:]
)
def test_a_lost_or_damaged_state_database_is_rebuilt_from_the_tree_keeping_upstream_records(
    world: World, damage: Callable[[Path], None]
) -> None:
    assert run_cli(["sync", "--config", str(world.config)]).code == 0
    path = world.state / "catalog.sqlite"
    before = published(world)
    upstream_records = records_of(world)
    assert all(r["x_upstream_only"] == "patched" for r in upstream_records.values())
    damage(path)

    world.server.clear_log()
    first = run_cli(["sync", "--config", str(world.config)])
    if damage is not _damage_deleted:
        text = assert_clear_failure(first, str(path), "move it aside")
        assert "rebuilt" in text
        assert published(world) == before  # nothing was touched
        path.rename(path.with_name("catalog.sqlite.damaged"))
        for suffix in ("-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        world.server.clear_log()
        first = run_cli(["sync", "--config", str(world.config)])
    assert first.code == 0, first
    assert world.server.count("*.conda") == 0 and world.server.count("*.tar.bz2") == 0
    assert records_of(world) == upstream_records  # verbatim, indexed_timestamp included
    assert same_index(published(world), before)  # the shard index: a new created_at
    assert_verify_clean(world)

    world.server.clear_log()
    assert run_cli(["sync", "--config", str(world.config)]).code == 0
    assert world.server.count("*.conda") == 0 and world.server.count("*.tar.bz2") == 0


def test_reindexing_a_mirrored_tree_after_the_state_database_is_lost_keeps_upstream_records(
    world: World,
) -> None:
    """What the daemon does at start when the state database does not know a mirrored
    channel's published subdirs: index the tree. Upstream's records (patched, with keys the
    package files lack) must survive, and the files must stay mirrored ones."""
    assert run_cli(["sync", "--config", str(world.config)]).code == 0
    before, upstream_records = published(world), records_of(world)
    _damage_deleted(world.state / "catalog.sqlite")
    config = load_config(world.config)
    with Catalog(world.state / "catalog.sqlite") as catalog:
        ctx = IndexContext(
            tree=local_tree(config.root),
            catalog=catalog,
            quarantine=Quarantine(world.state / QUARANTINE_DIR),
            settings=config.channels[0].index,
            local_channel=False,
        )
        report = index_channel(ctx, "up", ["linux-64", "noarch"])
        origins = {f.origin for f in catalog.files("up", "linux-64").values()}
    assert report.quarantined == 0
    assert origins == {"mirror"}
    assert records_of(world) == upstream_records
    assert same_index(published(world), before)  # the shard index: a new created_at

    world.server.clear_log()
    world.publish_upstream(small_world()[1:])  # upstream drops zlib: a mirrored file, pruned
    sync = ["sync", "--config", str(world.config), "--allow-mass-delete"]  # 1 of 2 files
    assert run_cli(sync).code == 0
    assert world.server.count("*.conda") == 0
    assert small_world()[0].filename not in records_of(world)
    assert not (world.subdir() / small_world()[0].filename).exists()
    assert_verify_clean(world)


# -- 4. the daemon ------------------------------------------------------------------------------


def test_the_daemon_keeps_serving_metrics_through_a_full_disk_and_recovers_on_its_schedule(
    world: World,
) -> None:
    with tmpfs_at(world.tree, 1024) as fs:
        port = free_port()
        write_config(
            world.base,
            {
                "up": {
                    "upstream": world.server.url,
                    "subdirs": ["linux-64", "noarch"],
                    "schedule": {"interval_minutes": 0.02, "at_start": True},
                }
            },
            free_space_margin=0,
            retries=0,
            metrics={"listen": f"127.0.0.1:{port}"},
        )
        with DaemonProcess(world.config, world.base / "daemon.log", port).start() as daemon:
            wait_for(lambda: runs(daemon, "ok") >= 1)
            # the disk fills up while the big file is being downloaded
            world.server.on_request = lambda path: (
                fs.fill(leave_bytes=64 << 10) if path.endswith(BIG.filename) else None
            )
            world.publish_upstream([*small_world(), BIG])
            wait_for(lambda: runs(daemon, "failed") >= 1)
            assert "conda_mirror_build_info" in daemon.metrics()
            assert BIG.filename not in records_of(world)
            ok_before = runs(daemon, "ok")
            world.server.on_request = lambda path: None
            fs.free()
            wait_for(lambda: BIG.filename in records_of(world), timeout=30)
            wait_for(lambda: runs(daemon, "ok") > ok_before)
            code, _ = daemon.stop()
        assert code == 0
        log = daemon.text()
        assert "Traceback" not in log, log
        assert BIG.filename in log and "No space left on device" in log
        assert temp_files(world.tree) == []
        assert_verify_clean(world)


def runs(daemon: DaemonProcess, outcome: str) -> float:
    return daemon.metric("conda_mirror_sync_runs_total", channel="up", outcome=outcome)
