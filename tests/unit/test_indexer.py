"""Indexing a channel from its package files: agreement with rattler-index, incremental work,
shard garbage collection and quarantine of bad files."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zstandard

from mirror.adapters.catalog import Catalog
from mirror.adapters.store import Quarantine, local_tree
from mirror.config.model import IndexSettings
from mirror.local.indexer import IndexContext, index_channel
from mirror.reports import IndexReport, SubdirIndexReport
from tests.conftest import SHARED_REAL
from tests.support import hostile
from tests.support.builder import PackageSpec, build_package, package_bytes

CHANNEL = "chan"
DAY_S = 86400.0
REAL_PACKAGES = SHARED_REAL / "packages"


@dataclass
class Workspace:
    """<base>/tree/chan/<subdir>/ plus <base>/state, indexed with an injectable clock."""

    base: Path
    now: float = 1_800_000_000.0
    local_channel: bool = True
    state_dir: Path | None = None
    tree_root: Path | None = None

    @property
    def root(self) -> Path:
        return self.tree_root or self.base / "tree"

    @property
    def state(self) -> Path:
        return self.state_dir or self.base / "state"

    @property
    def channel_dir(self) -> Path:
        return self.root / CHANNEL

    def subdir(self, subdir: str) -> Path:
        return self.channel_dir / subdir

    def add(self, *specs: PackageSpec) -> None:
        for spec in specs:
            build_package(spec, self.subdir(spec.subdir))

    def put(self, subdir: str, filename: str, data: bytes) -> None:
        self.subdir(subdir).mkdir(parents=True, exist_ok=True)
        (self.subdir(subdir) / filename).write_bytes(data)

    def index(
        self, settings: IndexSettings | None = None, *, channel: str = CHANNEL, **kw: Any
    ) -> IndexReport:
        with Catalog(self.state / "catalog.sqlite") as catalog:
            ctx = IndexContext(
                tree=local_tree(self.root),
                catalog=catalog,
                quarantine=Quarantine(self.state / "quarantine"),
                settings=settings or IndexSettings(),
                workers=2,
                clock=lambda: self.now,
                local_channel=self.local_channel,
            )
            return index_channel(ctx, channel, **kw)

    def records(self, subdir: str) -> dict[str, dict[str, Any]]:
        document = json.loads((self.subdir(subdir) / "repodata.json").read_bytes())
        return {**document["packages"], **document["packages.conda"]}

    def shard_files(self, subdir: str) -> dict[str, int]:
        folder = self.subdir(subdir) / "shards"
        return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}

    def shard_index(self, subdir: str) -> dict[str, str]:
        data = (self.subdir(subdir) / "repodata_shards.msgpack.zst").read_bytes()
        payload = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
        return {k: v.hex() for k, v in msgspec.msgpack.decode(payload)["shards"].items()}


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path)


def by_subdir(report: IndexReport) -> dict[str, SubdirIndexReport]:
    return {s.subdir: s for s in report.subdirs}


def hashes(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    return {
        "md5": hashlib.md5(data).hexdigest(),
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
    }


# -- two indexers, same input -----------------------------------------------------------------

BUILDER_SPECS = (
    PackageSpec("zlib", "1.3.1", build="h0_0", subdir="linux-64"),
    PackageSpec("zlib", "1.3.1", build="h0_0", subdir="linux-64", fmt=".tar.bz2"),
    PackageSpec(
        "libfoo",
        "1.10",
        build="h1_1",
        build_number=1,
        subdir="linux-64",
        depends=("zlib >=1.3", "__glibc >=2.17"),
        constrains=("libbar <2",),
        run_exports={"weak": ["libfoo >=1.10,<2"], "strong_constrains": ["x >=1"]},
        license_family="BSD",
    ),
    PackageSpec(
        "mkl-variant",
        "1.0",
        build="mkl_0",
        subdir="linux-64",
        fmt=".tar.bz2",
        extra_index={"track_features": "mkl", "features": "mkl"},
    ),
    PackageSpec("pyapp", "2.0", build="pyh_0", depends=("libfoo", "python >=3.8"), noarch="python"),
    PackageSpec("appdata", "2024.1", fmt=".tar.bz2", license=None, timestamp_ms=None),
)


def index_with_rattler(channel_dir: Path) -> None:
    import rattler.index

    asyncio.run(
        rattler.index.index_fs(channel_dir, write_zst=False, write_shards=False, force=True)
    )


def compare_with_rattler_index(ours: Workspace, theirs: Path) -> list[str]:
    """Field-by-field differences, indexed_timestamp values aside; [] when they agree."""
    differences = []
    subdirs = sorted(p.name for p in ours.channel_dir.iterdir() if p.is_dir())
    for subdir in subdirs:
        mine = json.loads((ours.subdir(subdir) / "repodata.json").read_bytes())
        other = json.loads((theirs / subdir / "repodata.json").read_bytes())
        if mine["info"] != other["info"]:
            differences.append(f"{subdir}: info {mine['info']} != {other['info']}")
        for group in ("packages", "packages.conda"):
            if set(mine[group]) != set(other[group]):
                differences.append(f"{subdir}/{group}: {set(mine[group]) ^ set(other[group])}")
            for filename in set(mine[group]) & set(other[group]):
                a, b = mine[group][filename], other[group][filename]
                for key in sorted(set(a) | set(b)):
                    if key == "indexed_timestamp":
                        assert isinstance(a[key], int) and isinstance(b[key], int)
                        continue
                    if a.get(key, "<absent>") != b.get(key, "<absent>"):
                        differences.append(f"{filename}: {key} {a.get(key)!r} != {b.get(key)!r}")
    return differences


def test_records_of_builder_packages_equal_rattler_index_field_by_field(tmp_path: Path) -> None:
    """Both formats, noarch and linux-64, run_exports, constrains, track_features/features.

    Documented differences, not compared: `indexed_timestamp` (CEP-47) values differ with the
    time each indexer ran; top-level keys (rattler writes `"v3": {}` and no `removed`, we write
    `"removed": []`), which are not records.
    """
    pristine = tmp_path / "pristine"
    for spec in BUILDER_SPECS:
        build_package(spec, pristine / spec.subdir)
    ours = Workspace(tmp_path / "ours")
    shutil.copytree(pristine, ours.channel_dir)
    shutil.copytree(pristine, tmp_path / "theirs")
    ours.index()
    index_with_rattler(tmp_path / "theirs")
    assert compare_with_rattler_index(ours, tmp_path / "theirs") == []
    assert len(ours.records("linux-64")) == 4 and len(ours.records("noarch")) == 2


@pytest.mark.skipif(not REAL_PACKAGES.is_dir(), reason="real test data not present")
def test_records_of_real_packages_equal_rattler_index_field_by_field(tmp_path: Path) -> None:
    """The real packages of /work/shared/testdata/real/packages, laid out by subdir.

    Documented differences: `indexed_timestamp` values (time of indexing); rattler-index drops
    keys whose value in info/index.json is null (old noarch packages carry `"arch": null,
    "platform": null`), while we keep the package's index.json verbatim as conda-index does
    (anaconda's own noarch repodata lists `"arch": null`). Top-level keys are not records.
    """
    ours = Workspace(tmp_path / "ours")
    for copy in (ours.channel_dir, tmp_path / "theirs"):
        shutil.copytree(REAL_PACKAGES, copy, copy_function=shutil.copyfile)
        for path in copy.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
    report = ours.index()
    assert report.quarantined == 0
    index_with_rattler(tmp_path / "theirs")
    differences = compare_with_rattler_index(ours, tmp_path / "theirs")
    null_keys = [d for d in differences if re.search(r": (arch|platform) None != None$", d)]
    assert differences == null_keys
    for filename, record in ours.records("noarch").items():
        if "arch" in record:
            assert record["arch"] is None and record["platform"] is None, filename
    on_disk = {p.name for p in REAL_PACKAGES.rglob("*") if p.name.endswith((".conda", ".bz2"))}
    assert {fn for s in ("noarch", "linux-64", "osx-64") for fn in ours.records(s)} == on_disk


# -- incremental ------------------------------------------------------------------------------

START = (
    PackageSpec("a", "1.0"),
    PackageSpec("a", "1.0", fmt=".tar.bz2"),
    PackageSpec("b", "1.0"),
    PackageSpec("c", "1.0", subdir="linux-64"),
)


def watched_outputs(ws: Workspace) -> list[Path]:
    names = (
        "repodata.json",
        "repodata.json.zst",
        "repodata_shards.msgpack.zst",
        "run_exports.json",
    )
    return [
        *(ws.subdir(s) / n for s in ("noarch", "linux-64") for n in names),
        ws.channel_dir / "channeldata.json",
    ]


def test_adding_a_package_writes_one_new_shard_and_adds_exactly_its_record(
    ws: Workspace,
) -> None:
    ws.add(*START)
    ws.index()
    records_before = ws.records("noarch")
    shards_before = ws.shard_files("noarch")
    linux_before = {p: p.stat().st_mtime_ns for p in ws.subdir("linux-64").rglob("*")}
    ws.now += 60

    ws.add(PackageSpec("d", "1.0"))
    report = by_subdir(ws.index())

    noarch = report["noarch"]
    assert (noarch.new, noarch.changed, noarch.removed, noarch.quarantined) == (1, 0, 0, ())
    shards_after = ws.shard_files("noarch")
    assert len(shards_after) == len(shards_before) + 1
    assert {k: shards_after[k] for k in shards_before} == shards_before  # untouched
    assert set(ws.shard_index("noarch")) == {"a", "b", "d"}
    records_after = ws.records("noarch")
    expected = {**hashes(ws.subdir("noarch") / "d-1.0-0.conda"), "name": "d"}
    new_record = records_after.pop("d-1.0-0.conda")
    assert {k: new_record[k] for k in expected} == expected
    assert new_record["indexed_timestamp"] == int(ws.now * 1000)
    assert records_after == records_before
    assert (report["linux-64"].new, report["linux-64"].changed) == (0, 0)
    assert {p: p.stat().st_mtime_ns for p in ws.subdir("linux-64").rglob("*")} == linux_before


def test_a_package_replaced_in_place_gets_its_new_hashes(ws: Workspace) -> None:
    """rattler-index (0.28, without --force) keeps the stale sha256 here; we re-read the file."""
    ws.add(*START)
    ws.index()
    before = ws.records("noarch")
    ws.now += 60
    replacement = PackageSpec("b", "1.0", files={"share/b/new.txt": b"other bytes" * 50})
    ws.put("noarch", "b-1.0-0.conda", package_bytes(replacement))

    noarch = by_subdir(ws.index())["noarch"]

    assert (noarch.new, noarch.changed, noarch.removed) == (0, 1, 0)
    after = ws.records("noarch")
    fresh = hashes(ws.subdir("noarch") / "b-1.0-0.conda")
    assert {k: after["b-1.0-0.conda"][k] for k in fresh} == fresh
    assert fresh["sha256"] != before["b-1.0-0.conda"]["sha256"]
    assert after["b-1.0-0.conda"]["indexed_timestamp"] == int(ws.now * 1000)  # new bytes
    del after["b-1.0-0.conda"], before["b-1.0-0.conda"]
    assert after == before


def test_a_deleted_package_leaves_the_index_but_its_shard_stays_for_the_grace_period(
    ws: Workspace,
) -> None:
    ws.add(*START)
    ws.index()
    b_shard = f"{ws.shard_index('noarch')['b']}.msgpack.zst"
    (ws.subdir("noarch") / "b-1.0-0.conda").unlink()

    noarch = by_subdir(ws.index())["noarch"]

    assert (noarch.new, noarch.changed, noarch.removed) == (0, 0, 1)
    assert "b-1.0-0.conda" not in ws.records("noarch")
    assert "b" not in ws.shard_index("noarch")
    assert b_shard in ws.shard_files("noarch")  # an orphan: old indexes may still name it

    ws.now += 6 * DAY_S  # within the grace period, even when the subdir changes again
    ws.add(PackageSpec("e", "1.0"))
    ws.index(IndexSettings(shard_grace_days=7))
    assert b_shard in ws.shard_files("noarch")

    ws.now += 1.5 * DAY_S
    ws.add(PackageSpec("f", "1.0"))
    report = by_subdir(ws.index(IndexSettings(shard_grace_days=7)))
    assert b_shard not in ws.shard_files("noarch")
    assert report["noarch"].published is not None
    assert report["noarch"].published.shards_deleted == 1
    assert set(ws.shard_index("noarch")) == {"a", "e", "f"}
    referenced = {f"{d}.msgpack.zst" for d in ws.shard_index("noarch").values()}
    assert set(ws.shard_files("noarch")) == referenced


def test_an_orphaned_shard_is_deleted_after_the_grace_period_even_in_a_quiet_subdir(
    ws: Workspace,
) -> None:
    ws.add(*START)
    ws.index()
    b_shard = f"{ws.shard_index('noarch')['b']}.msgpack.zst"
    (ws.subdir("noarch") / "b-1.0-0.conda").unlink()
    ws.index()
    assert b_shard in ws.shard_files("noarch")
    ws.now += 8 * DAY_S
    ws.index(IndexSettings(shard_grace_days=7))
    assert b_shard not in ws.shard_files("noarch")


def test_reindexing_an_unchanged_channel_rewrites_no_output(ws: Workspace) -> None:
    ws.add(*START)
    ws.index()
    outputs = watched_outputs(ws)
    before = {p: p.stat().st_mtime_ns for p in outputs}
    shards = ws.shard_files("noarch")
    ws.now += 3600

    report = ws.index()

    assert {p: p.stat().st_mtime_ns for p in outputs} == before
    assert ws.shard_files("noarch") == shards
    for sub in report.subdirs:
        assert (sub.new, sub.changed, sub.removed) == (0, 0, 0)
        assert sub.published is not None and sub.published.changed == ()


def test_touching_a_file_without_changing_its_bytes_keeps_its_indexed_timestamp(
    ws: Workspace,
) -> None:
    ws.add(*START)
    ws.index()
    before = ws.records("noarch")
    ws.now += 3600
    path = ws.subdir("noarch") / "a-1.0-0.conda"
    path.write_bytes(path.read_bytes())  # new mtime, same bytes
    noarch = by_subdir(ws.index())["noarch"]
    assert noarch.changed == 1
    assert ws.records("noarch") == before


def test_index_files_deleted_by_hand_are_written_again(ws: Workspace) -> None:
    ws.add(*START)
    ws.index()
    body = (ws.subdir("noarch") / "repodata.json").read_bytes()
    shard_index = (ws.subdir("noarch") / "repodata_shards.msgpack.zst").read_bytes()
    (ws.subdir("noarch") / "repodata.json").unlink()
    (ws.subdir("noarch") / "repodata_shards.msgpack.zst").unlink()
    ws.index()
    assert (ws.subdir("noarch") / "repodata.json").read_bytes() == body
    assert (ws.subdir("noarch") / "repodata_shards.msgpack.zst").read_bytes() == shard_index

    shard = ws.subdir("noarch") / "shards" / f"{ws.shard_index('noarch')['a']}.msgpack.zst"
    data = shard.read_bytes()
    shard.unlink()
    ws.index(force=True)
    assert shard.read_bytes() == data


def test_a_new_subdir_folder_is_discovered_and_indexed(ws: Workspace) -> None:
    ws.add(*START)
    ws.index()
    ws.add(PackageSpec("arm", "1.0", subdir="osx-arm64"))
    report = by_subdir(ws.index())
    assert report["osx-arm64"].new == 1
    assert set(ws.records("osx-arm64")) == {"arm-1.0-0.conda"}
    channeldata = json.loads((ws.channel_dir / "channeldata.json").read_bytes())
    assert channeldata["subdirs"] == ["linux-64", "noarch", "osx-arm64"]


def test_a_large_subdir_is_read_in_a_process_pool_with_the_same_records(tmp_path: Path) -> None:
    specs = [PackageSpec(f"p{i:02d}", "1.0") for i in range(60)]  # above POOL_THRESHOLD
    pooled, serial = Workspace(tmp_path / "pooled"), Workspace(tmp_path / "serial")
    for workspace in (pooled, serial):
        workspace.add(*specs)
    pooled.index()
    with Catalog(serial.state / "catalog.sqlite") as catalog:
        ctx = IndexContext(
            local_tree(serial.root),
            catalog,
            Quarantine(serial.state / "q"),
            IndexSettings(),
            workers=1,
            clock=lambda: serial.now,
        )
        index_channel(ctx, CHANNEL)
    assert len(pooled.records("noarch")) == 60
    assert pooled.records("noarch") == serial.records("noarch")


# -- quarantine -------------------------------------------------------------------------------

GOOD = (
    PackageSpec("good", "1.0"),
    PackageSpec("good", "1.0", fmt=".tar.bz2"),
    PackageSpec("fine", "2.0", subdir="linux-64"),
)


def _valid_index(name: str, subdir: str = "noarch") -> dict[str, Any]:
    return {
        "name": name,
        "version": "1.0",
        "build": "0",
        "build_number": 0,
        "subdir": subdir,
        "depends": [],
    }


def _truncated_zip() -> tuple[str, bytes]:
    data = package_bytes(PackageSpec("trunc", "1.0"))
    return "trunc-1.0-0.conda", data[: len(data) // 2]


def _no_index_json() -> tuple[str, bytes]:
    members = [hostile.file("info/about.json", b"{}"), hostile.file("share/x.txt", b"x")]
    return "noindex-1.0-0.tar.bz2", hostile.tar_bz2_bytes(members)


def _misnamed() -> tuple[str, bytes]:
    return "renamed-1.0-0.tar.bz2", package_bytes(PackageSpec("original", "1.0", fmt=".tar.bz2"))


def _misnamed_conda() -> tuple[str, bytes]:
    # a .conda names its inner tars after its own stem: conda cannot open a renamed one
    return "renamed-1.0-0.conda", package_bytes(PackageSpec("original", "1.0"))


def _wrong_subdir() -> tuple[str, bytes]:
    return "linuxpkg-1.0-0.conda", package_bytes(PackageSpec("linuxpkg", "1.0", subdir="linux-64"))


def _huge_index_json() -> tuple[str, bytes]:
    text = json.dumps(_valid_index("huge"))
    raw = text[:-1].encode() + b',"pad":"' + b" " * (17 << 20) + b'"}'
    info = hostile.zstd(hostile.tar_bytes(hostile.info_members(raw_index=raw)))
    return "huge-1.0-0.conda", hostile.conda_bytes("huge-1.0-0", info)


def _dotdot_member() -> tuple[str, bytes]:
    members = [*hostile.info_members(_valid_index("escape")), hostile.file("../x", b"pwned")]
    return "escape-1.0-0.tar.bz2", hostile.tar_bz2_bytes(members)


def _not_utf8_index() -> tuple[str, bytes]:
    raw = json.dumps(_valid_index("latin")).replace('"latin"', '"lat\xefn"').encode("latin-1")
    return "latin-1.0-0.tar.bz2", hostile.tar_bz2_bytes(hostile.info_members(raw_index=raw))


@pytest.mark.parametrize(
    ("make", "reason", "words"),
    [
        (_truncated_zip, "corrupt", "not a valid zip"),
        (_no_index_json, "missing_index", "info/index.json"),
        (_misnamed, "invalid_metadata", "does not match its metadata, which says original"),
        (_misnamed_conda, "missing_index", "renamed"),
        (_wrong_subdir, "invalid_metadata", "subdir 'linux-64'"),
        (_huge_index_json, "too_large", "index.json"),
        (_dotdot_member, "unsafe_member", "'..'"),
        (_not_utf8_index, "invalid_json", "UTF-8"),
    ],
    ids=[
        "truncated-zip",
        "no-index-json",
        "misnamed",
        "misnamed-conda",
        "wrong-subdir",
        "huge-index-json",
        "dotdot-member",
        "not-utf8-index",
    ],
)
def test_a_bad_file_is_quarantined_with_a_reason_and_the_rest_is_indexed(
    ws: Workspace, make: Callable[[], tuple[str, bytes]], reason: str, words: str
) -> None:
    ws.add(*GOOD)
    filename, data = make()
    ws.put("noarch", filename, data)

    # a member past info/ is only read by a deep scan (an index needs only info/)
    report = ws.index(IndexSettings(deep_scan=reason == "unsafe_member"))

    assert report.quarantined == 1
    (bad,) = by_subdir(report)["noarch"].quarantined
    assert (bad.filename, bad.reason) == (filename, reason)
    assert not (ws.subdir("noarch") / filename).exists()
    moved = ws.state / "quarantine" / CHANNEL / "noarch" / filename
    assert bad.moved_to == moved and moved.read_bytes() == data
    reason_text = moved.with_name(filename + ".reason").read_text()
    assert reason_text.startswith(f"{reason}: ") and words in reason_text
    assert filename in reason_text
    assert set(ws.records("noarch")) == {"good-1.0-0.conda", "good-1.0-0.tar.bz2"}
    assert set(ws.records("linux-64")) == {"fine-2.0-0.conda"}
    assert by_subdir(report)["noarch"].new == 2

    again = ws.index()  # the quarantined file is gone for good: nothing to redo
    assert again.quarantined == 0 and by_subdir(again)["noarch"].removed == 0


def test_every_index_checks_every_member_not_only_info(ws: Workspace) -> None:
    """The package gate holds for a plain `mirror index` (it used to publish this file)."""
    filename, data = _dotdot_member()
    ws.put("noarch", filename, data)
    report = ws.index()
    assert [q.reason for q in report.subdirs[-1].quarantined] == ["unsafe_member"]
    assert filename not in ws.records("noarch")


def test_a_bad_replacement_of_an_indexed_file_takes_its_record_out(ws: Workspace) -> None:
    ws.add(*GOOD)
    ws.index()
    data = package_bytes(PackageSpec("good", "1.0"))
    ws.put("noarch", "good-1.0-0.conda", data[: len(data) // 3])

    noarch = by_subdir(ws.index())["noarch"]

    assert [q.reason for q in noarch.quarantined] == ["corrupt"]
    assert set(ws.records("noarch")) == {"good-1.0-0.tar.bz2"}
    assert "good" in ws.shard_index("noarch")


def test_a_mirrored_file_whose_bytes_changed_is_quarantined_and_leaves_the_index(
    tmp_path: Path, make_site: Any
) -> None:
    from tests.support.builder import build_channel

    upstream = tmp_path / "upstream"
    build_channel(
        upstream,
        [
            PackageSpec("m", "1.0", subdir="linux-64"),
            PackageSpec("n", "1.0", subdir="linux-64"),
            PackageSpec("o", "1.0"),
        ],
    )
    site = make_site(upstream.as_uri())
    assert site.sync().ok
    mirrored = site.subdir("up", "linux-64") / "m-1.0-0.conda"
    upstream_record = json.loads((upstream / "linux-64" / "repodata.json").read_bytes())
    assert (
        hashes(mirrored)["sha256"] == upstream_record["packages.conda"]["m-1.0-0.conda"]["sha256"]
    )
    other = package_bytes(PackageSpec("m", "1.0", subdir="linux-64", files={"x": b"tampered"}))
    mirrored.write_bytes(other)

    ws = Workspace(
        tmp_path / "unused", state_dir=site.state, tree_root=site.root, local_channel=False
    )
    report = ws.index(channel="up")

    (bad,) = by_subdir(report)["linux-64"].quarantined
    assert (bad.filename, bad.reason) == ("m-1.0-0.conda", "mismatch")
    assert not mirrored.exists()
    moved = site.state / "quarantine" / "up" / "linux-64" / "m-1.0-0.conda"
    assert moved.read_bytes() == other
    reason = moved.with_name("m-1.0-0.conda.reason").read_text()
    assert "no longer match the upstream record" in reason
    document = json.loads((site.subdir("up", "linux-64") / "repodata.json").read_bytes())
    assert set(document["packages.conda"]) == {"n-1.0-0.conda"}
    assert (
        document["packages.conda"]["n-1.0-0.conda"]["sha256"]
        == upstream_record["packages.conda"]["n-1.0-0.conda"]["sha256"]
    )
    assert by_subdir(report)["noarch"].quarantined == ()
