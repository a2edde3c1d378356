"""Broken and hostile conda package files for tests, built byte by byte. Never install these.

The builder in builder.py refuses to make bad packages on purpose; this module makes exactly
those: traversing names, devices, links out of the prefix, bad JSON, truncated and corrupt
compression, and decompression bombs that inflate to gigabytes from a few hundred KiB without
the test ever holding (or compressing) the gigabytes.
"""

from __future__ import annotations

import bz2
import io
import json
import tarfile
import warnings
import zipfile
from collections.abc import Iterable, Mapping
from typing import Any

import zstandard

__all__ = [
    "INDEX",
    "Member",
    "bz2_multistream",
    "conda_bytes",
    "file",
    "info_members",
    "link",
    "pax_record",
    "raw",
    "special",
    "tar_bytes",
    "tar_bz2_bytes",
    "zstd",
    "zstd_zero_bomb",
]

Member = tuple[tarfile.TarInfo, bytes]
INDEX = {"name": "evil", "version": "1.0", "build": "0", "build_number": 0, "subdir": "noarch"}


def file(name: str, data: bytes = b"", *, pax: Mapping[str, str] | None = None) -> Member:
    """A regular file member; pax headers are written as given (they may rename it)."""
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 1_700_000_000
    if pax:
        info.pax_headers = dict(pax)
    return info, data


def link(name: str, target: str, *, hard: bool = False, data: bytes = b"") -> Member:
    """A symlink (or hardlink); data makes it claim a size, which tarfile never reads."""
    info = tarfile.TarInfo(name)
    info.type = tarfile.LNKTYPE if hard else tarfile.SYMTYPE
    info.linkname = target
    info.size = len(data)
    return info, data


def raw(kind: bytes, data: bytes) -> Member:
    """A header of any type with data verbatim: hand-made pax (x, g) or GNU long-name (L, K)."""
    info = tarfile.TarInfo("././@Hostile")
    info.type = kind
    info.size = len(data)
    return info, data


def pax_record(key: str, value: str) -> bytes:
    """One '<length> <key>=<value>\\n' record, its length counting its own digits."""
    body = f" {key}={value}\n".encode()
    length = len(body) + len(str(len(body)))
    length += len(str(length)) - len(str(len(body)))
    return str(length).encode() + body


def special(name: str, kind: bytes) -> Member:
    """A device or fifo member (tarfile.CHRTYPE, BLKTYPE, FIFOTYPE)."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.devmajor, info.devminor = 1, 3  # /dev/null's numbers
    return info, b""


def info_members(
    index: Any = INDEX,
    *,
    about: Any = None,
    run_exports: Any = None,
    raw_index: bytes | None = None,
) -> list[Member]:
    """info/ members: index.json (raw_index verbatim when given), about and run_exports."""
    members = [file("info/index.json", raw_index or json.dumps(index).encode())]
    if about is not None:
        members.append(file("info/about.json", json.dumps(about).encode()))
    if run_exports is not None:
        members.append(file("info/run_exports.json", json.dumps(run_exports).encode()))
    return members


def tar_bytes(
    members: Iterable[Member],
    *,
    fmt: int = tarfile.PAX_FORMAT,
    global_pax: Mapping[str, str] | None = None,
) -> bytes:
    """An uncompressed tar of members exactly as given: tarfile writes hostile names as-is.
    Long names become pax (PAX_FORMAT), GNU long-name (GNU_FORMAT) or ustar prefix
    (USTAR_FORMAT) headers; global_pax a global pax header, applied to every member."""
    buf = io.BytesIO()
    pax = {"pax_headers": dict(global_pax)} if global_pax else {}
    with tarfile.open(fileobj=buf, mode="w", format=fmt, **pax) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data else None)
    return buf.getvalue()


def zstd(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=1).compress(data)


def tar_bz2_bytes(members: Iterable[Member]) -> bytes:
    return bz2.compress(tar_bytes(members), 1)


def conda_bytes(
    stem: str,
    info_tar_zst: bytes | None,
    pkg_tar_zst: bytes | None = None,
    *,
    compress_type: int = zipfile.ZIP_STORED,
    extra: Mapping[str, bytes] | None = None,
) -> bytes:
    """A .conda zip: metadata.json, then pkg-<stem>.tar.zst and info-<stem>.tar.zst (each
    left out when None; both given already compressed), then any extra members."""
    buf = io.BytesIO()
    with warnings.catch_warnings(), zipfile.ZipFile(buf, "w", compression=compress_type) as zf:
        warnings.simplefilter("ignore")  # duplicate names are the point of some cases
        zf.writestr("metadata.json", json.dumps({"conda_pkg_format_version": 2}))
        if pkg_tar_zst is not None:
            zf.writestr(f"pkg-{stem}.tar.zst", pkg_tar_zst)
        if info_tar_zst is not None:
            zf.writestr(f"info-{stem}.tar.zst", info_tar_zst)
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
    return buf.getvalue()


# -- bombs ---------------------------------------------------------------------------------

_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_ZSTD_BLOCK = 128 << 10  # the largest block a 128 KiB window allows


def _zstd_block(kind: int, size: int, last: bool, body: bytes) -> bytes:
    return ((size << 3) | (kind << 1) | last).to_bytes(3, "little") + body


def zstd_zero_bomb(member_count: int, member_bytes: int) -> bytes:
    """A tar.zst of member_count files of member_bytes zeros each, written as zstd RLE blocks:
    4 bytes for every 128 KiB of output, so 10 GiB costs 320 KiB and no time to make."""
    if member_bytes % _ZSTD_BLOCK:
        raise ValueError(f"member_bytes must be a multiple of {_ZSTD_BLOCK}")
    # Frame header: no content size, no checksum, window 2**17 (exponent 7, mantissa 0).
    frame = [_ZSTD_MAGIC, b"\x00", bytes([7 << 3])]
    zeros = _zstd_block(1, _ZSTD_BLOCK, False, b"\0") * (member_bytes // _ZSTD_BLOCK)
    for i in range(member_count):
        header = tarfile.TarInfo(f"share/bomb/zeros-{i}.bin")
        header.size = member_bytes
        frame.append(_zstd_block(0, 512, False, header.tobuf(tarfile.GNU_FORMAT)))
        frame.append(zeros)
    frame.append(_zstd_block(1, 1024, True, b"\0"))  # the tar's end marker
    return b"".join(frame)


def bz2_multistream(head: bytes, zero_bytes: int, tail: bytes) -> bytes:
    """bzip2 of head + zero_bytes zeros + tail, as concatenated streams (like pbzip2 writes):
    one compressed chunk of zeros repeated, so 300 MB of payload costs milliseconds to make."""
    chunk = 16 << 20
    if zero_bytes % chunk:
        raise ValueError(f"zero_bytes must be a multiple of {chunk}")
    zeros = bz2.compress(bytes(chunk), 9)
    return bz2.compress(head, 9) + zeros * (zero_bytes // chunk) + bz2.compress(tail, 9)
