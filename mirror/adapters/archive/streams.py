"""Byte sources and decompression: the package file read once and hashed, bounded streams."""

from __future__ import annotations

import bz2
import hashlib
import io
import zlib
from collections.abc import Callable
from typing import IO, cast

import zstandard

from mirror.adapters.archive.refusal import MiB, Refused, bytes_text

# Pulls from disk and from decompressors: big enough to amortise the calls, small enough to
# stay under malloc's mmap threshold for the common tiny package.
_READ_BYTES = 64 << 10
_SKIP_BYTES = MiB


# -- the file, read once ----------------------------------------------------------------------


class Source:
    """The package file read front to back exactly once; every byte read is hashed on the way.

    Small files arrive whole (one read call, one hash call); bigger ones are read in chunks so
    memory stays bounded, which is why every consumer reads in file order.
    """

    def __init__(self, file: io.FileIO, size: int, data: bytes | None) -> None:
        self.size = size
        self.pos = 0
        self._file = file
        self._view = memoryview(data) if data is not None else None
        self._sha256 = hashlib.sha256(data or b"")
        self._md5 = hashlib.md5(data or b"", usedforsecurity=False)

    def read(self, n: int) -> bytes | memoryview:
        n = min(n, self.size - self.pos)
        start, self.pos = self.pos, self.pos + n
        if self._view is not None:
            return self._view[start : self.pos]
        out = self._file.read(n)
        if out is None or len(out) != n:
            raise Refused("corrupt", "the file shrank while it was read (still being copied?)")
        self._sha256.update(out)
        self._md5.update(out)
        return out

    def range(self, start: int, end: int) -> Range:
        if start < self.pos or end > self.size:
            raise Refused("corrupt", "the zip directory points at overlapping or missing data")
        while self.pos < start:
            self.read(min(start - self.pos, _SKIP_BYTES))
        return Range(self, end - start)

    def finish(self) -> tuple[str, str]:
        while self.pos < self.size:
            self.read(_SKIP_BYTES)
        if self._view is None and self._file.read(1):
            raise Refused("corrupt", "the file grew while it was read (still being copied?)")
        return self._sha256.hexdigest(), self._md5.hexdigest()


class Range:
    """A stretch of the file, read once in order, with the CRC-32 of what went through it."""

    def __init__(self, source: Source, length: int) -> None:
        self._source = source
        self._left = length
        self.crc = 0

    def read(self, n: int = -1) -> bytes | memoryview:
        n = self._left if n < 0 else min(n, self._left)
        if n == 0:
            return b""
        out = self._source.read(n)
        self._left -= n
        self.crc = zlib.crc32(out, self.crc)
        return out

    def drain(self) -> int:
        while self._left:
            self.read(_SKIP_BYTES)
        return self.crc


# -- compressed streams ----------------------------------------------------------------------


def zstd_pull(stored: Range) -> Callable[[int], bytes]:
    # A streaming reader, never ZstdDecompressor.decompress(): rattler writes frames without a
    # content size, and read(n) bounds every output whatever the ratio. Across frames, like
    # conda's reader. A truncated frame ends silently here; the tar walk notices it.
    reader = zstandard.ZstdDecompressor().stream_reader(
        cast(IO[bytes], stored),  # it only calls read()
        read_size=_READ_BYTES,
        read_across_frames=True,
    )

    def pull(n: int) -> bytes:
        try:
            return reader.read(n)
        except zstandard.ZstdError as exc:
            raise Refused("corrupt", f"bad zstd data ({exc})") from exc

    return pull


class Bz2Pull:
    """bzip2 decompression across concatenated streams (parallel bzip2 tools write those)."""

    def __init__(self, raw: Range) -> None:
        self._raw = raw
        self._dec = bz2.BZ2Decompressor()

    def pull(self, n: int) -> bytes:
        while True:
            data: bytes | memoryview = b""
            if self._dec.eof:
                data = self._dec.unused_data or self._raw.read(_READ_BYTES)
                if not data:
                    return b""
                self._dec = bz2.BZ2Decompressor()
            elif self._dec.needs_input:
                data = self._raw.read(_READ_BYTES)
                if not data:
                    raise Refused("corrupt", "the bzip2 stream ends early (truncated file)")
            try:
                out = self._dec.decompress(data, n)
            except OSError as exc:  # what _bz2 raises for bad data
                raise Refused("corrupt", f"bad bzip2 data ({exc})") from exc
            if out:
                return out


class Budget:
    """Decompressed bytes allowed, shared by the streams one limit covers."""

    def __init__(self, limit: int, detail: str) -> None:
        self._left = limit
        self._detail = detail.format(bytes_text(limit))

    def spend(self, n: int) -> None:
        self._left -= n
        if self._left < 0:
            raise Refused("too_large", self._detail)


class Stream:
    """Decompressed bytes pulled on demand, every pull charged to every budget given."""

    def __init__(self, pull: Callable[[int], bytes], budgets: list[Budget]) -> None:
        self._pull = pull
        self._budgets = budgets
        self._buf = b""
        self._at = 0
        self.pos = 0  # bytes handed out so far

    def _more(self, n: int) -> bytes:
        chunk = self._pull(n)  # never more than n
        for budget in self._budgets:
            budget.spend(len(chunk))
        return chunk

    def read(self, n: int) -> bytes:
        """n bytes, or fewer only where the stream ends."""
        at = self._at
        if len(self._buf) - at >= n:
            self._at = at + n
            self.pos += n
            return self._buf[at : at + n]
        parts = [self._buf[at:]]
        have = len(parts[0])
        while have < n and (chunk := self._more(max(n - have, _READ_BYTES))):
            parts.append(chunk)
            have += len(chunk)
        data = b"".join(parts)
        self._buf, self._at = data, min(n, len(data))
        self.pos += self._at
        return data[:n]

    def skip(self, n: int) -> None:
        buffered = len(self._buf) - self._at
        if n <= buffered:
            self._at += n
            self.pos += n
            return
        self._buf, self._at = b"", 0
        self.pos += buffered
        n -= buffered
        while n > 0:
            chunk = self._more(min(n, _SKIP_BYTES))
            if not chunk:
                raise Refused("corrupt", "a tar member is cut short (truncated archive)")
            self.pos += len(chunk)
            n -= len(chunk)
