"""`mirror index PATH` as a user runs it (a real subprocess), and py-rattler installing from
what it wrote, over file:// and over http."""

from __future__ import annotations

import bz2
import io
import json
import os
import re
from pathlib import Path
from typing import Any

import msgspec
import zstandard

from mirror.adapters.lock import tree_lock
from mirror.cli.index_target import index_state_dir
from tests.conftest import CliResult, run_cli
from tests.support.builder import PackageSpec, build_package, package_bytes
from tests.support.rattler_client import solve_and_install
from tests.support.upstream_server import UpstreamServer

SPECS = (
    PackageSpec("zlib", "1.2.13", build="h0_0", subdir="linux-64"),
    PackageSpec("zlib", "1.3.1", build="h0_0", subdir="linux-64"),
    PackageSpec("zlib", "1.3.1", build="h0_0", subdir="linux-64", fmt=".tar.bz2"),
    PackageSpec("libfoo", "1.9", build="h1_0", subdir="linux-64", depends=("zlib >=1.2",)),
    PackageSpec(
        "libfoo",
        "1.10",
        build="h1_0",
        subdir="linux-64",
        depends=("zlib >=1.3",),
        run_exports={"weak": ["libfoo >=1.10"]},
    ),
    PackageSpec(
        "tool", "0.5", build="h2_0", subdir="linux-64", fmt=".tar.bz2", depends=("libfoo >=1.10",)
    ),
    PackageSpec("pyapp", "2.0", build="pyh_0", depends=("libfoo >=1.9", "appdata")),
    PackageSpec("appdata", "2024.1", build="0", fmt=".tar.bz2"),
)


def make_channel(base: Path, specs: tuple[PackageSpec, ...] = SPECS) -> Path:
    channel = base / "chan"
    for spec in specs:
        build_package(spec, channel / spec.subdir)
    return channel


def index(channel: Path, *flags: str) -> CliResult:
    return run_cli(["index", str(channel), *flags])


def state_of(channel: Path) -> Path:
    """Where `mirror index` keeps a channel's state by default (outside the tree)."""
    return index_state_dir(str(channel.resolve()), None, None, os.environ)


def unzstd(data: bytes) -> bytes:
    return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()


def records(channel: Path, subdir: str) -> dict[str, Any]:
    document = json.loads((channel / subdir / "repodata.json").read_bytes())
    return {**document["packages"], **document["packages.conda"]}


# -- a real client ----------------------------------------------------------------------------


def test_rattler_solves_and_installs_from_an_indexed_channel_over_file_urls(
    tmp_path: Path,
) -> None:
    channel = make_channel(tmp_path)
    assert index(channel).code == 0
    prefix = tmp_path / "env"
    names = solve_and_install(
        [channel.as_uri()], ["pyapp", "tool"], ["linux-64", "noarch"], prefix, tmp_path / "cache"
    )
    assert names == {"pyapp", "tool", "libfoo", "zlib", "appdata"}
    assert (prefix / "share" / "libfoo" / "1.10.txt").exists()
    assert (prefix / "share" / "zlib" / "1.3.1.txt").exists()
    assert (prefix / "share" / "appdata" / "2024.1.txt").exists()


def test_rattler_over_http_fetches_the_shard_index_and_shards_and_installs(
    tmp_path: Path,
) -> None:
    channel = make_channel(tmp_path)
    assert index(channel).code == 0
    shard_index = {
        subdir: msgspec.msgpack.decode(
            unzstd((channel / subdir / "repodata_shards.msgpack.zst").read_bytes())
        )["shards"]
        for subdir in ("linux-64", "noarch")
    }
    prefix = tmp_path / "env"
    with UpstreamServer(channel) as server:
        names = solve_and_install(
            [server.url], ["pyapp"], ["linux-64", "noarch"], prefix, tmp_path / "cache"
        )
        requested = {r.match_path for r in server.requests if r.status == 200}
        assert not server.errors
    assert names == {"pyapp", "libfoo", "zlib", "appdata"}
    assert (prefix / "share" / "pyapp" / "2.0.txt").exists()
    assert {"/linux-64/repodata_shards.msgpack.zst", "/noarch/repodata_shards.msgpack.zst"} <= (
        requested
    )
    for subdir, name in (
        ("noarch", "pyapp"),
        ("noarch", "appdata"),
        ("linux-64", "libfoo"),
        ("linux-64", "zlib"),
    ):
        assert f"/{subdir}/shards/{shard_index[subdir][name].hex()}.msgpack.zst" in requested
    assert f"/linux-64/shards/{shard_index['linux-64']['tool'].hex()}.msgpack.zst" not in requested
    assert not any(p.endswith(("repodata.json", "repodata.json.zst")) for p in requested)
    assert "/linux-64/libfoo-1.10-h1_0.conda" in requested


# -- exit codes and summaries -----------------------------------------------------------------


def test_index_exits_0_and_prints_one_summary_line_per_subdir(tmp_path: Path) -> None:
    channel = make_channel(tmp_path)
    result = index(channel)
    assert result.code == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "records; new" in line]
    assert len(lines) == 2
    assert re.search(
        r"chan/linux-64: 6 records; new 6, changed 0, removed 0, quarantined 0 in ", lines[0]
    )
    assert re.search(
        r"chan/noarch: 2 records; new 2, changed 0, removed 0, quarantined 0 in ", lines[1]
    )
    assert (state_of(channel) / "catalog.sqlite").exists()
    assert not any(p.name.startswith(".mirror-state") for p in tmp_path.iterdir())

    again = index(channel)
    assert again.code == 0
    assert "chan/linux-64: 6 records; new 0, changed 0, removed 0" in again.stderr
    assert "wrote" not in again.stderr


def test_index_exits_1_when_a_file_was_quarantined_and_still_publishes_the_rest(
    tmp_path: Path,
) -> None:
    channel = make_channel(tmp_path)
    data = package_bytes(PackageSpec("broken", "1.0"))
    (channel / "noarch" / "broken-1.0-0.conda").write_bytes(data[:200])
    state = tmp_path / "state"
    result = index(channel, "--state-dir", str(state))
    assert result.code == 1
    assert "broken-1.0-0.conda" in result.stderr
    assert "1 files quarantined" in result.stderr
    assert (state / "quarantine" / "chan" / "noarch" / "broken-1.0-0.conda.reason").exists()
    assert set(records(channel, "noarch")) == {"pyapp-2.0-pyh_0.conda", "appdata-2024.1-0.tar.bz2"}
    assert index(channel, "--state-dir", str(state)).code == 0  # nothing left to quarantine


def test_index_exits_2_for_a_path_that_is_not_a_directory(tmp_path: Path) -> None:
    channel = make_channel(tmp_path)
    package = channel / "noarch" / "pyapp-2.0-pyh_0.conda"
    for path in (package, tmp_path / "missing"):
        result = index(path)
        assert result.code == 2
        assert "not a directory" in result.stderr
    assert not (channel / "noarch" / "repodata.json").exists()
    result = index(channel, "--patch-instructions", str(tmp_path / "nope.json"))
    assert result.code == 2 and "patch instructions not found" in result.stderr


def test_index_exits_3_while_another_writer_holds_the_tree_whatever_its_state_dir(
    tmp_path: Path,
) -> None:
    """The lock is keyed to the tree: a sync or daemon with its own state dir excludes index."""
    channel = make_channel(tmp_path)
    with tree_lock(channel.parent):
        result = index(channel, "--state-dir", str(tmp_path / "elsewhere"))
    assert result.code == 3
    assert "another mirror process is writing the tree" in result.stderr
    assert f"pid {os.getpid()} on " in result.stderr
    assert not (channel / "noarch" / "repodata.json").exists()
    assert index(channel).code == 0


def test_index_file_looks_only_at_that_file(tmp_path: Path) -> None:
    channel = make_channel(tmp_path)
    assert index(channel).code == 0
    build_package(PackageSpec("newpkg", "1.0"), channel / "noarch")
    junk = channel / "noarch" / "junk-1.0-0.conda"
    junk.write_bytes(b"not a package")  # not named: must not be looked at

    result = index(channel, "--file", "noarch/newpkg-1.0-0.conda")

    assert result.code == 0, result.stderr
    assert "chan/noarch: 3 records; new 1" in result.stderr
    assert "linux-64" not in result.stderr
    assert "newpkg-1.0-0.conda" in records(channel, "noarch")
    assert junk.exists()

    (channel / "noarch" / "newpkg-1.0-0.conda").unlink()
    result = index(channel, "--file", "noarch/newpkg-1.0-0.conda")
    assert result.code == 0 and "removed 1" in result.stderr
    assert "newpkg-1.0-0.conda" not in records(channel, "noarch")

    result = index(channel, "--file", "newpkg-1.0-0.conda")
    assert result.code == 2 and "SUBDIR/NAME" in result.stderr


def test_index_file_keeps_channeldata_json_current(tmp_path: Path) -> None:
    channel = make_channel(tmp_path)
    assert index(channel).code == 0
    build_package(PackageSpec("newpkg", "1.0"), channel / "noarch")
    assert index(channel, "--file", "noarch/newpkg-1.0-0.conda").code == 0
    channeldata = json.loads((channel / "channeldata.json").read_bytes())
    assert "newpkg" in channeldata["packages"]


def test_an_empty_channel_folder_gets_an_empty_noarch_repodata(tmp_path: Path) -> None:
    channel = tmp_path / "empty"
    channel.mkdir()
    assert index(channel).code == 0
    document = json.loads((channel / "noarch" / "repodata.json").read_bytes())
    assert document["packages"] == {} and document["packages.conda"] == {}
    assert document["info"] == {"subdir": "noarch"}


def test_a_package_file_with_an_unusable_name_is_named_in_the_output(tmp_path: Path) -> None:
    channel = make_channel(tmp_path)
    (channel / "noarch" / "my pkg-1.0-0.conda").write_bytes(
        package_bytes(PackageSpec("mypkg", "1.0"))
    )
    result = index(channel)
    assert "my pkg-1.0-0.conda" in result.stderr


# -- outputs switched on and off --------------------------------------------------------------


def test_switching_shards_and_zst_off_removes_the_stale_files(tmp_path: Path) -> None:
    channel = make_channel(tmp_path)
    assert index(channel).code == 0
    linux = channel / "linux-64"
    assert (linux / "repodata_shards.msgpack.zst").exists() and (
        linux / "repodata.json.zst"
    ).exists()
    json_mtime = (linux / "repodata.json").stat().st_mtime_ns

    assert index(channel, "--no-shards", "--no-zst", "--no-run-exports").code == 0

    for subdir in ("linux-64", "noarch"):
        assert not (channel / subdir / "repodata_shards.msgpack.zst").exists()
        assert not (channel / subdir / "repodata.json.zst").exists()
        assert not (channel / subdir / "run_exports.json").exists()
    assert (linux / "repodata.json").stat().st_mtime_ns == json_mtime  # same content, kept

    assert index(channel).code == 0  # back on: written again
    assert (
        unzstd((linux / "repodata.json.zst").read_bytes()) == (linux / "repodata.json").read_bytes()
    )
    assert (linux / "repodata_shards.msgpack.zst").exists()


def test_switching_channeldata_off_removes_the_stale_file(tmp_path: Path) -> None:
    channel = make_channel(tmp_path)
    assert index(channel).code == 0
    assert (channel / "channeldata.json").exists()
    assert index(channel, "--no-channeldata").code == 0
    assert not (channel / "channeldata.json").exists()


def test_bz2_and_current_repodata_are_written_on_request(tmp_path: Path) -> None:
    channel = make_channel(tmp_path)
    assert index(channel).code == 0
    assert not (channel / "linux-64" / "repodata.json.bz2").exists()
    assert not (channel / "linux-64" / "current_repodata.json").exists()

    assert index(channel, "--bz2", "--current-repodata").code == 0

    for subdir in ("linux-64", "noarch"):
        body = (channel / subdir / "repodata.json").read_bytes()
        assert bz2.decompress((channel / subdir / "repodata.json.bz2").read_bytes()) == body
        current = json.loads((channel / subdir / "current_repodata.json").read_bytes())
        assert set(current["packages.conda"]) | set(current["packages"]) <= set(
            records(channel, subdir)
        )
    current = json.loads((channel / "linux-64" / "current_repodata.json").read_bytes())
    assert "zlib-1.2.13-h0_0.conda" not in current["packages.conda"]

    assert index(channel).code == 0  # off again
    assert not (channel / "linux-64" / "repodata.json.bz2").exists()
    assert not (channel / "linux-64" / "current_repodata.json").exists()


def test_final_zst_leaves_one_frame_with_its_size_that_decompresses_to_repodata_json(
    tmp_path: Path,
) -> None:
    channel = make_channel(tmp_path)
    assert index(channel, "--final-zst").code == 0
    for subdir in ("linux-64", "noarch"):
        data = (channel / subdir / "repodata.json.zst").read_bytes()
        body = (channel / subdir / "repodata.json").read_bytes()
        assert zstandard.get_frame_parameters(data).content_size == len(body)
        assert zstandard.ZstdDecompressor().decompress(data) == body  # needs the content size


def test_index_file_with_a_lost_state_database_rebuilds_instead_of_forgetting(
    tmp_path: Path,
) -> None:
    channel = make_channel(tmp_path)
    assert index(channel).code == 0
    before = set(records(channel, "noarch"))
    for path in state_of(channel).iterdir():  # the state database is gone
        path.unlink()
    build_package(PackageSpec("late", "1.0"), channel / "noarch")
    result = index(channel, "--file", "noarch/late-1.0-0.conda")
    assert result.code == 0, result.stderr
    assert "scanning it in full" in result.stderr
    assert set(records(channel, "noarch")) == before | {"late-1.0-0.conda"}


def test_a_state_database_of_the_previous_schema_is_migrated_in_place(tmp_path: Path) -> None:
    import sqlite3

    from mirror.adapters.catalog.schema import SCHEMA_VERSION

    channel = make_channel(tmp_path)
    assert index(channel).code == 0
    with sqlite3.connect(state_of(channel) / "catalog.sqlite") as db:
        for table in ("channel_dirty", "closure_notes", "dangling", "repodata_source", "guard_log"):
            db.execute(f"DROP TABLE {table}")
        db.execute("PRAGMA user_version=2")
    build_package(PackageSpec("late", "1.0"), channel / "noarch")
    assert index(channel, "--file", "noarch/late-1.0-0.conda").code == 0
    with sqlite3.connect(state_of(channel) / "catalog.sqlite") as db:
        files = db.execute("SELECT COUNT(*) FROM files").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
    assert version == SCHEMA_VERSION and files == len(SPECS) + 1
