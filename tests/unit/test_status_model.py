"""`collect_status` on real state files (SQLite catalog, quarantine folder, check results):
what the status page and `mirror status --json` show, read without writing or waiting."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from mirror.adapters.catalog import (
    CATALOG_NAME,
    Catalog,
    CatalogFile,
    ClosureNote,
    ClosureNoteKind,
    UpstreamState,
)
from mirror.adapters.mounts import filesystem_type, read_mounts
from mirror.config import load_config
from mirror.config.model import MirrorConfig
from mirror.core.watch_modes import WatchMode, decide_watch_mode
from mirror.health.status import (
    DROPS_ROW,
    QUARANTINE_LISTED,
    REASON_CHARS,
    SOURCE_LOCAL,
    collect_status,
    format_status,
    status_json,
)
from mirror.local.watch_plan import plan_watch
from mirror.sync.check import RESULTS_FILE

# the keys `mirror status --json` printed before the status page; consumers may rely on them
ORIGINAL_KEYS = {
    "channel": str,
    "subdir": str,
    "packages": int,
    "size_bytes": int,
    "last_sync_at": (float, type(None)),
    "last_outcome": (str, type(None)),
    "next_run_at": (float, type(None)),
    "quarantined": int,
    "solvable": (bool, type(None)),
}


@pytest.fixture
def config(tmp_path: Path) -> MirrorConfig:
    (tmp_path / "drops").mkdir()
    document = {
        "root": "tree",
        "state_dir": "state",
        "channels": {
            "up": {
                "upstream": "https://user:s3cret-pass@mirror.example.invalid/t/tok-1234/cf/",
                "subdirs": ["linux-64", "noarch"],
            },
            "local": {"subdirs": ["noarch"], "drop_folders": ["drops"]},
        },
    }
    (tmp_path / "mirror.yaml").write_text(yaml.safe_dump(document))
    return load_config(tmp_path / "mirror.yaml")


def record(filename: str, size: int) -> CatalogFile:
    name = filename.rsplit("-", 2)[0]
    raw = json.dumps({"name": name, "version": "1", "build": "0", "size": size}).encode()
    return CatalogFile(filename, size, 0, "0" * 64, "0" * 32, "upstream", name, raw)


def write_state(config: MirrorConfig) -> None:
    with Catalog(config.state_dir / CATALOG_NAME) as catalog, catalog.transaction():
        catalog.put_files("up", "linux-64", [record("a-1-0.conda", 100), record("b-1-0.conda", 50)])
        catalog.save_upstream_state(
            "up", "linux-64", UpstreamState("k", "repodata.json.zst", None, None, None, None, None)
        )
        for outcome, message in (("ok", None), ("failed", "HTTP 500 from upstream")):
            catalog.record_run(
                channel="up",
                subdir="linux-64",
                started_at=time.time(),
                outcome=outcome,
                downloaded_files=0,
                downloaded_bytes=0,
                deleted_files=0,
                failed_files=0,
                message=message,
            )
        catalog.set_next_runs({"up": 2e9})


def quarantine(config: MirrorConfig, channel: str, subdir: str, names: list[str]) -> None:
    folder = config.state_dir / "quarantine" / channel / subdir
    folder.mkdir(parents=True, exist_ok=True)
    for age, name in enumerate(names):  # the first name is the newest
        (folder / name).write_bytes(b"x")
        reason = folder / f"{name}.reason"
        reason.write_text(f"{name}: not a valid zip\n")
        os.utime(reason, (1e9 - age, 1e9 - age))


def rows_by_key(config: MirrorConfig) -> dict[tuple[str, str], dict[str, object]]:
    return {(r.channel, r.subdir): r.as_dict() for r in collect_status(config)}


def test_the_last_run_its_message_and_the_repodata_source_are_read_from_the_catalog(
    config: MirrorConfig,
) -> None:
    write_state(config)
    rows = rows_by_key(config)
    linux = rows[("up", "linux-64")]
    assert (linux["packages"], linux["size_bytes"]) == (2, 150)
    assert (linux["last_outcome"], linux["last_message"]) == ("failed", "HTTP 500 from upstream")
    assert linux["next_run_at"] == 2e9
    # the URL the records came from, with the password and the token masked
    assert linux["repodata_source"] == (
        "https://user:***@mirror.example.invalid/t/***/cf/linux-64/repodata.json.zst"
    )
    assert rows[("up", "noarch")]["repodata_source"] is None  # never fetched
    assert rows[("local", "noarch")]["repodata_source"] == SOURCE_LOCAL


def test_drop_folders_are_listed_on_each_row_of_their_channel(config: MirrorConfig) -> None:
    write_state(config)
    rows = rows_by_key(config)
    (folder,) = rows[("local", "noarch")]["drop_folders"]
    assert folder["path"] == str(config.source.parent / "drops")
    # `auto`: the mode follows the folder's filesystem type, as the daemon decides it
    fs_type = filesystem_type(config.source.parent / "drops", read_mounts())
    assert folder["filesystem"] == fs_type
    assert folder["watch_mode"] == decide_watch_mode(WatchMode.AUTO, fs_type).mode
    assert rows[("up", "linux-64")]["drop_folders"] == ()


def test_a_folder_forced_to_poll_shows_its_interval(config: MirrorConfig) -> None:
    document = yaml.safe_load(config.source.read_text())
    document["channels"]["local"]["drop_folders"] = [
        {"path": "drops", "mode": "poll", "poll_interval_s": 2.5}
    ]
    config.source.write_text(yaml.safe_dump(document))
    write_state(config)
    rows = rows_by_key(load_config(config.source))
    (folder,) = rows[("local", "noarch")]["drop_folders"]
    assert (folder["watch_mode"], folder["poll_interval_s"]) == ("poll", 2.5)


def test_the_daemons_own_decision_is_what_status_shows(config: MirrorConfig) -> None:
    """The status page passes the plan the daemon watches with (it may predate a mount)."""
    write_state(config)
    (planned,) = plan_watch(config)
    running = replace(planned, mode=WatchMode.POLL, fs_type="nfs4", why="auto: nfs4 ...")
    rows = {(r.channel, r.subdir): r for r in collect_status(config, (running,))}
    (folder,) = rows[("local", "noarch")].drop_folders
    assert (folder.watch_mode, folder.filesystem, folder.poll_interval_s) == ("poll", "nfs4", 5.0)


def test_quarantined_files_come_with_their_reasons_newest_first_and_capped(
    config: MirrorConfig,
) -> None:
    write_state(config)
    names = [f"p{i:02d}-1-0.conda" for i in range(QUARANTINE_LISTED + 5)]
    quarantine(config, "up", "linux-64", names)
    long_name = "long-1-0.conda"
    quarantine(config, "local", "_drops", [long_name])
    (config.state_dir / "quarantine/local/_drops" / f"{long_name}.reason").write_text("y" * 9999)
    rows = {(r.channel, r.subdir): r for r in collect_status(config)}
    linux = rows[("up", "linux-64")]
    assert linux.quarantined == QUARANTINE_LISTED + 5
    assert [q.filename for q in linux.quarantined_files] == names[:QUARANTINE_LISTED]
    assert linux.quarantined_files[0].reason == "p00-1-0.conda: not a valid zip"
    drops = rows[("local", DROPS_ROW)]
    assert drops.quarantined == 1
    assert drops.quarantined_files[0].reason == "y" * REASON_CHARS + "…"


def test_solvability_and_the_solvers_explanation_come_from_the_last_check(
    config: MirrorConfig,
) -> None:
    write_state(config)
    results = [
        {"channel": "up", "platform": "linux-64", "specs": ["python 3.12.*"], "ok": False,
         "message": "nothing provides libzlib", "seconds": 0.1, "checked_at": 1.0},
        {"channel": "up", "platform": "linux-64", "specs": ["python 3.11.*"], "ok": True,
         "message": "12 packages", "seconds": 0.1, "checked_at": 1.0},
    ]  # fmt: skip
    (config.state_dir / RESULTS_FILE).write_text(json.dumps(results))
    rows = rows_by_key(config)
    assert rows[("up", "linux-64")]["solvable"] is False
    assert rows[("up", "linux-64")]["solve_problem"] == "python 3.12.*: nothing provides libzlib"
    assert rows[("up", "noarch")]["solvable"] is None


def test_the_json_keeps_every_original_key_and_type(config: MirrorConfig) -> None:
    write_state(config)
    document = json.loads(status_json(collect_status(config)))
    assert document
    for row in document:
        for key, kind in ORIGINAL_KEYS.items():
            assert isinstance(row[key], kind), (key, row)
        assert row["closure_problems"] == [] and row["closure_warnings"] == []  # no closure ran


def test_the_last_closures_problems_and_platform_warnings_are_shown(config: MirrorConfig) -> None:
    write_state(config)
    missing = "'linuxtool' has no candidate for noarch upstream: noarch is solved without it"
    with Catalog(config.state_dir / CATALOG_NAME) as catalog:
        catalog.set_closure_notes("up", [
            ClosureNote(ClosureNoteKind.PROBLEM, "osx-64: does not solve because ..."),
            ClosureNote(ClosureNoteKind.UNAVAILABLE, missing, "noarch", "linuxtool"),
        ])  # fmt: skip
    rows = {(r.channel, r.subdir): r for r in collect_status(config)}
    assert rows[("up", "linux-64")].closure_problems == ("osx-64: does not solve because ...",)
    assert rows[("up", "noarch")].closure_problems == rows[("up", "linux-64")].closure_problems
    assert rows[("up", "noarch")].closure_warnings == (missing,)
    assert rows[("up", "linux-64")].closure_warnings == ()
    assert rows[("local", "noarch")].closure_problems == ()
    text = format_status(list(rows.values()))
    assert text.count("up: closure problem: osx-64: does not solve because ...") == 1
    assert f"up/noarch: warning: {missing}" in text
    with Catalog(config.state_dir / CATALOG_NAME) as catalog:
        catalog.set_closure_notes("up", [])  # the next closure had nothing to say
    assert all(not r.closure_problems and not r.closure_warnings for r in collect_status(config))


def test_status_creates_nothing_in_an_empty_state_dir(config: MirrorConfig) -> None:
    config.state_dir.mkdir()
    assert collect_status(config) == []
    assert list(config.state_dir.iterdir()) == []


def test_status_reads_while_a_writer_holds_the_database_and_leaves_it_free(
    config: MirrorConfig,
) -> None:
    write_state(config)
    writer = sqlite3.connect(config.state_dir / CATALOG_NAME, timeout=0, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("DELETE FROM files")  # not committed: a reader still sees both files
    started = time.monotonic()
    rows = rows_by_key(config)
    assert time.monotonic() - started < 5  # a reader waiting for the lock would take 30 s
    assert rows[("up", "linux-64")]["packages"] == 2
    writer.execute("COMMIT")  # timeout=0: any lock left by the reader would fail this
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("ROLLBACK")
    writer.close()
    assert rows_by_key(config)[("up", "linux-64")]["packages"] == 0
