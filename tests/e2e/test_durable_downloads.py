"""Downloads are made durable a batch at a time, and nothing vouches for a file before that:
not the catalog, so no index either. A file that cannot be made durable is removed and named
in the report; the others are published.

Real parts: the loopback upstream server, real package files, in-process syncs, SQLite,
`mirror verify`. The file system's answers are observed (and, for the failure, injected as
ENOSPC from fsync, as a full network share reports it) by wrapping the store's calls.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from mirror.adapters.catalog import Catalog, CatalogFile
from mirror.adapters.store import local as local_store
from mirror.config import load_config
from mirror.errors import StoreError
from mirror.health.repair import run_verify
from mirror.reports import Outcome, SyncReport
from mirror.sync.run import SyncOptions, run_sync
from tests.conftest import write_config
from tests.support.builder import PackageSpec, build_channel
from tests.support.upstream_server import UpstreamServer

PACKAGES = 40  # past the 32 files a batch fsyncs one by one: one syncfs for them all
Channel = dict[str, dict[str, dict[str, Any]]]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Channel]:
    root = tmp_path_factory.mktemp("durable") / "upstream"
    specs = [
        PackageSpec(f"pkg{i:03d}", "1.0", build="h0_0", subdir="linux-64") for i in range(PACKAGES)
    ]
    return root, build_channel(root, specs)


def sync(config: Path) -> SyncReport:
    return run_sync(load_config(config), SyncOptions())


def published(config: Path) -> set[str]:
    doc = json.loads((config.parent / "tree" / "up" / "linux-64" / "repodata.json").read_bytes())
    return set(doc["packages"]) | set(doc["packages.conda"])


def test_no_file_enters_the_catalog_before_it_was_made_durable(
    upstream: tuple[Path, Channel], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    durable: set[str] = set()
    early: list[str] = []
    make_durable = local_store.LocalStore.make_durable
    put_files = Catalog.put_files

    def spy_durable(self: local_store.LocalStore, keys: Iterable[str]) -> None:
        keys = list(keys)
        make_durable(self, keys)
        durable.update(key.rsplit("/", 1)[-1] for key in keys)

    def spy_put(
        self: Catalog, channel: str, subdir: str, files: Iterable[CatalogFile]
    ) -> dict[str, str]:
        files = list(files)
        early.extend(f.filename for f in files if f.filename not in durable)
        return put_files(self, channel, subdir, files)

    monkeypatch.setattr(local_store.LocalStore, "make_durable", spy_durable)
    monkeypatch.setattr(Catalog, "put_files", spy_put)
    with UpstreamServer(upstream[0]) as server:
        config = write_config(tmp_path, {"up": {"upstream": server.url, "subdirs": ["linux-64"]}})
        report = sync(config)
    assert report.ok, report.subdirs[0].message
    assert published(config) == set(upstream[1]["linux-64"]) <= durable
    assert early == []


def test_a_file_that_cannot_be_made_durable_is_removed_named_and_fetched_next_time(
    upstream: tuple[Path, Channel], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The batch's syncfs fails (a write-back error somewhere on the file system); file by
    file, one fsync fails: that file alone is a failure, gone from the tree, unrecorded and
    unpublished, and the next run fetches it. (The shards, also more than 32, sync fine.)"""
    victim = sorted(upstream[1]["linux-64"])[7]
    failing = {"on": True}

    def broken_syncfs(folder: Path) -> None:
        if failing["on"] and folder.name == "linux-64":
            raise StoreError(f"cannot write the new files in {folder}: Input/output error")

    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if failing["on"] and os.readlink(f"/proc/self/fd/{fd}").endswith(f"/{victim}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(local_store, "sync_file_system", broken_syncfs)
    monkeypatch.setattr(os, "fsync", fsync)
    with UpstreamServer(upstream[0]) as server:
        config = write_config(tmp_path, {"up": {"upstream": server.url, "subdirs": ["linux-64"]}})
        report = sync(config)
        (subdir,) = report.subdirs
        assert [(f.filename, f.reason) for f in subdir.failures] == [(victim, "store")]
        message = subdir.failures[0].message
        assert victim in message and "free some space" in message
        assert subdir.downloaded_files == PACKAGES - 1
        tree = tmp_path / "tree" / "up" / "linux-64"
        assert not (tree / victim).exists()
        assert published(config) == set(upstream[1]["linux-64"]) - {victim}
        with Catalog(tmp_path / "state" / "catalog.sqlite") as catalog:
            assert victim not in catalog.files("up", "linux-64")
        assert run_verify(load_config(config)).before.problems == []

        failing["on"] = False
        server.clear_log()
        again = sync(config)
        fetched = [r.match_path.rsplit("/", 1)[-1] for r in server.requests if r.status == 200]
    assert again.ok
    assert [f for f in fetched if f.endswith((".conda", ".tar.bz2"))] == [victim]
    assert published(config) == set(upstream[1]["linux-64"])


def test_a_stop_request_mid_transfer_keeps_what_was_done_and_leaves_no_temp_file(
    upstream: tuple[Path, Channel], tmp_path: Path
) -> None:
    """The daemon's stop (SIGTERM) during downloads: the subdir ends interrupted, the files
    done by then are made durable and recorded, nothing half-written stays, and the next run
    fetches only the others."""
    stop = threading.Event()
    with UpstreamServer(upstream[0], latency_s=0.05) as server:
        transfer = {"workers": 2, "max_connections_per_host": 2}
        config = write_config(
            tmp_path, {"up": {"upstream": server.url, "subdirs": ["linux-64"], **transfer}}
        )
        reports: list[SyncReport] = []
        thread = threading.Thread(
            target=lambda: reports.append(run_sync(load_config(config), SyncOptions(), stop=stop))
        )
        thread.start()
        tree = tmp_path / "tree" / "up" / "linux-64"
        deadline = time.monotonic() + 30
        while len(list(tree.glob("*.conda"))) < PACKAGES // 4:
            assert time.monotonic() < deadline and thread.is_alive()
            time.sleep(0.01)
        stop.set()
        thread.join(30)
        (subdir,) = reports[0].subdirs
        assert subdir.outcome == Outcome.INTERRUPTED
        assert list(tree.glob(".mirror-*.tmp")) == []
        with Catalog(tmp_path / "state" / "catalog.sqlite") as catalog:
            recorded = catalog.files("up", "linux-64")
        assert PACKAGES // 4 <= len(recorded) < PACKAGES
        for name, row in recorded.items():
            assert hashlib.sha256((tree / name).read_bytes()).hexdigest() == row.sha256

        server.clear_log()
        assert sync(config).ok
        fetched = {r.match_path.rsplit("/", 1)[-1] for r in server.requests if r.status == 200}
    assert fetched.isdisjoint(recorded)
    assert published(config) == set(upstream[1]["linux-64"])
