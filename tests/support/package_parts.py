"""The pieces hostile package files are made of (tests/support/package_mutations.py draws them).

`Parts` is what a package is assembled from: info/index.json (raw bytes: it may be anything),
about.json, run_exports.json, paths.json, other info/ members, the payload members, and the
container tricks; `assemble` writes the file in either format. Member tables give the payload
tricks with their verdict (`BAD_MEMBERS`: must be refused by the package gate;
`ODD_BUT_FINE`: must be accepted). `read_real` takes a real package file apart into the same
pieces, so that real packages are mutated as built ones are.
"""

from __future__ import annotations

import bz2
import functools
import hashlib
import io
import json
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import zstandard

from tests.support import hostile
from tests.support.hostile import Member, conda_bytes, file, link, special, tar_bytes, zstd


class Verdict(Enum):
    OK = "ok"
    BAD = "bad"
    EITHER = "either"

    def __and__(self, other: Verdict) -> Verdict:
        if Verdict.BAD in (self, other):
            return Verdict.BAD
        return Verdict.EITHER if Verdict.EITHER in (self, other) else Verdict.OK


@dataclass(frozen=True)
class Trick:
    """Something done to a package, and what it does to the shallow and the deep verdict."""

    what: str
    shallow: Verdict = Verdict.OK
    deep: Verdict = Verdict.OK


@dataclass
class Parts:
    """The pieces a package is assembled from, as the tricks leave them."""

    stem: str
    fmt: str
    index_raw: bytes
    about: bytes | None
    run_exports: bytes | None
    payload: list[Member]
    paths_json: bytes | None = None
    info_other: list[Member] = field(default_factory=list)  # a real package's other info/
    zip_extra: dict[str, bytes] = field(default_factory=dict)
    zip_deflated: bool = False
    pkg_bomb: bool = False
    pkg_entry: str | None = None  # the pkg tar's zip entry under another name than conda's
    tricks: list[Trick] = field(default_factory=list)


# -- payload members ----------------------------------------------------------------------------

PAYLOAD_DATA = b"payload\n"
BAD_MEMBERS: dict[str, Callable[[], list[Member]]] = {
    "member ../x": lambda: [file("../x", PAYLOAD_DATA)],
    "member /abs": lambda: [file("/tmp/fuzz-abs", PAYLOAD_DATA)],
    "member a/../../b": lambda: [file("a/../../b", PAYLOAD_DATA)],
    "member ..\\..\\w": lambda: [file("..\\..\\w.txt", PAYLOAD_DATA)],
    "member C:\\x": lambda: [file("C:\\x.txt", PAYLOAD_DATA)],
    "member with NUL": lambda: [file("bin/ok", PAYLOAD_DATA, pax={"path": "bin/ok\x00.txt"})],
    "member with a control char": lambda: [file("share/a\x01b", PAYLOAD_DATA)],
    "member path of 5000 chars": lambda: [file("share/" + "d/" * 2500 + "x", PAYLOAD_DATA)],
    "symlink to /etc/passwd": lambda: [link("lib/s", "/etc/passwd")],
    "symlink ../../..": lambda: [link("lib/up", "../../..")],
    "symlink chain out": lambda: [link("lib/b", "."), link("lib/a", "b/../..")],
    "symlink empty target": lambda: [link("lib/e", "")],
    "symlink twice": lambda: [link("lib/t", "x"), link("lib/t", "y")],
    "symlink target with a newline": lambda: [link("lib/n", "a\nb")],
    "hardlink to a missing file": lambda: [link("lib/h", "etc/passwd", hard=True)],
    "hardlink out": lambda: [link("lib/h", "../outside", hard=True)],
    "link with data": lambda: [link("lib/d", "x", data=b"data")],
    "fifo": lambda: [special("bin/f", tarfile.FIFOTYPE)],
    "char device": lambda: [special("dev/null", tarfile.CHRTYPE)],
    "block device": lambda: [special("dev/sda", tarfile.BLKTYPE)],
    "info/index.json in the payload": lambda: [file("info/index.json", b"{}")],
}
ODD_BUT_FINE: dict[str, Callable[[], list[Member]]] = {
    "unicode names": lambda: [file("share/é/ünï-🐍.txt", PAYLOAD_DATA)],
    "spaces and quotes": lambda: [file("share/a b/'q' \"d\".txt", PAYLOAD_DATA)],
    "a 200-char component": lambda: [file("share/" + "c" * 200, PAYLOAD_DATA)],
    "a 3000-char path": lambda: [file("share/" + "p/" * 1500 + "x", PAYLOAD_DATA)],
    "100 folders deep": lambda: [file("share/" + "n/" * 100 + "x", PAYLOAD_DATA)],
    "./ prefix": lambda: [file("./share/dot.txt", PAYLOAD_DATA)],
    "... and trailing dot": lambda: [file("share/.../x.", PAYLOAD_DATA)],
    "empty file": lambda: [file("share/empty", b"")],
    "relative symlink": lambda: [
        file("lib/libx.so.1", PAYLOAD_DATA),
        link("lib/libx.so", "libx.so.1"),
    ],
    "symlink to a folder inside": lambda: [
        file("share/d/f", PAYLOAD_DATA),
        link("lib/d", "../share/d"),
    ],
    "dangling symlink inside": lambda: [link("lib/gone", "nothing-here")],
    "hardlink to an earlier file": lambda: [
        file("bin/tool", PAYLOAD_DATA),
        link("bin/tool2", "bin/tool", hard=True),
    ],
}


def paths_json_of(payload: list[Member]) -> bytes:
    entries = []
    for info, data in payload:
        if info.isreg():
            key = "/".join(p for p in info.name.split("/") if p not in ("", "."))
            entries.append({"_path": key, "path_type": "hardlink",
                            "sha256": hashlib.sha256(data).hexdigest(),
                            "size_in_bytes": len(data)})  # fmt: skip
    return json.dumps({"paths": entries, "paths_version": 1}).encode()


def _info_members(parts: Parts) -> list[Member]:
    members = [file("info/index.json", parts.index_raw)]
    if parts.about is not None:
        members.append(file("info/about.json", parts.about))
    if parts.run_exports is not None:
        members.append(file("info/run_exports.json", parts.run_exports))
    if parts.paths_json is not None:
        members.append(file("info/paths.json", parts.paths_json))
    return members + parts.info_other


def assemble(parts: Parts) -> bytes:
    info = _info_members(parts)
    if parts.fmt == ".tar.bz2":
        return hostile.tar_bz2_bytes([*info, *parts.payload])
    pkg_tar: bytes | None = (
        hostile.zstd_zero_bomb(2, 1 << 30) if parts.pkg_bomb else zstd(tar_bytes(parts.payload))
    )
    extra = dict(parts.zip_extra)
    if parts.pkg_entry is not None:  # conda reads it as the pkg tar all the same
        extra[parts.pkg_entry], pkg_tar = pkg_tar, None
    return conda_bytes(
        parts.stem,
        zstd(tar_bytes(info)),
        pkg_tar,
        compress_type=zipfile.ZIP_DEFLATED if parts.zip_deflated else zipfile.ZIP_STORED,
        extra=extra,
    )


# -- real package files -------------------------------------------------------------------------

_REAL_GLOBS = (
    "packages/noarch/*.tar.bz2", "packages/linux-64/*.tar.bz2", "edge/sparse/*.conda",
    "conda_format_repo/linux-64/zlib-*.tar.bz2", "channels/conda-test-recipes/noarch/[a-f]*.conda",
)  # fmt: skip


def real_packages(shared_real: Path) -> tuple[Path, ...]:
    """Real package files of the shared test data (none when it is absent). Anaconda's zlib
    .conda is left out: it holds a symlink with an empty target, which no tool installs."""
    return tuple(path for pattern in _REAL_GLOBS for path in sorted(shared_real.glob(pattern)))


@dataclass(frozen=True)
class RealPackage:
    filename: str
    fmt: str
    info: dict[str, bytes]  # info/ regular files by name
    info_other: tuple[Member, ...]  # every other info/ member
    payload: tuple[Member, ...]


@functools.lru_cache(maxsize=64)
def read_real(path: Path) -> RealPackage:
    """A real package's members, as tarfile reads them (to be put back with changes)."""
    fmt = ".conda" if path.name.endswith(".conda") else ".tar.bz2"
    members: list[Member] = []
    if fmt == ".tar.bz2":
        members += _tar_members(bz2.decompress(path.read_bytes()))
    else:
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                if name.endswith(".tar.zst"):
                    reader = zstandard.ZstdDecompressor().stream_reader(zf.read(name))
                    members += _tar_members(reader.read())
    named = [(_normal(i.name), (i, d)) for i, d in members]  # "./info/x" is info/x too
    info = {key: d for key, (i, d) in named if i.isreg() and key.startswith("info/")}
    other = tuple(m for key, m in named if key.startswith("info/") and key not in _KEPT)
    payload = tuple(m for key, m in named if not key.startswith("info/"))
    return RealPackage(path.name, fmt, info, other, payload)


def _normal(name: str) -> str:
    return "/".join(part for part in name.split("/") if part not in ("", "."))


_KEPT = ("info/index.json", "info/about.json", "info/run_exports.json", "info/paths.json")


def _tar_members(data: bytes) -> list[Member]:
    out: list[Member] = []
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for info in tar.getmembers():
            handle = tar.extractfile(info) if info.isreg() else None
            out.append((info, handle.read() if handle else b""))
    return out
