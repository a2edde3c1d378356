"""The data parts of a bundle: one tar stream written across files of at most `split_size`
bytes, and read back by byte ranges (a file may span two parts)."""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from mirror.core.bundle_manifest import BundleFile, BundlePart, part_name
from mirror.errors import BundleError

CHUNK = 1 << 20
BLOCK = tarfile.BLOCKSIZE


class PartWriter:
    """Appends to data.0001.tar, rolling to the next part at `split_size`, hashing each part."""

    def __init__(self, folder: Path, split_size: int) -> None:
        self.folder = folder
        self.split_size = max(split_size, BLOCK)
        self.position = 0  # in the whole stream
        self.parts: list[BundlePart] = []
        self._file: BinaryIO | None = None
        self._hash = hashlib.sha256()
        self._written = 0

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            if self._file is None or self._written == self.split_size:
                self._roll()
            assert self._file is not None
            room = self.split_size - self._written
            piece = view[:room]
            self._file.write(piece)
            self._hash.update(piece)
            self._written += len(piece)
            self.position += len(piece)
            view = view[len(piece) :]

    def _roll(self) -> None:
        self._close_part()
        name = part_name(len(self.parts) + 1)
        self._file = (self.folder / name).open("wb")
        self._hash = hashlib.sha256()
        self._written = 0

    def _close_part(self) -> None:
        if self._file is None:
            return
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self.parts.append(
            BundlePart(part_name(len(self.parts) + 1), self._written, self._hash.hexdigest())
        )
        self._file = None

    def add_file(self, name: str, source: Path, size: int, expected_sha256: str) -> int:
        """One tar member (pax headers for long names), its data copied and hashed; returns the
        data's offset in the stream. BundleError if the file is not what the snapshot says."""
        info = tarfile.TarInfo(name)
        info.size = size
        info.mode = 0o644
        info.mtime = 0
        self.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        offset = self.position
        digest = hashlib.sha256()
        copied = 0
        with source.open("rb") as handle:
            while copied < size and (chunk := handle.read(min(CHUNK, size - copied))):
                digest.update(chunk)
                self.write(chunk)
                copied += len(chunk)
        if copied != size or digest.hexdigest() != expected_sha256:
            raise BundleError(
                f"{source} changed while it was exported (its snapshot says {size} bytes, "
                f"sha256 {expected_sha256[:12]}...); run the export again"
            )
        padding = -size % BLOCK
        if padding:
            self.write(bytes(padding))
        return offset

    def finish(self) -> list[BundlePart]:
        self.write(bytes(2 * BLOCK))  # tar's end-of-archive marker
        self._close_part()
        return self.parts


class PartReader:
    """Reads byte ranges of the stream from the parts (opened once each)."""

    def __init__(self, folder: Path, parts: Sequence[BundlePart]) -> None:
        self.folder = folder
        self.parts = list(parts)
        self._starts: list[int] = []
        position = 0
        for part in self.parts:
            self._starts.append(position)
            position += part.size

    def ranges(self, offset: int, size: int) -> Iterator[tuple[Path, int, int]]:
        """(part path, offset in that part, length) pieces covering [offset, offset+size)."""
        end = offset + size
        for part, start in zip(self.parts, self._starts, strict=True):
            stop = start + part.size
            if stop <= offset or start >= end:
                continue
            lo, hi = max(offset, start), min(end, stop)
            yield self.folder / part.name, lo - start, hi - lo

    def copy_to(self, item: BundleFile, dest: Path) -> None:
        """Write one file's bytes to `dest` (kernel copies where the platform has them)."""
        with dest.open("wb") as out:
            for path, start, length in self.ranges(item.offset, item.size):
                with path.open("rb") as src:
                    _copy_range(src.fileno(), out.fileno(), start, length)
            out.flush()
            os.fsync(out.fileno())


def _copy_range(src: int, dst: int, start: int, length: int) -> None:
    done = 0
    while done < length:
        try:
            moved = os.copy_file_range(src, dst, length - done, start + done)
        except (AttributeError, OSError):
            moved = 0
        if moved <= 0:  # not supported here (or across file systems): plain reads
            os.lseek(src, start + done, os.SEEK_SET)
            chunk = os.read(src, min(CHUNK, length - done))
            if not chunk:
                raise BundleError("a data part ended early while copying")
            os.write(dst, chunk)
            moved = len(chunk)
        done += moved


def verify_parts(
    folder: Path, parts: Sequence[BundlePart], files: Sequence[BundleFile]
) -> dict[str, str]:
    """Hash every part (size and sha256 as the manifest says) and, in the same pass, every
    file's byte range; returns path -> sha256 of what the parts hold for each file."""
    by_offset = sorted(files, key=lambda f: f.offset)
    hashers = {f.path: hashlib.sha256() for f in by_offset}
    index = 0
    position = 0
    for part in parts:
        path = folder / part.name
        try:
            handle = path.open("rb")
        except FileNotFoundError:
            raise BundleError(
                f"{path}: this part of the bundle is missing; copy all {len(parts)} parts "
                "(data.0001.tar ...) next to manifest.json"
            ) from None
        digest = hashlib.sha256()
        seen = 0
        with handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
                start, end = position, position + len(chunk)
                while (
                    index < len(by_offset)
                    and by_offset[index].offset + by_offset[index].size <= start
                ):
                    index += 1
                j = index
                while j < len(by_offset) and by_offset[j].offset < end:
                    f = by_offset[j]
                    lo, hi = max(f.offset, start), min(f.offset + f.size, end)
                    if hi > lo:
                        hashers[f.path].update(memoryview(chunk)[lo - start : hi - start])
                    j += 1
                position = end
                seen += len(chunk)
        if seen != part.size or digest.hexdigest() != part.sha256:
            raise BundleError(
                f"{path}: damaged ({seen} bytes, sha256 {digest.hexdigest()[:12]}...; the "
                f"manifest says {part.size} bytes, {part.sha256[:12]}...); copy it again"
            )
    return {name: h.hexdigest() for name, h in hashers.items()}
