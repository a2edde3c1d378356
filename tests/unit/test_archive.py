"""Reading package metadata: real packages read right, and every broken or hostile file is
refused with an ArchiveError that names the file and says why, never a raw library error."""

from __future__ import annotations

import bz2
import hashlib
import io
import json
import os
import random
import tarfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mirror.adapters.archive import ArchiveLimits, PackageInfo, read_package
from mirror.errors import ArchiveError
from tests.conftest import SHARED_REAL
from tests.support import hostile
from tests.support.builder import PackageSpec, package_bytes
from tests.support.hostile import (
    INDEX,
    Member,
    conda_bytes,
    file,
    info_members,
    link,
    pax_record,
    raw,
    special,
    tar_bytes,
    zstd,
)

DEFAULT = ArchiveLimits()
STREAMED = ArchiveLimits(in_memory_below_bytes=0)  # forces the chunked path on any file
BOTH_PATHS = pytest.mark.parametrize("limits", [DEFAULT, STREAMED], ids=["in-memory", "streamed"])
STEM = "evil-1.0-0"


def write(directory: Path, name: str, data: bytes) -> Path:
    path = directory / name
    path.write_bytes(data)
    return path


def refused(path: Path, reason: str, *, deep: bool = False, limits: ArchiveLimits = DEFAULT) -> str:
    """Reading path fails with exactly reason; returns the message, which names the file."""
    with pytest.raises(ArchiveError) as caught:
        read_package(path, deep=deep, limits=limits)
    message = str(caught.value)
    assert caught.value.reason == reason, message
    assert str(path) in message
    return message


def conda_with(directory: Path, info: list[Member], pkg: list[Member] | None = None) -> Path:
    """A .conda with info in its info tar and pkg (one plain file if None) in its pkg tar."""
    pkg_tar = tar_bytes(pkg if pkg is not None else [file("share/evil/ok.txt", b"ok\n")])
    data = conda_bytes(STEM, zstd(tar_bytes(info)), zstd(pkg_tar))
    return write(directory, f"{STEM}.conda", data)


def tar_bz2_with(directory: Path, members: list[Member]) -> Path:
    return write(directory, f"{STEM}.tar.bz2", bz2.compress(tar_bytes(members), 1))


def package_with(directory: Path, fmt: str, members: list[Member]) -> Path:
    """info/ plus members: members in the pkg tar of a .conda, or after info/ in a .tar.bz2."""
    if fmt == ".conda":
        return conda_with(directory, info_members(), members)
    return tar_bz2_with(directory, [*info_members(), *members])


def assert_hashes(info: PackageInfo, data: bytes) -> None:
    assert info.size == len(data)
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.md5 == hashlib.md5(data).hexdigest()


# -- round trip ----------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", [".conda", ".tar.bz2"])
@pytest.mark.parametrize("deep", [False, True], ids=["shallow", "deep"])
@BOTH_PATHS
def test_a_built_package_reads_back_what_the_builder_put_in(
    tmp_path: Path, fmt: str, limits: ArchiveLimits, deep: bool
) -> None:
    spec = PackageSpec(
        "libfoo",
        "1.2.3",
        build="h1_0",
        subdir="linux-64",
        depends=("zlib >=1.2",),
        run_exports={"weak": ["libfoo >=1.2,<2"]},
        fmt=fmt,
        files={"lib/libfoo.so.1": b"\x7fELF" + bytes(5000), "share/doc/libfoo.txt": b"doc\n"},
    )
    data = package_bytes(spec)
    info = read_package(write(tmp_path, spec.filename, data), deep=deep, limits=limits)
    assert info.index == spec.index_json()
    assert info.about == {
        "home": "https://example.invalid/libfoo",
        "license": "MIT",
        "summary": "Test package libfoo",
    }
    assert info.run_exports == {"weak": ["libfoo >=1.2,<2"]}
    assert_hashes(info, data)


@pytest.mark.parametrize("fmt", [".conda", ".tar.bz2"])
def test_run_exports_is_none_when_the_package_has_none(tmp_path: Path, fmt: str) -> None:
    spec = PackageSpec("plain", "1.0", fmt=fmt)
    assert read_package(write(tmp_path, spec.filename, package_bytes(spec))).run_exports is None


@pytest.mark.parametrize("about", [b"not json", b"[1, 2]", b"\xff\xfe{}"])
def test_an_unusable_about_json_reads_as_empty(tmp_path: Path, about: bytes) -> None:
    members = [*info_members(), file("info/about.json", about)]
    assert read_package(conda_with(tmp_path, members)).about == {}


def test_a_multistream_tar_bz2_as_parallel_bzip2_writes_reads_fine(tmp_path: Path) -> None:
    tar = tar_bytes([*info_members(), file("share/x.txt", b"x" * 2000)])
    data = b"".join(bz2.compress(tar[i : i + 1024]) for i in range(0, len(tar), 1024))
    path = write(tmp_path, f"{STEM}.tar.bz2", data)
    assert read_package(path).index == INDEX
    assert read_package(path, deep=True, limits=STREAMED).index == INDEX


def test_an_info_tar_in_several_zstd_frames_reads_fine(tmp_path: Path) -> None:
    tar = tar_bytes(info_members(run_exports={"strong": ["evil"]}))
    frames = zstd(tar[:1024]) + zstd(tar[1024:])
    path = write(tmp_path, f"{STEM}.conda", conda_bytes(STEM, frames, zstd(tar_bytes([]))))
    assert read_package(path, deep=True).run_exports == {"strong": ["evil"]}


@pytest.mark.parametrize(
    "fmt",
    [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT],
    ids=["pax", "gnu", "ustar"],
)
def test_long_and_odd_member_names_are_read_as_tarfile_reads_them(tmp_path: Path, fmt: int) -> None:
    index = json.dumps(INDEX).encode()
    # Over 100 characters: a pax path, a GNU long name or a ustar prefix, per format.
    long_about = "info/" + "./" * 50 + "about.json"
    members = [file("./info/index.json", index), file(long_about, b'{"home": "x"}')]
    members.append(file("share/" + "d" * 90 + "/" + "f" * 60, b"long"))
    tar = tar_bytes(members, fmt=fmt)
    with tarfile.open(fileobj=io.BytesIO(tar)) as read_back:
        assert read_back.getnames()[1] == long_about  # as conda's extractor reads it
    path = write(tmp_path, f"{STEM}.tar.bz2", bz2.compress(tar))
    info = read_package(path, deep=True)
    assert (info.index, info.about) == (INDEX, {"home": "x"})


def test_a_tar_bz2_with_info_last_is_read_within_the_package_limit(tmp_path: Path) -> None:
    path = tar_bz2_with(tmp_path, [file("share/big.bin", os.urandom(3 << 20)), *info_members()])
    assert read_package(path).index == INDEX  # every member is read anyway
    refused(path, "too_large", limits=ArchiveLimits(max_deep_bytes=1 << 20))


# -- real packages from public projects ----------------------------------------------------


def real_packages(*subdirs: str) -> list[Path]:
    if not SHARED_REAL.is_dir():
        return []
    return [
        path
        for subdir in subdirs
        for path in sorted((SHARED_REAL / subdir).rglob("*"))
        if path.name.endswith((".conda", ".tar.bz2"))
    ]


GOOD_REAL = real_packages(
    "packages",
    "conda_format_repo",
    "edge/sparse",
    "edge/index_hotfix_pkgs",
    "channels/conda-test-recipes",
)
# Anaconda defaults zlib .conda files (2019; hashes match the upstream records) whose pkg tar
# has symlinks with an EMPTY target, where their .tar.bz2 twins have lib/libz.so.1 ->
# libz.so.1.2.11. conda's own extractor fails on them. The package gate calls them corrupt.
EMPTY_SYMLINK_TARGETS = {"zlib-1.2.11-h7b6447c_3.conda", "zlib-1.2.11-h1de35cc_3.conda"}


def needs_real() -> None:
    if not SHARED_REAL.is_dir():
        pytest.skip(f"real test data not present at {SHARED_REAL}")


@pytest.mark.parametrize("path", GOOD_REAL, ids=lambda path: path.name)
def test_real_packages_read_as_conda_package_streaming_reads_them(path: Path) -> None:
    package_streaming = pytest.importorskip("conda_package_streaming.package_streaming")
    expected: dict[str, Any] = {}
    for tar, member in package_streaming.stream_conda_info(path):
        name = member.name.removeprefix("./")
        if name in ("info/index.json", "info/about.json", "info/run_exports.json"):
            handle = tar.extractfile(member)
            assert handle is not None
            expected[name] = json.loads(handle.read())
    data = path.read_bytes()
    if path.name in EMPTY_SYMLINK_TARGETS:
        assert "empty target" in refused(path, "corrupt")
        return
    for limits in (DEFAULT, STREAMED):
        info = read_package(path, limits=limits)
        assert info.index == expected["info/index.json"]
        assert info.about == expected.get("info/about.json", {})
        assert info.run_exports == expected.get("info/run_exports.json")
        assert_hashes(info, data)


@pytest.mark.parametrize("path", GOOD_REAL, ids=lambda path: path.name)
def test_real_packages_pass_a_deep_scan(path: Path) -> None:
    """Deep adds every payload file's sha256 against info/paths.json; real packages agree."""
    if path.name in EMPTY_SYMLINK_TARGETS:
        assert "empty target" in refused(path, "corrupt", deep=True)
    else:
        assert read_package(path, deep=True) == read_package(path)


def test_real_hashes_match_the_upstream_repodata_records() -> None:
    needs_real()
    checked = 0
    for repodata_path in sorted((SHARED_REAL / "conda_format_repo").glob("*/repodata.json")):
        repodata = json.loads(repodata_path.read_text())
        for group in ("packages", "packages.conda"):
            for filename, record in repodata.get(group, {}).items():
                path = repodata_path.parent / filename
                if path.exists() and filename not in EMPTY_SYMLINK_TARGETS:
                    info = read_package(path)
                    got = (info.size, info.sha256, info.md5, info.index["name"])
                    assert got == (record["size"], record["sha256"], record["md5"], record["name"])
                    checked += 1
    assert checked == 8 - len(EMPTY_SYMLINK_TARGETS)


@pytest.mark.parametrize(
    ("relative", "reason", "says"),
    [
        ("edge/corrupt/noarch/another_bad_package.conda", "corrupt", "empty"),
        ("edge/corrupt/noarch/bad_package.tar.bz2", "corrupt", "bzip2"),
        # Re-zipped by hand: members under Users/.../, deflated. rattler-index panics on it.
        (
            "edge/rezipped/linux-64/ca-certificates-2024.7.4-hbcca054_0.conda",
            "missing_index",
            "Users/",
        ),
        # Not a package at all, though it ends in .tar.bz2 (a test channel's old repodata).
        ("channels/mamba-channel_a/linux-64/repodata.tar.bz2", "missing_index", "index.json"),
    ],
)
def test_real_broken_files_are_refused_with_a_reason(relative: str, reason: str, says: str) -> None:
    needs_real()
    for deep in (False, True):
        assert says in refused(SHARED_REAL / relative, reason, deep=deep)


# -- broken files -----------------------------------------------------------------------------


def good_conda() -> bytes:
    return package_bytes(PackageSpec("evil", "1.0", build="0", files={"a.txt": b"a" * 3000}))


def good_tar_bz2() -> bytes:
    spec = PackageSpec("evil", "1.0", build="0", fmt=".tar.bz2", files={"a.txt": b"a" * 3000})
    return package_bytes(spec)


def with_wrong_crc(data: bytes, member: str) -> bytes:
    """The same zip with member's CRC-32 wrong in its local and central headers."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        crc = zf.getinfo(member).CRC.to_bytes(4, "little")
    assert data.count(crc) == 2
    return data.replace(crc, bytes([crc[0] ^ 1]) + crc[1:])


def conda_raw(directory: Path, info_tar_zst: bytes | None, **kwargs: Any) -> Path:
    return write(directory, f"{STEM}.conda", conda_bytes(STEM, info_tar_zst, **kwargs))


def index_raw(directory: Path, raw_index: bytes) -> Path:
    return conda_with(directory, info_members(raw_index=raw_index))


def made(path: Path, make: Callable[[Path], object]) -> Path:
    make(path)
    return path


INFO_TAR_ZST = zstd(tar_bytes(info_members()))
Maker = Callable[[Path], Path]

BROKEN: dict[str, tuple[Maker, str]] = {
    "empty .conda": (lambda d: write(d, f"{STEM}.conda", b""), "corrupt"),
    "empty .tar.bz2": (lambda d: write(d, f"{STEM}.tar.bz2", b""), "corrupt"),
    "truncated zip": (lambda d: write(d, f"{STEM}.conda", good_conda()[:-300]), "corrupt"),
    "truncated tar.bz2": (lambda d: write(d, f"{STEM}.tar.bz2", good_tar_bz2()[:-40]), "corrupt"),
    "not a zip": (lambda d: write(d, f"{STEM}.conda", b"PK\x03\x04 not really"), "corrupt"),
    "zip without info tar": (lambda d: conda_raw(d, None), "missing_index"),
    "renamed .conda": (
        lambda d: write(d, "other-1.0-0.conda", conda_bytes(STEM, INFO_TAR_ZST)),
        "missing_index",
    ),
    "info tar twice": (
        lambda d: conda_raw(d, INFO_TAR_ZST, extra={f"info-{STEM}.tar.zst": INFO_TAR_ZST}),
        "corrupt",
    ),
    "deflated tars": (
        lambda d: conda_raw(d, INFO_TAR_ZST, compress_type=zipfile.ZIP_DEFLATED),
        "unsupported",
    ),
    "wrong CRC-32": (
        lambda d: write(d, f"{STEM}.conda", with_wrong_crc(good_conda(), f"info-{STEM}.tar.zst")),
        "corrupt",
    ),
    "info tar without index.json": (
        lambda d: conda_with(d, [file("info/about.json", b"{}")]),
        "missing_index",
    ),
    "tar.bz2 without index.json": (
        lambda d: tar_bz2_with(d, [file("info/about.json", b"{}"), file("bin/x", b"x")]),
        "missing_index",
    ),
    "index.json not JSON": (lambda d: index_raw(d, b"{name: evil}"), "invalid_json"),
    "index.json not UTF-8": (
        lambda d: index_raw(d, '{"name": "évil"}'.encode("latin-1")),
        "invalid_json",
    ),
    "index.json a JSON list": (lambda d: conda_with(d, info_members([1, 2])), "invalid_json"),
    "index.json with NaN": (lambda d: index_raw(d, b'{"x": NaN}'), "invalid_json"),
    "index.json nested 100000 deep": (
        lambda d: index_raw(d, b'{"a":' * 100_000 + b"1" + b"}" * 100_000),
        "invalid_json",
    ),
    "index.json of 20 MB": (
        lambda d: index_raw(d, b'{"x": "' + b"a" * 20_000_000 + b'"}'),
        "too_large",
    ),
    "run_exports.json not JSON": (
        lambda d: conda_with(d, [*info_members(), file("info/run_exports.json", b"weak")]),
        "invalid_json",
    ),
    "index.json twice": (lambda d: conda_with(d, [*info_members(), *info_members()]), "corrupt"),
    "index.json a symlink": (
        lambda d: conda_with(d, [link("info/index.json", "../etc/passwd")]),
        "corrupt",
    ),
    "corrupt zstd frame": (
        lambda d: conda_raw(d, INFO_TAR_ZST[:12] + bytes(range(256)) + INFO_TAR_ZST[12:]),
        "corrupt",
    ),
    "not zstd at all": (lambda d: conda_raw(d, b"just some text, no frame"), "corrupt"),
    "truncated zstd frame": (lambda d: conda_raw(d, INFO_TAR_ZST[:-20]), "corrupt"),
    "corrupt bz2 stream": (
        lambda d: write(d, f"{STEM}.tar.bz2", b"BZh91AY&SY" + bytes(range(256)) * 4),
        "corrupt",
    ),
    "tar header checksum wrong": (
        lambda d: write(
            d,
            f"{STEM}.tar.bz2",
            bz2.compress(tar_bytes(info_members()).replace(b"index.json", b"index.jsoN", 1)),
        ),
        "corrupt",
    ),
    "tar without end marker": (
        lambda d: write(d, f"{STEM}.tar.bz2", bz2.compress(tar_bytes(info_members())[:1024])),
        "corrupt",
    ),
    "not a package name": (lambda d: write(d, f"{STEM}.zip", good_conda()), "unsupported"),
    "missing file": (lambda d: d / f"{STEM}.conda", "io"),
    "a directory": (lambda d: made(d / f"{STEM}.conda", Path.mkdir), "io"),
    "a fifo (would block a plain open)": (lambda d: made(d / f"{STEM}.tar.bz2", os.mkfifo), "io"),
}


@pytest.mark.parametrize("case", list(BROKEN))
@BOTH_PATHS
def test_broken_files_are_refused_with_the_exact_reason(
    tmp_path: Path, case: str, limits: ArchiveLimits
) -> None:
    maker, reason = BROKEN[case]
    path = maker(tmp_path)
    refused(path, reason, limits=limits)
    refused(path, reason, deep=True, limits=limits)


def test_a_renamed_conda_says_what_it_was_built_as(tmp_path: Path) -> None:
    message = refused(BROKEN["renamed .conda"][0](tmp_path), "missing_index")
    assert f"info-{STEM}.tar.zst" in message


def test_info_after_300_mb_of_payload_is_refused_fast(tmp_path: Path) -> None:
    payload = tarfile.TarInfo("share/payload.bin")
    payload.size = 304 << 20
    data = hostile.bz2_multistream(payload.tobuf(), payload.size, tar_bytes(info_members()))
    assert len(data) < 1 << 20
    path = write(tmp_path, f"{STEM}.tar.bz2", data)
    started = time.monotonic()
    assert "decompression bomb" in refused(path, "too_large")
    assert time.monotonic() - started < 5


def test_a_deep_scan_stops_a_decompression_bomb_at_its_limit(tmp_path: Path) -> None:
    bomb = hostile.zstd_zero_bomb(10, 1 << 30)  # 10 GiB of zeros in 320 KiB
    assert len(bomb) < 1 << 20
    path = write(tmp_path, f"{STEM}.conda", conda_bytes(STEM, INFO_TAR_ZST, bomb))
    for deep in (False, True):  # every read opens the pkg tar
        started = time.monotonic()
        assert "decompression bomb" in refused(path, "too_large", deep=deep)
        assert time.monotonic() - started < 5
    limits = ArchiveLimits(max_ratio=1_000_000)  # then the whole-package limit stops it
    assert "8 GiB" in refused(path, "too_large", limits=limits)


def test_a_deep_scan_counts_members_against_a_limit(tmp_path: Path) -> None:
    path = conda_with(tmp_path, info_members(), [file(f"share/{i}") for i in range(50)])
    refused(path, "too_large", deep=True, limits=ArchiveLimits(max_members=20))


# -- hostile members: what a deep scan is for -------------------------------------------------

UNSAFE: dict[str, list[Member]] = {
    "../x": [file("../x", b"x")],
    "/etc/passwd": [file("/etc/passwd", b"root::0:0::/:/bin/sh\n")],
    "a/../../b": [file("a/../../b", b"b")],
    "..\\..\\windows": [file("..\\..\\windows.txt", b"w")],
    "C:/drive": [file("C:/evil.txt", b"w")],
    "NUL in a name": [file("bin/ok", b"x", pax={"path": "bin/ok\x00.txt"})],
    "newline in a name": [file("bin/fake\nlog line", b"x")],
    "../ in a GNU long name": [raw(b"L", b"../" * 40 + b"x\0"), file("x", b"x")],
    "symlink to /etc/shadow": [link("lib/shadow", "/etc/shadow")],
    "symlink ../../..": [link("lib/up", "../../..")],
    "symlink out through another symlink": [link("lib/out", "here/../.."), link("lib/here", ".")],
    "symlink loop": [link("lib/a", "b"), link("lib/b", "a")],
    "symlink defined twice": [link("lib/a", "x"), link("lib/a", "y")],
    "hardlink to ../outside": [link("lib/hard", "../outside", hard=True)],
    "hardlink to a file not in the package": [link("lib/hard", "etc/passwd", hard=True)],
    "fifo": [special("bin/fifo", tarfile.FIFOTYPE)],
    "char device": [special("dev/null", tarfile.CHRTYPE)],
    "block device": [special("dev/sda", tarfile.BLKTYPE)],
}


@pytest.mark.parametrize("case", list(UNSAFE))
@pytest.mark.parametrize("fmt", [".conda", ".tar.bz2"])
def test_every_read_refuses_unsafe_members(tmp_path: Path, case: str, fmt: str) -> None:
    """The package gate: whoever brings a file (index, a drop, an import), every member is
    checked, not only info/ (a plain `mirror index` used to publish these)."""
    path = package_with(tmp_path, fmt, UNSAFE[case])
    refused(path, "unsafe_member")
    refused(path, "unsafe_member", deep=True)
    refused(path, "unsafe_member", deep=True, limits=STREAMED)


def test_unsafe_names_are_shown_escaped_in_the_message(tmp_path: Path) -> None:
    path = package_with(tmp_path, ".conda", UNSAFE["newline in a name"])
    message = refused(path, "unsafe_member", deep=True)
    assert "\n" not in message
    assert "'bin/fake\\nlog line'" in message


@pytest.mark.parametrize("fmt", [".conda", ".tar.bz2"])
def test_a_deep_scan_accepts_links_that_stay_inside(tmp_path: Path, fmt: str) -> None:
    members = [
        file("lib/libz.so.1.3", b"\x7fELF"),
        link("lib/libz.so.1", "libz.so.1.3"),
        link("lib/libz.so", "libz.so.1"),
        link("lib/libz-hard.so", "lib/libz.so.1.3", hard=True),
        link("bin/libdir", "../lib"),
        link("share/self", "."),
        link("share/dangling", "../bin/python3.12"),  # another package provides it
        file("./share/doc/README", b"fine"),
    ]
    path = package_with(tmp_path, fmt, members)
    assert read_package(path, deep=True).index == INDEX


# Tar constructions where tar readers disagree on what a member is: refused, not guessed at.
AMBIGUOUS: dict[str, tuple[list[Member], str]] = {
    "symlink with data": ([link("lib/l", "x", data=bytes(512))], "corrupt"),
    "global pax header renaming every member": ([raw(b"g", pax_record("path", "x"))], "corrupt"),
    "pax path and GNU long name on one member": (
        [raw(b"x", pax_record("path", "a")), raw(b"L", b"b\0"), file("c", b"c")],
        "corrupt",
    ),
    "malformed pax header": ([raw(b"x", b"garbage"), file("c", b"c")], "corrupt"),
    "pax size not a number": ([raw(b"x", pax_record("size", "0x10")), file("c", b"c")], "corrupt"),
    "nine chained extension headers": (
        [*(raw(b"x", pax_record(f"comment{i}", "hi")) for i in range(9)), file("c", b"c")],
        "corrupt",
    ),
    "GNU sparse file": ([file("s", b"s", pax={"GNU.sparse.size": "9"})], "unsupported"),
    "info file in the pkg tar": ([file("info/index.json", b"{}")], "corrupt"),
}


@pytest.mark.parametrize("case", list(AMBIGUOUS))
def test_a_deep_scan_refuses_ambiguous_tar_headers(tmp_path: Path, case: str) -> None:
    members, reason = AMBIGUOUS[case]
    refused(package_with(tmp_path, ".conda", members), reason, deep=True)


def test_a_global_pax_header_is_refused_even_in_a_shallow_read(tmp_path: Path) -> None:
    # tarfile would read every member, info/index.json included, as "../x".
    tar = tar_bytes(info_members(), global_pax={"path": "../x"})
    path = write(tmp_path, f"{STEM}.tar.bz2", bz2.compress(tar))
    refused(path, "corrupt")


# -- no raw errors, whatever the damage -------------------------------------------------------


@pytest.mark.parametrize("fmt", [".conda", ".tar.bz2"])
def test_no_damage_ever_escapes_as_a_raw_library_error(tmp_path: Path, fmt: str) -> None:
    """Truncations and flipped bytes anywhere: every read succeeds or raises ArchiveError."""
    spec = PackageSpec(
        "fuzz", "1.0", build="0", fmt=fmt, run_exports={"weak": ["fuzz"]}, files={"a": b"a" * 700}
    )
    good = package_bytes(spec)
    rng = random.Random(20_260_601)
    path = tmp_path / spec.filename
    reasons: set[str] = set()
    for i in range(600):
        data = bytearray(good)
        if i % 3 == 0:
            del data[rng.randrange(len(data)) :]
        else:
            for _ in range(1 + i % 4):
                data[rng.randrange(len(data))] = rng.randrange(256)
        path.write_bytes(bytes(data))
        for deep in (False, True):
            try:
                read_package(path, deep=deep, limits=STREAMED if i % 2 else DEFAULT)
                reasons.add("ok")
            except ArchiveError as exc:
                assert str(path) in str(exc)
                reasons.add(exc.reason)
    assert {"ok", "corrupt"} <= reasons
