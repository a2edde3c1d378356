"""Upstream bytes checked on the way in: downloads hashed against their record, repodata
bodies decompressed and parsed within bounds."""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path

import zstandard

from mirror.adapters.upstream.values import Downloaded, OnBytes
from mirror.core.plan import WantedFile
from mirror.core.records import UpstreamRepodata, parse_repodata
from mirror.errors import (
    Interrupted,
    RepodataError,
    StoreError,
    UpstreamError,
    VerificationError,
)

CHUNK_BYTES = 1 << 20


def write_verified(
    chunks: Iterator[bytes],
    dest: Path,
    want: WantedFile,
    on_bytes: OnBytes,
    stop: threading.Event,
    shown: str,
) -> Downloaded:
    """Stream chunks into `dest` (a temp file), hashing as they pass; check size and hash.

    On any failure the temp file is removed, so nothing unverified is ever left behind. The
    bytes are not fsynced here: the caller makes a whole batch durable at once before anything
    vouches for them (one fsync per file was a journal commit per file).
    """
    sha256 = hashlib.sha256()
    md5 = hashlib.md5(usedforsecurity=False) if want.sha256 is None else None
    size = 0
    try:
        with open(dest, "wb") as out:
            for chunk in chunks:
                if stop.is_set():
                    raise Interrupted("stop requested")
                size += len(chunk)
                if want.size is not None and size > want.size:
                    raise VerificationError(
                        f"{shown}: more bytes than the {want.size} its record promises",
                        reason="size_mismatch",
                    )
                sha256.update(chunk)
                if md5 is not None:
                    md5.update(chunk)
                out.write(chunk)
                on_bytes(len(chunk))
        got = Downloaded(
            size, sha256.hexdigest(), md5.hexdigest() if md5 is not None else None, attempts=1
        )
        if want.size is not None and size != want.size:
            raise VerificationError(
                f"{shown}: got {size} bytes, its record says {want.size}", reason="truncated"
            )
        if not want.same_content(got.size, got.sha256, got.md5):
            expected = want.sha256 or want.md5
            raise VerificationError(
                f"{shown}: checksum mismatch (expected {expected}, got "
                f"{got.sha256 if want.sha256 else got.md5})",
                reason="hash_mismatch",
            )
        return got
    except OSError as exc:  # our side: the tree's disk is full, read-only, ...
        with contextlib.suppress(OSError):
            dest.unlink()
        raise StoreError.from_os_error(
            f"cannot write {want.filename} into {dest.parent}", exc
        ) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            dest.unlink()
        raise


def parse_checked(body: bytes | bytearray, shown: str) -> UpstreamRepodata:
    """Parse inside the attempt, so an error page served with 200 is retried like a 5xx."""
    try:
        return parse_repodata(body, source=shown)
    except RepodataError as exc:
        raise UpstreamError(str(exc), reason="invalid_repodata") from None


def has_zstd_checksum(data: bytes | bytearray) -> bool:
    """Does the (first) zstd frame carry a content checksum, which decompression verifies?"""
    try:
        return bool(zstandard.get_frame_parameters(bytes(data[:18])).has_checksum)
    except zstandard.ZstdError:
        return False


def decompress_zst(data: bytes | bytearray, limit: int, shown: str) -> bytearray:
    """Decompress every zstd frame, with or without a content size in its header, up to `limit`."""
    out = bytearray()
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(data, read_across_frames=True)
        while chunk := reader.read(8 * CHUNK_BYTES):
            out += chunk
            if len(out) > limit:
                raise UpstreamError(
                    f"{shown}: decompresses past max_repodata_size",
                    reason="too_large",
                    retryable=False,
                )
    except zstandard.ZstdError as exc:
        raise UpstreamError(f"{shown}: corrupt zstd data ({exc})", reason="corrupt") from None
    return out
