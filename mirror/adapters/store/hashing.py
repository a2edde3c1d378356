"""The one way a file's bytes are hashed: sha256 (and md5, for old md5-only records)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO

CHUNK_BYTES = 1 << 20


def hash_stream(stream: BinaryIO, *, with_md5: bool = True) -> tuple[int, str, str]:
    """(size, sha256, md5) of what the stream holds; md5 is "" when not asked for (it costs
    a third more time, and only records of old md5-only packages need it)."""
    sha256 = hashlib.sha256()
    md5 = hashlib.md5(usedforsecurity=False) if with_md5 else None
    size = 0
    while chunk := stream.read(CHUNK_BYTES):
        size += len(chunk)
        sha256.update(chunk)
        if md5 is not None:
            md5.update(chunk)
    return size, sha256.hexdigest(), md5.hexdigest() if md5 is not None else ""


def hash_file(path: Path, *, with_md5: bool = True) -> tuple[int, str, str]:
    with open(path, "rb") as stream:
        return hash_stream(stream, with_md5=with_md5)


def sha256_file(path: Path) -> str:
    return hash_file(path, with_md5=False)[1]
