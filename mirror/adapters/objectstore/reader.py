"""Reading an object as a seekable file (each buffer refill is one ranged GET), or as a
stream of chunks that resumes where it broke off (also as a file read once in order)."""

from __future__ import annotations

import functools
import io
from collections.abc import Callable, Generator, Iterator
from typing import Any

import obstore

from mirror.adapters.objectstore.failures import Context
from mirror.adapters.objectstore.retry import Retrier
from mirror.errors import StoreError


class ObjectReader(io.RawIOBase):
    """A read-only, seekable file over one object, e.g. for zipfile to read a `.conda`'s
    `info/` member with a few ranged GETs instead of downloading the package. A failed read
    is sent again from the same position."""

    def __init__(
        self, store: Any, key: str, retrier: Retrier, ctx: Context, *, size: int, buffer_bytes: int
    ) -> None:
        super().__init__()
        self._retrier = retrier
        self._ctx = ctx
        self._file = obstore.open_reader(store, key, buffer_size=buffer_bytes, size=size)
        self.size = size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return int(self._file.tell())

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return int(self._file.seek(offset, whence))

    def read(self, size: int | None = -1, /) -> bytes:
        start = self._file.tell()
        wanted = None if size is None or size < 0 else size

        def again() -> bytes:
            self._file.seek(start)
            return bytes(self._file.read(wanted))

        return self._retrier.call(again, self._ctx)

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)


class ChunkReader(io.RawIOBase):
    """A read-once, forward-only file over a stream of chunks: hashing or copying an object
    this way costs one GET, where a seekable reader needs a HEAD for the size and then one
    ranged GET per buffer."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        super().__init__()
        self._chunks = chunks
        self._pending = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending = memoryview(chunk)
        taken = min(len(view), len(self._pending))
        view[:taken] = self._pending[:taken]
        self._pending = self._pending[taken:]
        return taken


def resuming_chunks(
    open_from: Callable[[int], Any],
    retrier: Retrier,
    ctx: Context,
    *,
    chunk_bytes: int,
) -> Generator[bytes, None, None]:
    """The object's bytes in chunks. `open_from(offset)` starts a GET at that offset
    (conditional on the first answer's ETag, so a changed object is noticed rather than
    spliced); a stream that breaks is reopened where it stopped, within the retry budget."""
    result = retrier.call(lambda: open_from(0), ctx)
    size = int(result.meta["size"])
    offset, breaks = 0, 0
    while True:
        try:
            for chunk in _body(result, size - offset, chunk_bytes):
                offset += len(chunk)
                yield chunk
        except Exception as exc:  # obstore raises its own and OS errors mid-body
            reason = type(exc).__name__
        else:
            if offset >= size:
                return
            reason = "the body ended early"
        breaks += 1
        if breaks >= retrier.policy.attempts:
            raise StoreError(
                f"{ctx.action} {ctx.url} broke off at byte {offset} of {size} {breaks} "
                f"time(s) ({reason}); check the connection to {ctx.endpoint} and run again"
            )
        result = retrier.call(functools.partial(open_from, offset), ctx)


def _body(result: Any, remaining: int, chunk_bytes: int) -> Iterator[bytes]:
    """What is left of the body: in one call when it fits in a chunk (streaming costs a
    hand-over between Python and obstore's runtime per poll: for thousands of small
    packages that was half the time of downloading them), else chunk by chunk."""
    if remaining <= chunk_bytes:
        yield bytes(result.bytes())
        return
    for chunk in result.stream(min_chunk_size=chunk_bytes):
        yield bytes(chunk)
