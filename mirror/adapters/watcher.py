"""watchdog observers over drop folders -> "this file is completely written" callbacks.

Each folder is watched by kernel events (the native observer: inotify on Linux) or by polling
(watchdog's PollingObserver: a directory snapshot every poll interval), which is the only way to
see files another host writes into a network share. A file is taken only when it is complete:
after a close-after-write event (inotify IN_CLOSE_WRITE) or a rename into an event-watched
folder, or once its size and mtime have not changed for the folder's settle time (a polling
observer never sees a close). Files already in the folders when watching starts (they arrived
while the daemon was down) are picked up the same way.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import (
    DirDeletedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

log = logging.getLogger(__name__)

PACKAGE_SUFFIXES = (".conda", ".tar.bz2")
TICK_S = 0.05
CLOSED_STABLE_S = 0.05  # after a close event, the size must hold this long (a reopen appends)

OnReady = Callable[[str, Path, float], None]  # (channel, path, ready_at monotonic)
OnEvent = Callable[[str], None]  # event kind, for metrics


@dataclass(frozen=True)
class WatchedFolder:
    """A drop folder: the channel its files go to and how it is watched."""

    channel: str
    settle_s: float  # quiet time a file needs when no close event vouches for it
    poll: bool = False  # watchdog's PollingObserver instead of the native observer
    poll_interval_s: float = 5.0


@dataclass
class _Candidate:
    folder: WatchedFolder
    size: int
    mtime_ns: int
    changed_at: float  # monotonic time of the last observed change
    closed: bool = False


class DropWatcher:
    """Watches drop folders and reports complete package files once: one native observer
    for the event-watched folders, one polling observer per poll interval in use."""

    def __init__(
        self,
        folders: Mapping[Path, WatchedFolder],
        *,
        on_ready: OnReady,
        on_event: OnEvent = lambda kind: None,
    ) -> None:
        self._folders = dict(folders)
        self._on_ready = on_ready
        self._on_event = on_event
        self._pending: dict[Path, _Candidate] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._observers: list[BaseObserver] = []
        self._ticker = threading.Thread(target=self._tick_loop, name="drop-ticker", daemon=True)

    def start(self) -> None:
        handler = _Handler(self)
        by_observer: dict[float | None, BaseObserver] = {}  # None: the native observer
        for path, folder in self._folders.items():
            key = folder.poll_interval_s if folder.poll else None
            if key not in by_observer:
                by_observer[key] = Observer() if key is None else PollingObserver(timeout=key)
            by_observer[key].schedule(handler, str(path), recursive=False)
        self._observers = list(by_observer.values())
        for observer in self._observers:
            observer.start()
        for path in self._folders:
            self.rescan(path)
        self._ticker.start()

    def stop(self) -> None:
        self._stop.set()
        for observer in self._observers:
            observer.stop()
        for observer in self._observers:
            observer.join(timeout=5)
        if self._ticker.is_alive():
            self._ticker.join(timeout=5)

    def rescan(self, path: Path) -> None:
        """Queue every package-like entry in a folder (start-up, or after a missed event)."""
        if path not in self._folders:
            return
        try:
            entries = list(os.scandir(path))
        except OSError:
            return
        for entry in entries:
            if entry.name.endswith(PACKAGE_SUFFIXES):
                self.note(Path(entry.path), closed=False)

    def requeue(self, path: Path, channel: str) -> None:
        """Look at a file again later (it changed while it was being taken). A file whose
        folder is no longer watched by `channel` (the config was reloaded) is left alone."""
        folder = self._folders.get(path.parent)
        if folder is not None and folder.channel == channel:
            self.note(path, closed=False)

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def note(self, path: Path, *, closed: bool) -> None:
        """A package file in a watched folder appeared or changed; `closed`: its writer closed
        it (only event-watched folders can know that)."""
        folder = self._folders.get(path.parent)
        if folder is None:
            return
        closed = closed and not folder.poll
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
                self._pending[path] = _Candidate(folder, st.st_size, st.st_mtime_ns, now, closed)
            elif closed:
                known.closed = True

    def watches(self, path: Path) -> bool:
        """Is `path` a file directly inside a watched folder?"""
        return path.parent in self._folders

    def lost(self, path: Path) -> None:
        """A polling observer found its folder gone and stopped watching it."""
        if path in self._folders:
            log.error(
                "drop folder %s disappeared; it is not watched until the daemon is reloaded "
                "(SIGHUP) or restarted",
                path,
            )

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
                        candidate.folder, st.st_size, st.st_mtime_ns, now
                    )
                continue
            quiet = now - candidate.changed_at
            settled = quiet >= candidate.folder.settle_s
            if settled or (candidate.closed and quiet >= CLOSED_STABLE_S):
                ready.append((path, candidate.folder.channel, now))
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
        elif isinstance(event, DirDeletedEvent):
            self._watcher.lost(Path(os.fsdecode(event.src_path)))
            return
        else:
            return
        if not path.name.endswith(PACKAGE_SUFFIXES) or not self._watcher.watches(path):
            return
        self._watcher._on_event(kind)
        self._watcher.note(path, closed=closed)
