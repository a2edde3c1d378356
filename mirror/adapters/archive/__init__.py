"""Read a conda package file's metadata and hashes in one pass, refusing damaged or hostile files.

Package files come from outside (upstream mirrors, drop folders nobody vouches for), so every
size is bounded before it is allocated and decompression is pulled in bounded chunks against a
byte budget. Tar headers are walked by hand: the walk reads names exactly as CPython's tarfile
(conda's extractor) does and refuses the constructions where tar readers disagree instead of
picking one reading. That walk is also what makes this several times faster than tarfile.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NamedTuple

import msgspec
import zstandard

from mirror.adapters.archive.deep import DeepCheck
from mirror.adapters.archive.payload import PayloadHashes
from mirror.adapters.archive.refusal import MiB, Refused, show
from mirror.adapters.archive.streams import Budget, Bz2Pull, Range, Source, Stream, zstd_pull
from mirror.adapters.archive.tar import (
    ABOUT_JSON,
    INDEX_JSON,
    PATHS_JSON,
    RUN_EXPORTS_JSON,
    TarScan,
)
from mirror.errors import ArchiveError

__all__ = ["ArchiveLimits", "PackageInfo", "read_package"]

CONDA = ".conda"
TAR_BZ2 = ".tar.bz2"

_ADVICE = {
    "io": "check that it is a readable regular file",
    "unsupported": "conda's own tools never write that: re-build the package with them",
    "corrupt": "it is damaged or incomplete: copy it again, or re-build the package",
    "missing_index": "this is not a conda package: re-build it with conda-build or rattler-build",
    "invalid_json": "fix the recipe's metadata and re-build the package",
    "too_large": "refused as hostile; re-build the package if it is genuine",
    "unsafe_member": "installing it could write outside the environment or create devices: "
    "do not use this file",
}
# Decoder errors are translated where they happen; this net keeps the promise that no library
# exception escapes should some hostile input find a path nobody foresaw.
_UNFORESEEN = (ValueError, EOFError, struct.error, zipfile.BadZipFile, zstandard.ZstdError)


@dataclass(frozen=True)
class ArchiveLimits:
    """Bounds on what reading one package may cost; past them the package is refused."""

    max_member_bytes: int = 16 * MiB  # one info/*.json we parse
    max_info_bytes: int = 256 * MiB  # what a .conda's info tar may decompress to
    max_deep_bytes: int = 8 << 30  # what a whole package may decompress to, all tars together
    max_members: int = 1_000_000  # members of all tars together
    # a bomb decompresses to thousands of times its size; real packages to under 50x
    max_ratio: int = 200  # decompressed / file size, past max_info_bytes
    in_memory_below_bytes: int = 32 * MiB  # smaller files are read with one read() call


@dataclass(frozen=True)
class PackageInfo:
    index: dict[str, Any]  # info/index.json
    about: dict[str, Any]  # info/about.json; {} when absent or unusable
    run_exports: dict[str, Any] | None  # info/run_exports.json; None when absent
    size: int  # of the whole file
    sha256: str  # hex, of the whole file
    md5: str  # hex, of the whole file


def read_package(
    path: Path, *, deep: bool = False, limits: ArchiveLimits = ArchiveLimits()
) -> PackageInfo:
    """Metadata and hashes of the package file at path, reading it from disk once.

    deep also walks every member of every tar in the package (for files nobody vouches for)
    and refuses what could escape or abuse the environment it is installed into.
    Raises ArchiveError, with a `reason`, for anything that is not a sound conda package.
    """
    if not path.name.endswith((CONDA, TAR_BZ2)):
        raise ArchiveError(
            f"{path}: not a conda package (the name must end in .conda or .tar.bz2)",
            reason="unsupported",
        )
    try:
        with _open_regular(path) as file:
            return _read(file, path.name, deep, limits)
    except Refused as refused:
        raise ArchiveError(
            f"{path}: {refused.detail}; {_ADVICE[refused.reason]}", reason=refused.reason
        ) from refused.__cause__
    except OSError as exc:
        raise ArchiveError(
            f"{path}: cannot read: {exc.strerror or exc}; {_ADVICE['io']}", reason="io"
        ) from exc
    except _UNFORESEEN as exc:
        raise ArchiveError(
            f"{path}: unreadable ({type(exc).__name__}: {exc}); {_ADVICE['corrupt']}",
            reason="corrupt",
        ) from exc


def _open_regular(path: Path) -> io.FileIO:
    # O_NONBLOCK: a fifo dropped where packages go must not hang the indexer in open().
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Refused("io", "not a regular file")
        return io.FileIO(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _read(file: io.FileIO, name: str, deep: bool, limits: ArchiveLimits) -> PackageInfo:
    size = os.fstat(file.fileno()).st_size
    if size == 0:
        raise Refused("corrupt", "the file is empty")
    data = _read_whole(file, size) if size < limits.in_memory_below_bytes else None
    found: dict[str, bytes] = {}
    # The member checks (names, links, devices, counts, bombs) are the package gate: every
    # file entering the tree passes them, whoever brings it. `deep` adds the expensive part:
    # every payload file's bytes against the sha256 and size info/paths.json gives it.
    checker = DeepCheck(limits.max_members)
    hashes = PayloadHashes() if deep else None
    budget = Budget(limits.max_deep_bytes, "the package decompresses to more than {}")
    ratio = Budget(
        max(limits.max_info_bytes, limits.max_ratio * size),
        f"the package decompresses to over {limits.max_ratio} times its size ({{}}): "
        "a decompression bomb",
    )
    if name.endswith(CONDA):
        members = _conda_members(io.BytesIO(data) if data is not None else file, name)
        file.seek(0)
        source = Source(file, size, data)
        for member in members:
            budgets = [budget, ratio]
            if member.is_info:
                budgets.append(Budget(limits.max_info_bytes, "info/ decompresses to over {}"))
            stored = _open_member(source, member)
            found_here = found if member.is_info else None
            scan = TarScan(found_here, checker, limits.max_member_bytes, hashes)
            scan.walk(Stream(zstd_pull(stored), budgets))
            if stored.drain() != member.crc:
                raise Refused("corrupt", f"{member.name} fails its CRC-32 check")
    else:
        source = Source(file, size, data)
        scan = TarScan(found, checker, limits.max_member_bytes, hashes)
        scan.walk(Stream(Bz2Pull(source.range(0, size)).pull, [budget, ratio]))
    checker.finish()
    if hashes is not None:
        hashes.check(found.get(PATHS_JSON))
    sha256, md5 = source.finish()
    return PackageInfo(_index(found), _about(found), _run_exports(found), size, sha256, md5)


# -- the file, read once ----------------------------------------------------------------------


def _read_whole(file: io.FileIO, size: int) -> bytes:
    data = file.read(size + 1)  # one byte more tells us the file grew while we read it
    if data is None or len(data) != size:
        raise Refused("corrupt", "the file changed size while it was read (still being copied?)")
    return data


# -- the .conda zip --------------------------------------------------------------------------


class _ZipMember(NamedTuple):
    name: str
    header_offset: int
    size: int
    crc: int
    raw_name: bytes  # what the local header must repeat
    is_info: bool


def _conda_members(zip_file: IO[bytes], name: str) -> list[_ZipMember]:
    """The zip's tars, in file order, once every entry's name is known to be harmless."""
    info_name = f"info-{name.removesuffix(CONDA)}.tar.zst"
    try:
        entries = zipfile.ZipFile(zip_file).infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, struct.error) as exc:
        raise Refused("corrupt", f"not a valid zip archive ({exc})") from exc
    infos = [entry for entry in entries if entry.filename == info_name]
    if len(infos) != 1:
        if infos:
            raise Refused("corrupt", f"the zip holds {info_name} twice")
        # conda looks the info tar up by the file's own name, so a renamed file is unusable.
        others = sorted(entry.filename for entry in entries if "info-" in entry.filename)
        hint = f" (it has {show(others[0])}: renamed, or re-zipped by hand?)" if others else ""
        raise Refused("missing_index", f"no {info_name} member in the zip{hint}")
    members = []
    for entry in entries:
        _check_entry_name(entry.filename)
        _check_component_name(entry.filename, name.removesuffix(CONDA))
        if not entry.filename.endswith(".tar.zst"):
            continue
        if entry.flag_bits & 0x1:
            raise Refused("unsupported", f"{entry.filename} is encrypted")
        if entry.compress_type != zipfile.ZIP_STORED or entry.compress_size != entry.file_size:
            raise Refused("unsupported", f"{entry.filename} is compressed inside the zip")
        raw_name = entry.orig_filename.encode("utf-8" if entry.flag_bits & 0x800 else "cp437")
        is_info = entry.filename == info_name
        members.append(
            _ZipMember(
                entry.filename, entry.header_offset, entry.file_size, entry.CRC, raw_name, is_info
            )
        )
    return sorted(members, key=lambda member: member.header_offset)


def _check_entry_name(name: str) -> None:
    """A zip entry is never extracted by conda, but one named like a path out of the folder
    (zip-slip) betrays a hostile file: refuse it as such, before any data is read."""
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or ".." in parts or any(ord(c) < 32 for c in name):
        raise Refused("unsafe_member", f"the zip holds an entry named {show(name)}")


def _check_component_name(name: str, stem: str) -> None:
    """conda (conda-package-streaming) takes the entry whose name *starts with* pkg-<stem> or
    info-<stem> as that tar, whatever follows; rattler takes every entry ending in .tar.zst,
    and only those are walked here. An entry conda would read under another name would never
    be checked: refuse it."""
    for component in ("pkg", "info"):
        prefix = f"{component}-{stem}"
        if name.startswith(prefix) and name != f"{prefix}.tar.zst":
            raise Refused(
                "unsafe_member",
                f"the zip holds {show(name)}, which conda reads as the package's {component} "
                "tar although it is not named like one",
            )


def _open_member(source: Source, member: _ZipMember) -> Range:
    """The stored bytes of member, once its local header agrees with the zip directory."""
    header = bytes(source.range(member.header_offset, member.header_offset + 30).read())
    if len(header) != 30 or header[:4] != b"PK\x03\x04":
        raise Refused("corrupt", f"bad zip local header for {member.name}")
    name_len, extra_len = struct.unpack_from("<HH", header, 26)
    start = member.header_offset + 30
    if bytes(source.range(start, start + name_len).read()) != member.raw_name:
        raise Refused("corrupt", f"the zip names {member.name} differently in two places")
    data_start = start + name_len + extra_len
    return source.range(data_start, data_start + member.size)


# -- the JSON we return ---------------------------------------------------------------------

_JSON_OBJECT = msgspec.json.Decoder(dict[str, Any])  # strict UTF-8, no NaN, objects only


def _decode(data: bytes, key: str) -> dict[str, Any]:
    try:
        return _JSON_OBJECT.decode(data)
    except msgspec.ValidationError as exc:
        raise Refused("invalid_json", f"{key} is not a JSON object") from exc
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise Refused("invalid_json", f"{key} is not valid UTF-8 JSON ({exc})") from exc


def _index(found: Mapping[str, bytes]) -> dict[str, Any]:
    if INDEX_JSON not in found:
        raise Refused("missing_index", f"there is no {INDEX_JSON}")
    return _decode(found[INDEX_JSON], INDEX_JSON)


def _about(found: Mapping[str, bytes]) -> dict[str, Any]:
    # about.json is decoration (summary, home, licence text): unusable means empty, not refused.
    try:
        return _decode(found[ABOUT_JSON], ABOUT_JSON) if ABOUT_JSON in found else {}
    except Refused:
        return {}


def _run_exports(found: Mapping[str, bytes]) -> dict[str, Any] | None:
    if RUN_EXPORTS_JSON not in found:
        return None
    return _decode(found[RUN_EXPORTS_JSON], RUN_EXPORTS_JSON)
