"""A channel tree in a local directory (a disk or a file share).

Every file a client can see appears by `os.replace` of a fully written, fsynced temp file in
the same directory, so a reader never sees half a file. Temp files are dotfiles named
`.mirror-*.tmp` so web servers configured to hide dotfiles never serve them.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import os
import secrets
import shutil
import stat as stat_module
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from mirror.core.tree_store import FileStat, Pieces
from mirror.errors import StoreError

TEMP_PREFIX = ".mirror-"
TEMP_SUFFIX = ".tmp"
DURABLE_ONE_BY_ONE = 32  # past this many new files, one sync(2) beats an fsync each

_TAG = secrets.token_hex(4)  # with the pid, tells this process's temp files from any other's
_SERIAL = itertools.count()  # next() is atomic under the GIL: threads never share a number


def temp_name() -> str:
    """A temp file name no other writer uses: ~0.2 us where a uuid4 costs ~1.8 us per file."""
    return f"{TEMP_PREFIX}{os.getpid():x}-{_TAG}-{next(_SERIAL):x}{TEMP_SUFFIX}"


class LocalStore:
    """The TreeStore of a directory: keys are paths below `root`."""

    cheap_listing = True

    def __init__(self, root: Path) -> None:
        self.root = root
        # folders staging_path() made: thousands of downloads need not each ask again
        self._staging_folders: set[Path] = set()

    @property
    def location(self) -> str:
        return str(self.root)

    def path(self, key: str) -> Path:
        return self.root / key if key else self.root

    # -- reading --------------------------------------------------------------------------------

    def stat(self, key: str) -> FileStat | None:
        try:
            st = self.path(key).lstat()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise StoreError.from_os_error(f"cannot read {self.path(key)}", exc) from exc
        return FileStat(st.st_size, st.st_mtime_ns) if stat_module.S_ISREG(st.st_mode) else None

    def list_files(self, folder: str) -> dict[str, FileStat]:
        found: dict[str, FileStat] = {}
        for entry in self._entries(folder):
            if entry.is_file(follow_symlinks=False):
                st = entry.stat(follow_symlinks=False)
                found[entry.name] = FileStat(st.st_size, st.st_mtime_ns)
        return found

    def list_folders(self, folder: str) -> list[str]:
        return sorted(e.name for e in self._entries(folder) if e.is_dir(follow_symlinks=False))

    def _entries(self, folder: str) -> list[os.DirEntry[str]]:
        directory = self.path(folder)
        try:
            return list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as exc:
            raise StoreError.from_os_error(f"cannot list {directory}", exc) from exc

    def walk(self, folder: str) -> dict[str, FileStat]:
        found: dict[str, FileStat] = {}
        stack = [(folder, "")]
        while stack:
            current, prefix = stack.pop()
            for entry in self._entries(current):
                if entry.name.startswith("."):
                    continue
                if entry.is_dir(follow_symlinks=False):
                    stack.append((f"{current}/{entry.name}".strip("/"), f"{prefix}{entry.name}/"))
                elif entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    found[prefix + entry.name] = FileStat(st.st_size, st.st_mtime_ns)
        return found

    def read(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise StoreError.from_os_error(f"cannot read {self.path(key)}", exc) from exc

    @contextlib.contextmanager
    def open(self, key: str) -> Iterator[BinaryIO]:
        with open(self.path(key), "rb") as handle:
            yield handle

    @contextlib.contextmanager
    def local_file(self, key: str) -> Iterator[Path]:
        yield self.path(key)

    @contextlib.contextmanager
    def local_files(self, keys: Sequence[str]) -> Iterator[list[Path]]:
        yield [self.path(key) for key in keys]

    def vouched_sha256(self, key: str, stat: FileStat) -> str | None:
        """None: reading a local file to hash it is cheap, and nothing to keep in memory."""
        return None

    def same_bytes(self, key: str, data: bytes) -> bool:
        stat = self.stat(key)
        if stat is None or stat.size != len(data):
            return False
        try:
            return self.read(key) == data
        except FileNotFoundError:
            return False

    def free_bytes(self) -> int | None:
        probe = self.root
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        return shutil.disk_usage(probe).free

    # -- writing --------------------------------------------------------------------------------

    def write(
        self, key: str, pieces: Pieces, *, durable: bool = True, create_only: bool = False
    ) -> FileStat:
        """Write a temp file beside the file (fsynced unless told otherwise), then rename it
        over the file: readers see the old file or the new one, never a part."""
        path = self.path(key)
        if create_only and os.path.lexists(path):  # the writer lock keeps others out
            raise FileExistsError(f"{path} already exists")
        self._mkdir(path.parent)
        temp = path.parent / temp_name()
        try:
            with open(temp, "wb") as handle:
                handle.writelines(pieces)
                handle.flush()
                if durable:
                    os.fsync(handle.fileno())
            os.replace(temp, path)
            st = path.lstat()
        except OSError as exc:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise StoreError.from_os_error(
                f"cannot write {path} (the previous file is intact)", exc
            ) from exc
        return FileStat(st.st_size, st.st_mtime_ns)

    def staging_path(self, near: str) -> Path:
        directory = self.path(near)
        if directory not in self._staging_folders:
            self._mkdir(directory)
            self._staging_folders.add(directory)
        return directory / temp_name()

    def install(
        self, staged: Path, key: str, *, sha256: str | None, create_only: bool = False
    ) -> FileStat:
        final = self.path(key)
        if create_only and os.path.lexists(final):
            raise FileExistsError(f"{final} already exists")
        try:
            os.replace(staged, final)
            st = final.lstat()
        except OSError as exc:
            raise StoreError.from_os_error(f"cannot install {final}", exc) from exc
        return FileStat(st.st_size, st.st_mtime_ns)

    def adopt(self, source: Path, key: str) -> FileStat:
        """link(2) never replaces an existing name, so a published file is never overwritten.
        A source with other hard links (publishing it would let later edits of that other
        name reach clients) or on another file system is copied beside the target first."""
        final = self.path(key)
        self._mkdir(final.parent)
        if source.lstat().st_nlink > 1:
            self._copy_then_link(source, final)
        else:
            try:
                os.link(source, final)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.EPERM, errno.EMLINK):
                    raise
                self._copy_then_link(source, final)
        # published files must be readable by the web server, whatever the dropper's umask was
        final.chmod(0o644)
        sync_directory(final.parent)
        source.unlink()
        st = final.lstat()
        return FileStat(st.st_size, st.st_mtime_ns)

    def _copy_then_link(self, source: Path, final: Path) -> None:
        temp = final.parent / temp_name()
        try:
            with open(source, "rb") as src, open(temp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
                dst.flush()
                os.fsync(dst.fileno())
            shutil.copystat(source, temp)
            os.link(temp, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()

    def make_durable(self, keys: Iterable[str]) -> None:
        """fsync a batch of new files (and their folders) before anything names them. One fsync
        costs about a millisecond on a disk; for hundreds of files one syncfs(2) of their file
        system is far cheaper."""
        paths = [self.path(key) for key in keys]
        if len(paths) > DURABLE_ONE_BY_ONE:
            by_device: dict[int, Path] = {}
            for folder in {path.parent for path in paths}:
                try:
                    by_device.setdefault(folder.stat().st_dev, folder)
                except OSError as exc:
                    raise StoreError.from_os_error(f"cannot write into {folder}", exc) from exc
            for folder in by_device.values():
                sync_file_system(folder)
            return
        for path in paths:
            try:
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)  # a network share may report a full disk only here
                finally:
                    os.close(fd)
            except OSError as exc:
                raise StoreError.from_os_error(f"cannot write {path}", exc) from exc
        for directory in {path.parent for path in paths}:
            sync_directory(directory)

    def delete(self, key: str) -> None:
        """Asked first: on a read-only file system, unlinking a file that is not there fails
        with EROFS, not ENOENT (and a sync with nothing to do must succeed)."""
        path = self.path(key)
        if not os.path.lexists(path):
            return
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StoreError.from_os_error(f"cannot delete {path}", exc) from exc

    def clean_staging(self, folder: str) -> int:
        removed = 0
        for entry in self._entries(folder):
            if entry.name.startswith(TEMP_PREFIX) and entry.name.endswith(TEMP_SUFFIX):
                self.delete(f"{folder}/{entry.name}")
                removed += 1
        return removed

    def sync_folder(self, folder: str) -> None:
        sync_directory(self.path(folder))

    def _mkdir(self, directory: Path) -> None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            if exc.errno == errno.EEXIST and directory.is_dir():
                return
            raise StoreError.from_os_error(f"cannot create {directory}", exc) from exc


def sync_file_system(folder: Path) -> None:
    """Everything written to the file system holding `folder` reaches stable storage: syncfs(2)
    where the C library has it (only that file system, where sync(2) would also flush every
    other mount, network shares included; and since Linux 5.8 it reports write-back errors),
    else sync(2)."""
    try:
        syncfs = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError, TypeError):  # not Linux/glibc: no syncfs
        os.sync()
        return
    syncfs.argtypes, syncfs.restype = [ctypes.c_int], ctypes.c_int
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise StoreError.from_os_error(f"cannot write into {folder}", exc) from exc
    try:
        if syncfs(fd) != 0:
            code = ctypes.get_errno()
            failed = OSError(code, os.strerror(code))
            raise StoreError.from_os_error(f"cannot write the new files in {folder}", failed)
    finally:
        os.close(fd)


def sync_directory(directory: Path) -> None:
    """Make renames in a directory durable before anything that depends on them is written."""
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems (network shares) do not support it
    finally:
        os.close(fd)
