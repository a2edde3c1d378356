"""What the end-to-end fuzzers (tests/e2e/test_fuzz_*.py) found, each minimised into a plain case.

Every test here failed on the code before its fix; docs/reliability.md lists them.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from pathlib import Path

import msgspec
import pytest
import zstandard
from conda_package_streaming.package_streaming import stream_conda_component

from mirror.adapters.archive import read_package
from mirror.adapters.store import Quarantine
from mirror.cli import run
from mirror.core.filters import FilterRules, select
from mirror.core.records import RefusalReason, parse_repodata
from mirror.core.repodata_doc import PublishedRecord, render_repodata
from mirror.core.upstream_shard_records import decode_shard
from mirror.errors import ArchiveError, RepodataError
from mirror.sync.shard_session import ShardSession
from tests.support.builder import PackageSpec, package_bytes
from tests.support.hostile import conda_bytes, file, info_members, special, tar_bytes, zstd
from tests.support.rattler_reads import load_with_rattler
from tests.support.tree_checks import LogTrap

# -- 1. upstream `removed` entries that are no package file name -----------------------------
# rattler reads each entry of `removed` as an archive identifier (<name>-<version>-<build> plus
# .conda or .tar.bz2) and refuses the whole repodata.json for one that is not; mirror published
# upstream's list verbatim, so one odd entry made every client of the subdir fail.

ODD_REMOVED = ["../x", "a\u0000b", "\u00e9", "x.conda", "x-1-0.zip", "x"]
GOOD_REMOVED = ["gone-1.0-0.conda", "old-2-1.tar.bz2"]


def test_removed_entries_that_name_no_package_file_are_not_published(tmp_path: Path) -> None:
    body = json.dumps(
        {"info": {"subdir": "noarch"}, "packages": {}, "removed": [*ODD_REMOVED, *GOOD_REMOVED]}
    ).encode()

    top = parse_repodata(body, source="upstream").top_level
    published = render_repodata("noarch", [], top)

    assert json.loads(published)["removed"] == sorted(GOOD_REMOVED)
    (tmp_path / "noarch").mkdir()
    (tmp_path / "noarch" / "repodata.json").write_bytes(published)
    assert load_with_rattler(tmp_path / "noarch" / "repodata.json", []) == 0


def test_removed_entries_of_an_upstream_shard_that_name_no_package_file_are_dropped() -> None:
    shard = zstandard.ZstdCompressor().compress(
        msgspec.msgpack.encode(
            {"packages": {}, "packages.conda": {}, "removed": [*ODD_REMOVED, *GOOD_REMOVED]}
        )
    )
    digest = hashlib.sha256(shard).hexdigest()

    read = decode_shard(shard, name="gone", sha256_hex=digest, source="shard of gone")

    assert sorted(read.removed) == sorted(GOOD_REMOVED)


# -- 2. a top-level value our own JSON reader cannot hold ----------------------------------------
# `"zz": 1e400` passes msgspec.Raw (and rattler, which ignores the key) but msgspec refuses it
# when decoding: published verbatim, it made `mirror verify` call the tree broken ("not valid
# JSON") and mirror's own readers of the published repodata.json see nothing in it.


def test_an_unknown_top_level_key_our_reader_refuses_is_not_published() -> None:
    body = b'{"info": {"subdir": "noarch"}, "packages": {}, "zz": 1e400, "kept": [1e300]}'

    top = parse_repodata(body, source="upstream").top_level
    published = render_repodata("noarch", [], top)

    assert set(top) == {"info", "kept"}
    assert msgspec.json.decode(published)["kept"] == [1e300]


# -- 3. one record nested deeper than the JSON decoder recurses -------------------------------
# msgspec gives up on the document past ~1,000 levels and the tolerant splitter took over, but
# it refused anything nested deeper than 256 as a broken document: one such record failed its
# whole subdir on every run, where the gate refuses it alone (too_deep).


def test_a_record_nested_thousands_deep_is_refused_alone() -> None:
    good = {
        "name": "good", "version": "1.0", "build": "0", "build_number": 0, "depends": [],
        "sha256": "a" * 64, "size": 10, "subdir": "noarch",
    }  # fmt: skip
    deep = json.dumps({**good, "name": "deep"}).encode()[:-1] + b', "zz": '
    deep += b"[" * 5000 + b"]" * 5000 + b"}"
    body = (
        b'{"info": {"subdir": "noarch"}, "packages.conda": {"deep-1.0-0.conda": '
        + deep
        + b', "good-1.0-0.conda": '
        + json.dumps(good).encode()
        + b"}}"
    )

    selection = select(parse_repodata(body, source="upstream"), FilterRules(), 0, subdir="noarch")

    assert [r.filename for r in selection.records] == ["good-1.0-0.conda"]
    [(filename, reason)] = [(r.filename, r.reason) for r in selection.refused]
    assert (filename, reason) == ("deep-1.0-0.conda", RefusalReason.TOO_DEEP)


def test_a_top_level_key_nested_thousands_deep_still_refuses_the_document() -> None:
    body = b'{"info": {"subdir": "noarch"}, "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    with pytest.raises(RepodataError, match="not valid repodata JSON"):
        parse_repodata(body, source="upstream")


# -- 4. a record upstream lists in `removed` as well ------------------------------------------
# rattler's sparse reader (pixi, the gateway) hides a record whose file name is in `removed`;
# its whole-file reader and conda do not. Published verbatim, such a contradiction made
# clients of the same tree disagree on what it holds. The record wins: `removed` loses it.


def test_a_record_also_listed_in_removed_is_read_alike_by_every_reader(tmp_path: Path) -> None:
    record = {
        "name": "both", "version": "1.0", "build": "0", "build_number": 0, "depends": [],
        "sha256": "a" * 64, "size": 10, "subdir": "noarch",
    }  # fmt: skip
    body = json.dumps(
        {
            "info": {"subdir": "noarch"},
            "packages.conda": {"both-1.0-0.conda": record},
            "removed": ["both-1.0-0.conda", "gone-1.0-0.conda"],
        }
    ).encode()

    parsed = parse_repodata(body, source="upstream")
    published = render_repodata(
        "noarch",
        [PublishedRecord(fn, raw) for fn, (_, raw) in parsed.entries.items()],
        parsed.top_level,
    )

    assert json.loads(published)["removed"] == ["gone-1.0-0.conda"]
    (tmp_path / "noarch").mkdir()
    (tmp_path / "noarch" / "repodata.json").write_bytes(published)
    assert load_with_rattler(tmp_path / "noarch" / "repodata.json", ["both"]) == 1


def test_a_record_also_in_its_upstream_shards_removed_list_is_published_alike() -> None:
    record = {"name": "both", "version": "1.0", "build": "0", "build_number": 0,
              "depends": [], "sha256": bytes(32), "size": 10}  # fmt: skip
    data = zstandard.ZstdCompressor().compress(
        msgspec.msgpack.encode(
            {
                "packages": {},
                "packages.conda": {"both-1.0-0.conda": record},
                "removed": ["both-1.0-0.conda", "both-0.9-0.conda"],
            }
        )
    )
    shard = decode_shard(
        data, name="both", sha256_hex=hashlib.sha256(data).hexdigest(), source="shard of both"
    )
    session = ShardSession(
        label="c/noarch", subdir="noarch", upstream=None, index=None, index_url="",
        validators=None, cache=None, workers=1, redact=str, shards={"both": shard},
    )  # fmt: skip

    top = session.repodata().top_level

    assert json.loads(bytes(top["removed"])) == ["both-0.9-0.conda"]


# -- 5. a file whose name leaves no room for its `.reason` beside it in quarantine --------------
# A package file named with 249-255 bytes is refused (unsafe_name: too long for our temp names)
# and moved to quarantine, but `<name>.reason` is over NAME_MAX: the write failed after the
# move. `mirror index` died with an internal error (the other subdirs never indexed), and a
# drop was reported "ignored" though it had been moved, with no reason written.

LONG_NAME = "x" * 236 + "fz-a-1.0-0.tar.bz2"  # 254 bytes


def test_a_file_named_too_long_for_its_reason_is_quarantined_with_one(tmp_path: Path) -> None:
    source = tmp_path / LONG_NAME
    source.write_bytes(b"data")

    moved = Quarantine(tmp_path / "quarantine").move(source, "chan", "noarch", "unsafe_name: x")

    assert moved.read_bytes() == b"data" and not source.exists()
    reason = moved.with_name(moved.name + ".reason").read_text()
    assert reason.startswith("unsafe_name: x") and LONG_NAME in reason


@pytest.mark.parametrize("cut", range(6))
def test_a_long_name_shortened_in_quarantine_is_never_cut_inside_a_character(
    tmp_path: Path, cut: int
) -> None:
    name = (
        "x" * (215 + cut) + "dL\x84=\x18\u00e6\U000e150b\u00d3\u00c0-1.0-0.conda"
    )  # up to 4-byte chars
    source = tmp_path / name
    source.write_bytes(b"data")

    moved = Quarantine(tmp_path / "quarantine").move(source, "chan", "noarch", "unsafe_name: x")

    assert moved.name.encode("utf-8") and moved.read_bytes() == b"data"
    assert repr(name) in moved.with_name(moved.name + ".reason").read_text()


def test_mirror_index_quarantines_a_file_named_too_long_and_indexes_the_rest(
    tmp_path: Path,
) -> None:
    channel = tmp_path / "tree" / "chan"
    (channel / "noarch").mkdir(parents=True)
    (channel / "linux-64").mkdir()
    (channel / "linux-64" / LONG_NAME).write_bytes(b"data")  # indexed first
    good = PackageSpec("fz-good", "1.0", subdir="noarch")
    (channel / "noarch" / good.filename).write_bytes(package_bytes(good))

    with LogTrap() as trap:
        code = run(["index", str(channel), "--state-dir", str(tmp_path / "state")])

    assert code == 1 and not trap.failures(), trap.failures()
    assert not (channel / "linux-64" / LONG_NAME).exists()
    published = json.loads((channel / "noarch" / "repodata.json").read_bytes())
    assert list(published["packages.conda"]) == [good.filename]


# -- 6. a .conda whose pkg tar is named so that conda reads it and the gate does not ----------
# conda-package-streaming (conda's reader) takes the zip entry whose name *starts with*
# pkg-<stem> as the package's payload, whatever follows; the package gate checked only entries
# ending in .tar.zst. A payload named `pkg-<stem>.tar.zst.orig` (or `.Tar.zst`, or no suffix)
# was thus never checked: '../' members and device files were published, --deep and drops too.


@pytest.mark.parametrize(
    "entry", ["pkg-evil-1.0-0.tar.zst.orig", "pkg-evil-1.0-0.Tar.zst", "pkg-evil-1.0-0"]
)
@pytest.mark.parametrize("deep", [False, True])
def test_a_pkg_tar_under_a_name_conda_reads_is_checked_or_refused(
    tmp_path: Path, entry: str, deep: bool
) -> None:
    payload = zstd(tar_bytes([file("../escaped", b"x"), special("dev/sda", tarfile.BLKTYPE)]))
    data = conda_bytes("evil-1.0-0", zstd(tar_bytes(info_members())), None, extra={entry: payload})
    path = tmp_path / "evil-1.0-0.conda"
    path.write_bytes(data)
    conda_reads = [m.name for _, m in stream_conda_component(str(path), component="pkg")]
    assert conda_reads == ["../escaped", "dev/sda"]  # what makes it hostile

    with pytest.raises(ArchiveError) as refused:
        read_package(path, deep=deep)

    assert refused.value.reason == "unsafe_member" and entry in str(refused.value)


def test_a_second_info_tar_under_a_longer_name_is_refused(tmp_path: Path) -> None:
    info = zstd(tar_bytes(info_members()))
    data = conda_bytes("evil-1.0-0", info, None, extra={"info-evil-1.0-0.tar.zst.x": info})
    path = tmp_path / "evil-1.0-0.conda"
    path.write_bytes(data)

    with pytest.raises(ArchiveError, match=re.escape("info-evil-1.0-0.tar.zst.x")):
        read_package(path)
