"""watchdog observer over drop folders -> "this file is completely written" callbacks.

A file is taken only when it is complete: after a close-after-write event (inotify
IN_CLOSE_WRITE) or a rename into the folder, or, where the filesystem sends neither (network
shares), once its size and mtime have not changed for `settle_s`. Files already in the folders
when watching starts (they arrived while the daemon was down) are picked up the same way.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import (
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

PACKAGE_SUFFIXES = (".conda", ".tar.bz2")
TICK_S = 0.05
CLOSED_STABLE_S = 0.05  # after a close event, the size must hold this long (a reopen appends)

OnReady = Callable[[str, Path, float], None]  # (channel, path, ready_at monotonic)
OnEvent = Callable[[str], None]  # event kind, for metrics


@dataclass
class _Candidate:
    channel: str
    size: int
    mtime_ns: int
    changed_at: float  # monotonic time of the last observed change
    closed: bool = False


class DropWatcher:
    """Watches drop folders (folder -> channel) and reports complete package files once."""

    def __init__(
        self,
        folders: Mapping[Path, str],
        *,
        settle_s: float,
        on_ready: OnReady,
        on_event: OnEvent = lambda kind: None,
    ) -> None:
        self._folders = dict(folders)
        self._settle_s = settle_s
        self._on_ready = on_ready
        self._on_event = on_event
        self._pending: dict[Path, _Candidate] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._observer = Observer()
        self._ticker = threading.Thread(target=self._tick_loop, name="drop-ticker", daemon=True)

    def start(self) -> None:
        handler = _Handler(self)
        for folder in self._folders:
            self._observer.schedule(handler, str(folder), recursive=False)
        self._observer.start()
        for folder, channel in self._folders.items():
            self.rescan(folder, channel)
        self._ticker.start()

    def stop(self) -> None:
        self._stop.set()
        self._observer.stop()
        self._observer.join(timeout=5)
        if self._ticker.is_alive():
            self._ticker.join(timeout=5)

    def rescan(self, folder: Path, channel: str) -> None:
        """Queue every package-like entry in a folder (start-up, or after a missed event)."""
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return
        for entry in entries:
            if entry.name.endswith(PACKAGE_SUFFIXES):
                self.note(Path(entry.path), channel, closed=False)

    def requeue(self, path: Path, channel: str) -> None:
        """Look at a file again later (it changed while it was being taken)."""
        self.note(path, channel, closed=False)

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def note(self, path: Path, channel: str, *, closed: bool) -> None:
        try:
            st = path.lstat()
        except FileNotFoundError:
            with self._lock:
                self._pending.pop(path, None)
            return
        now = time.monotonic()
        with self._lock:
            known = self._pending.get(path)
            if known is None or (known.size, known.mtime_ns) != (st.st_size, st.st_mtime_ns):
                self._pending[path] = _Candidate(channel, st.st_size, st.st_mtime_ns, now, closed)
            elif closed:
                known.closed = True

    def channel_of(self, path: Path) -> str | None:
        return self._folders.get(path.parent)

    def _tick_loop(self) -> None:
        while not self._stop.wait(TICK_S):
            for path, channel, ready_at in self._ready():
                self._on_ready(channel, path, ready_at)

    def _ready(self) -> list[tuple[Path, str, float]]:
        now = time.monotonic()
        ready = []
        with self._lock:
            items = list(self._pending.items())
        for path, candidate in items:
            try:
                st = path.lstat()
            except FileNotFoundError:
                with self._lock:
                    self._pending.pop(path, None)
                continue
            if (st.st_size, st.st_mtime_ns) != (candidate.size, candidate.mtime_ns):
                with self._lock:
                    self._pending[path] = _Candidate(
                        candidate.channel, st.st_size, st.st_mtime_ns, now
                    )
                continue
            quiet = now - candidate.changed_at
            if quiet >= self._settle_s or (candidate.closed and quiet >= CLOSED_STABLE_S):
                ready.append((path, candidate.channel, now))
                with self._lock:
                    self._pending.pop(path, None)
        return ready


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: DropWatcher) -> None:
        self._watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if isinstance(event, FileMovedEvent):
            path = Path(os.fsdecode(event.dest_path))
            kind, closed = "moved", True  # a rename into the folder is atomic: complete
        elif isinstance(event, FileClosedEvent):
            path, kind, closed = Path(os.fsdecode(event.src_path)), "closed", True
        elif isinstance(event, FileCreatedEvent | FileModifiedEvent):
            path, kind, closed = Path(os.fsdecode(event.src_path)), event.event_type, False
        else:
            return
        if not path.name.endswith(PACKAGE_SUFFIXES):
            return
        channel = self._watcher.channel_of(path)
        if channel is None:
            return
        self._watcher._on_event(kind)
        self._watcher.note(path, channel, closed=closed)
