"""The data parts of a bundle: one tar stream written across files of at most `split_size`
bytes, and read back in one pass that checks every part and file (a file may span two parts)
and copies the files to be installed.

Writing and checking a bundle reads every byte once and hashes it twice (the file's sha256
and its part's): both are pipelined over threads (hashlib and file reads release the GIL), a
read-ahead thread reading while the caller hashes one digest and a hasher thread the other.
"""

from __future__ import annotations

import hashlib
import os
import queue
import tarfile
import threading
from collections.abc import Callable, Generator, Sequence
from pathlib import Path
from typing import BinaryIO

from mirror.core.bundle_manifest import BundleFile, BundlePart, part_name
from mirror.errors import BundleError

CHUNK = 1 << 20
BLOCK = tarfile.BLOCKSIZE
DEPTH = 16  # chunks in flight between two threads: bounds the memory a pipeline holds
WRITEBACK = 64 << 20  # a part's pages are sent to disk every this many bytes, not all at fsync


class _HashThread:
    """A sha256 computed in its own thread, fed bytes that nobody changes afterwards."""

    def __init__(self) -> None:
        self._digest = hashlib.sha256()
        self._queue: queue.Queue[bytes | memoryview | None] = queue.Queue(DEPTH)
        self._thread = threading.Thread(target=self._run, name="bundle-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (data := self._queue.get()) is not None:
            self._digest.update(data)

    def update(self, data: bytes | memoryview) -> None:
        self._queue.put(data)

    def hexdigest(self) -> str:
        """Waits for everything fed so far; the thread then ends (call once, always)."""
        self._queue.put(None)
        self._thread.join()
        return self._digest.hexdigest()


_END = b""  # read_ahead's marker for the end of one file


def read_ahead(sources: Sequence[tuple[Path, int | None]]) -> Generator[bytes, None, None]:
    """The bytes of each (path, limit) in turn, at most `limit` of them (None: to its end),
    read by a thread up to DEPTH chunks ahead; after each file's chunks, one empty chunk.
    Errors (a missing file) are raised here, in the order they happen."""
    chunks: queue.Queue[bytes | BaseException | None] = queue.Queue(DEPTH)
    stop = threading.Event()

    def put(item: bytes | BaseException | None) -> bool:
        while not stop.is_set():
            try:
                chunks.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False  # the consumer went away

    def run() -> None:
        try:
            for path, limit in sources:
                left = limit
                with path.open("rb", buffering=0) as handle:
                    while left is None or left > 0:
                        chunk = handle.read(CHUNK if left is None else min(CHUNK, left))
                        if not chunk:
                            break
                        if left is not None:
                            left -= len(chunk)
                        if not put(chunk):
                            return
                if not put(_END):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)
            return
        put(None)

    thread = threading.Thread(target=run, name="bundle-read-ahead", daemon=True)
    thread.start()
    try:
        while (item := chunks.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join()


class PartWriter:
    """Appends to data.0001.tar, rolling to the next part at `split_size`, hashing each part."""

    def __init__(self, folder: Path, split_size: int) -> None:
        self.folder = folder
        self.split_size = max(split_size, BLOCK)
        self.position = 0  # in the whole stream
        self.parts: list[BundlePart] = []
        self._file: BinaryIO | None = None
        self._hash: _HashThread | None = None
        self._written = 0
        self._flushed = 0  # bytes of the part whose writeback has started

    def write(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        if not view.readonly:  # the part's hash reads it later, in its thread
            view = memoryview(bytes(view))
        while view:
            if self._file is None or self._written == self.split_size:
                self._roll()
            assert self._file is not None
            room = self.split_size - self._written
            piece = view[:room]
            self._file.write(piece)
            assert self._hash is not None
            self._hash.update(piece)
            self._written += len(piece)
            self.position += len(piece)
            view = view[len(piece) :]
            if self._written - self._flushed >= WRITEBACK:
                self._start_writeback()

    def _start_writeback(self) -> None:
        """Have the kernel start writing what is written so far, so the final fsync has
        little left to wait for (else a multi-GB part is written to disk only then). On Linux
        DONTNEED starts writeback of the range, and drops its pages once clean: nothing reads
        a part again here. Advisory: durability still comes from the fsync."""
        assert self._file is not None
        self._file.flush()
        if hasattr(os, "posix_fadvise"):
            length = self._written - self._flushed
            os.posix_fadvise(self._file.fileno(), self._flushed, length, os.POSIX_FADV_DONTNEED)
        self._flushed = self._written

    def _roll(self) -> None:
        self._close_part()
        name = part_name(len(self.parts) + 1)
        self._file = (self.folder / name).open("wb")
        self._hash = _HashThread()
        self._written = 0
        self._flushed = 0

    def _close_part(self) -> None:
        if self._file is None:
            return
        assert self._hash is not None
        sha256 = self._hash.hexdigest()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        self.parts.append(BundlePart(part_name(len(self.parts) + 1), self._written, sha256))
        self._file = None
        self._hash = None

    def _abort(self) -> None:
        """After an error: end the hasher thread, close the part (the caller removes it)."""
        if self._hash is not None:
            self._hash.hexdigest()
            self._hash = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def add_files(self, items: Sequence[tuple[str, Path, int, str]]) -> list[int]:
        """One tar member each (name, source, size, sha256; pax headers for long names), its
        data copied and hashed, the next files read ahead meanwhile; returns each data's offset
        in the stream. BundleError if a file is not what the snapshot says."""
        offsets = []
        chunks = read_ahead([(source, size) for _, source, size, _ in items])
        try:
            for name, source, size, expected_sha256 in items:
                info = tarfile.TarInfo(name)
                info.size = size
                info.mode = 0o644
                info.mtime = 0
                self.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
                offsets.append(self.position)
                digest = hashlib.sha256()
                copied = 0
                while chunk := next(chunks):
                    digest.update(chunk)
                    self.write(chunk)
                    copied += len(chunk)
                if copied != size or digest.hexdigest() != expected_sha256:
                    raise BundleError(
                        f"{source} changed while it was exported (its snapshot says {size} "
                        f"bytes, sha256 {expected_sha256[:12]}...); run the export again"
                    )
                padding = -size % BLOCK
                if padding:
                    self.write(bytes(padding))
        except BaseException:
            self._abort()
            raise
        finally:
            chunks.close()
        return offsets

    def finish(self) -> list[BundlePart]:
        try:
            self.write(bytes(2 * BLOCK))  # tar's end-of-archive marker
            self._close_part()
        except BaseException:
            self._abort()
            raise
        return self.parts


def verify_parts(
    folder: Path,
    parts: Sequence[BundlePart],
    files: Sequence[BundleFile],
    stage: Callable[[BundleFile], Path | None] | None = None,
) -> dict[str, str]:
    """Hash every part (size and sha256 as the manifest says) and, in the same pass, every
    file's byte range; returns path -> sha256 of what the parts hold for each file. Where
    `stage` names a path for a file, its bytes are also written there (one read of the data
    both checks and copies it; the caller renames the staged files only once all is checked).
    """
    ranges = _FileRanges(files, _Sinks(stage))
    chunks = read_ahead([(folder / part.name, None) for part in parts])
    try:
        for part in parts:
            path = folder / part.name
            digest = _HashThread()
            seen = 0
            try:
                while chunk := next(chunks):
                    digest.update(chunk)
                    ranges.feed(chunk)
                    seen += len(chunk)
            except FileNotFoundError:
                raise BundleError(
                    f"{path}: this part of the bundle is missing; copy all {len(parts)} parts "
                    "(data.0001.tar ...) next to manifest.json"
                ) from None
            finally:
                sha256 = digest.hexdigest()
            if seen != part.size or sha256 != part.sha256:
                raise BundleError(
                    f"{path}: damaged ({seen} bytes, sha256 {sha256[:12]}...; the "
                    f"manifest says {part.size} bytes, {part.sha256[:12]}...); copy it again"
                )
        ranges.finish()
    finally:
        chunks.close()
        ranges.sinks.close_all()
    return ranges.digests()


class _FileRanges:
    """Files laid end to end in the part stream: each chunk's bytes go to the hash (and the
    staged copy) of every file whose range they fall in."""

    def __init__(self, files: Sequence[BundleFile], sinks: _Sinks) -> None:
        self.by_offset = sorted(files, key=lambda f: f.offset)
        self.hashers = {f.path: hashlib.sha256() for f in self.by_offset}
        self.sinks = sinks
        self.index = 0  # files before this one are complete
        self.position = 0  # stream offset of the next chunk

    def feed(self, chunk: bytes) -> None:
        start, end = self.position, self.position + len(chunk)
        by_offset = self.by_offset
        while self.index < len(by_offset) and (
            by_offset[self.index].offset + by_offset[self.index].size <= start
        ):
            self.sinks.close(by_offset[self.index])
            self.index += 1
        j = self.index
        while j < len(by_offset) and by_offset[j].offset < end:
            f = by_offset[j]
            lo, hi = max(f.offset, start), min(f.offset + f.size, end)
            if hi > lo:
                piece = memoryview(chunk)[lo - start : hi - start]
                self.hashers[f.path].update(piece)
                self.sinks.write(f, piece)
            j += 1
        self.position = end

    def finish(self) -> None:
        for f in self.by_offset[self.index :]:
            self.sinks.close(f)

    def digests(self) -> dict[str, str]:
        return {name: h.hexdigest() for name, h in self.hashers.items()}


class _Sinks:
    """The staged copies being written: one open file at a time (files are contiguous in the
    stream); each is handed to the kernel's writeback as it completes."""

    def __init__(self, stage: Callable[[BundleFile], Path | None] | None) -> None:
        self._stage = stage
        self._open: dict[str, BinaryIO] = {}

    def write(self, item: BundleFile, data: memoryview) -> None:
        handle = self._open.get(item.path)
        if handle is None:
            handle = self._start(item)
            if handle is None:
                return
        handle.write(data)

    def _start(self, item: BundleFile) -> BinaryIO | None:
        target = self._stage(item) if self._stage else None
        if target is None:
            return None
        handle = target.open("wb")
        self._open[item.path] = handle
        return handle

    def close(self, item: BundleFile) -> None:
        handle = self._open.pop(item.path, None)
        if handle is None and item.size == 0:
            handle = self._start(item)  # an empty file never gets a byte to write
            self._open.pop(item.path, None)
        if handle is not None:
            handle.flush()
            if hasattr(os, "posix_fadvise"):  # start writeback now, not at the final sync
                os.posix_fadvise(handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            handle.close()

    def close_all(self) -> None:
        for handle in self._open.values():
            handle.close()
        self._open.clear()
