"""Progress reporting: the protocol the use cases call, and a one-line terminal display."""

from __future__ import annotations

import threading
import time
from typing import Protocol, TextIO

REDRAW_S = 0.1


class Progress(Protocol):
    """What the CLI shows while files move or are read; calls may come from pool threads."""

    def start(self, label: str, files: int, total_bytes: int) -> None: ...
    def advance(self, nbytes: int) -> None: ...
    def file_done(self) -> None: ...
    def finish(self) -> None: ...


class NoProgress:
    def start(self, label: str, files: int, total_bytes: int) -> None: ...
    def advance(self, nbytes: int) -> None: ...
    def file_done(self) -> None: ...
    def finish(self) -> None: ...


class TerminalProgress:
    """Thread-safe: pool threads report bytes, the display redraws at most every 0.1 s."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._label = ""
        self._files_total = self._files_done = 0
        self._bytes_total = self._bytes_done = 0
        self._started = self._drawn = 0.0
        self._active = False

    def start(self, label: str, files: int, total_bytes: int) -> None:
        with self._lock:
            self._label, self._files_total, self._bytes_total = label, files, total_bytes
            self._files_done = self._bytes_done = 0
            self._started = time.monotonic()
            self._active = files > 0
            self._draw(force=True)

    def advance(self, nbytes: int) -> None:
        with self._lock:
            self._bytes_done += nbytes
            self._draw()

    def file_done(self) -> None:
        with self._lock:
            self._files_done += 1
            self._draw()

    def finish(self) -> None:
        with self._lock:
            if self._active:
                self._draw(force=True)
                self._stream.write("\n")
                self._stream.flush()
            self._active = False

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not self._active or (not force and now - self._drawn < REDRAW_S):
            return
        self._drawn = now
        elapsed = max(now - self._started, 1e-6)
        share = self._bytes_done / self._bytes_total if self._bytes_total else 1.0
        width = 24
        bar = "#" * int(share * width)
        line = (
            f"\r{self._label} [{bar:<{width}}] {self._files_done}/{self._files_total} files "
            f"{self._bytes_done / 1e6:,.1f}/{self._bytes_total / 1e6:,.1f} MB "
            f"{self._bytes_done / 1e6 / elapsed:,.1f} MB/s"
        )
        self._stream.write(line)
        self._stream.flush()
