"""One writer per tree: an advisory lock in the tree's root (and one in the state directory),
released by the kernel when the holder dies, whatever it was killed with.

The lock is keyed to the tree, not to a config: a sync, `mirror index`, the daemon, an import
and `verify --repair` exclude each other on the same root whatever their state directories.
The state directory is locked as well, because two trees sharing one catalog would mix up
channels of the same name. Lock files are dotfiles, which web servers do not serve. No child
process may hold the lock: its descriptor is close-on-exec, and process pool workers are forked
from a `forkserver`, a fresh interpreter (a worker forked from this process would inherit the
lock and keep it after its parent died).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import os
import socket
import sys
from pathlib import Path

from mirror.errors import LockBusyError, StoreError

TREE_LOCK_NAME = ".mirror-lock"  # in the tree's root
STATE_LOCK_NAME = "mirror.lock"  # in the state directory
_HOLDER_BYTES = 4096


class WriterLock:
    """An flock on one lock file; `what` names the thing it protects in messages."""

    def __init__(self, path: Path, what: str) -> None:
        self.path = path
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> None:
        fd = self._open()
        if fd is None:  # a read-only tree: nobody on this host can write it
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, _HOLDER_BYTES, 0)
            os.close(fd)
            raise LockBusyError(
                f"another mirror process is writing {self.what}: {describe_holder(holder)} "
                f"(lock {self.path}); wait for it to finish, or stop it"
            ) from None
        with contextlib.suppress(OSError):  # the holder note is only for messages
            os.ftruncate(fd, 0)
            os.pwrite(fd, holder_note(), 0)
        self._fd = fd

    def _open(self) -> int | None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            if exc.errno != errno.EROFS:
                raise StoreError.from_os_error(f"cannot open the lock {self.path}", exc) from exc
        try:  # read-only: an existing lock still tells us whether someone else holds it
            return os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None

    def release(self) -> None:
        if self._fd is not None:
            # the note stays: it is only read while someone holds the lock (who wrote their own),
            # and truncating it would give its page back to a disk that may be nearly full
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


def tree_lock(root: Path) -> WriterLock:
    return WriterLock(root / TREE_LOCK_NAME, f"the tree {root}")


def state_lock(state_dir: Path) -> WriterLock:
    return WriterLock(state_dir / STATE_LOCK_NAME, f"the state directory {state_dir}")


class WriterLocks:
    """The tree's lock, then the state directory's (released in the other order): what every
    command that writes a tree holds."""

    def __init__(self, root: Path, state_dir: Path) -> None:
        self._locks = (tree_lock(root), state_lock(state_dir))

    def acquire(self) -> None:
        taken: list[WriterLock] = []
        try:
            for lock in self._locks:
                lock.acquire()
                taken.append(lock)
        except BaseException:
            for lock in reversed(taken):
                lock.release()
            raise

    def release(self) -> None:
        for lock in reversed(self._locks):
            lock.release()

    def __enter__(self) -> WriterLocks:
        self.acquire()
        return self

    def __exit__(self, *_: object) -> None:
        self.release()


def holder_note() -> bytes:
    """Who holds the lock, for the message another process shows."""
    note = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": " ".join(["mirror", *sys.argv[1:2]]),
        "since": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
    }
    return json.dumps(note).encode() + b"\n"


def describe_holder(note: bytes) -> str:
    try:
        holder = json.loads(note)
        return (
            f"`{holder['command']}` (pid {holder['pid']} on {holder['host']}, "
            f"since {holder['since']})"
        )
    except (ValueError, KeyError, TypeError):
        return "a process that left no note"
