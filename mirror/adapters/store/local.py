"""A channel tree in a local directory (a disk or a file share).

Every file a client can see appears by `os.replace` of a fully written, fsynced temp file in
the same directory, so a reader never sees half a file. Temp files are dotfiles named
`.mirror-*.tmp` so web servers configured to hide dotfiles never serve them.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat as stat_module
import uuid
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from mirror.core.tree_store import FileStat, Pieces
from mirror.errors import StoreError

TEMP_PREFIX = ".mirror-"
TEMP_SUFFIX = ".tmp"
DURABLE_ONE_BY_ONE = 32  # past this many new files, one sync(2) beats an fsync each


class LocalStore:
    """The TreeStore of a directory: keys are paths below `root`."""

    cheap_listing = True
    durable_staging = True

    def __init__(self, root: Path) -> None:
        self.root = root

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
        temp = path.parent / f"{TEMP_PREFIX}{uuid.uuid4().hex}{TEMP_SUFFIX}"
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
        self._mkdir(directory)
        return directory / f"{TEMP_PREFIX}{uuid.uuid4().hex}{TEMP_SUFFIX}"

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
        temp = final.parent / f"{TEMP_PREFIX}{uuid.uuid4().hex}{TEMP_SUFFIX}"
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
        """fsync a batch of new files before anything names them. One fsync costs about a
        millisecond on a disk; for thousands of shards one sync(2) is far cheaper."""
        paths = [self.path(key) for key in keys]
        if len(paths) > DURABLE_ONE_BY_ONE:
            os.sync()
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
