"""The channel tree on disk: safe paths, atomic installs, write-if-changed, prune.

Every file a client can see appears by `os.replace` of a fully written, fsynced temp file in
the same directory, so a reader never sees half a file. Temp files are dotfiles named
`.mirror-*.tmp` so web servers configured to hide dotfiles never serve them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat as stat_module
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import BinaryIO

import zstandard

from mirror.core.records import is_safe_filename
from mirror.errors import InsufficientSpaceError, StoreError

QUARANTINE_DIR = "quarantine"  # under the state directory
CHANNEL_MARKER = ".mirror-channel.json"  # in each channel folder: who keeps it, with what state
TEMP_PREFIX = ".mirror-"
TEMP_SUFFIX = ".tmp"
DURABLE_ONE_BY_ONE = 32
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True, slots=True)
class FileStat:
    size: int
    mtime_ns: int


class ChannelTree:
    """All channels under one root: `<root>/<channel>/<subdir>/<file>`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    # -- paths ------------------------------------------------------------------------------

    def channel_dir(self, channel: str) -> Path:
        if not _NAME.fullmatch(channel) or channel in (".", ".."):
            raise StoreError(f"refusing unsafe channel name {channel!r}")
        return self.root / channel

    def subdir_dir(self, channel: str, subdir: str) -> Path:
        if not _NAME.fullmatch(subdir) or subdir in (".", ".."):
            raise StoreError(f"refusing unsafe subdir name {subdir!r}")
        return self.channel_dir(channel) / subdir

    def package_path(self, channel: str, subdir: str, filename: str) -> Path:
        """The final path of a package file; anything but a plain package basename is refused."""
        if not is_safe_filename(filename):
            raise StoreError(f"refusing unsafe package file name {filename!r}")
        return self.subdir_dir(channel, subdir) / filename

    def ensure_subdir(self, channel: str, subdir: str) -> Path:
        path = self.subdir_dir(channel, subdir)
        self.ensure_dir(path)
        return path

    def mark_channel(self, channel: str, marker: ChannelMarker) -> None:
        """Say who keeps the channel (written only when it changes)."""
        directory = self.channel_dir(channel)
        self.ensure_dir(directory)
        self.write_if_changed(directory / CHANNEL_MARKER, marker.to_bytes())

    def ensure_dir(self, path: Path) -> None:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError.from_os_error(f"cannot create {path}", exc) from exc

    def temp_path(self, channel: str, subdir: str) -> Path:
        """A fresh temp file name beside the final files (same filesystem: atomic rename)."""
        return self.subdir_dir(channel, subdir) / f"{TEMP_PREFIX}{uuid.uuid4().hex}{TEMP_SUFFIX}"

    # -- reading ----------------------------------------------------------------------------

    def scan_packages(self, channel: str, subdir: str) -> dict[str, FileStat]:
        """Package files present in a subdir (regular files only, never following symlinks)."""
        directory = self.subdir_dir(channel, subdir)
        found: dict[str, FileStat] = {}
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            return found
        except OSError as exc:
            raise StoreError.from_os_error(f"cannot list {directory}", exc) from exc
        for entry in entries:
            if not is_safe_filename(entry.name) or not entry.is_file(follow_symlinks=False):
                continue
            stat = entry.stat(follow_symlinks=False)
            found[entry.name] = FileStat(stat.st_size, stat.st_mtime_ns)
        return found

    def scan_unsafe_names(self, channel: str, subdir: str) -> list[str]:
        """Regular files that end like a package but whose names clients could not use."""
        directory = self.subdir_dir(channel, subdir)
        try:
            entries = list(os.scandir(directory))
        except FileNotFoundError:
            return []
        return sorted(
            e.name
            for e in entries
            if e.name.endswith((".conda", ".tar.bz2"))
            and not is_safe_filename(e.name)
            and not e.name.startswith(TEMP_PREFIX)
            and e.is_file(follow_symlinks=False)
        )

    def stat_packages(
        self, channel: str, subdir: str, filenames: Iterable[str]
    ) -> dict[str, FileStat]:
        """Like scan_packages(), for just these names (the rest of the subdir is not read)."""
        found = {}
        for filename in filenames:
            path = self.package_path(channel, subdir, filename)
            try:
                st = path.lstat()
            except FileNotFoundError:
                continue
            if stat_module.S_ISREG(st.st_mode):
                found[filename] = FileStat(st.st_size, st.st_mtime_ns)
        return found

    def stat(self, path: Path) -> FileStat | None:
        try:
            st = path.lstat()
        except FileNotFoundError:
            return None
        return FileStat(st.st_size, st.st_mtime_ns)

    def free_bytes(self) -> int:
        probe = self.root
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        return shutil.disk_usage(probe).free

    def check_space(self, needed_bytes: int, margin_bytes: int, what: str) -> None:
        free = self.free_bytes()
        if needed_bytes + margin_bytes > free:
            raise InsufficientSpaceError(
                f"{what}: {_mb(needed_bytes)} to download but only {_mb(free)} free under "
                f"{self.root} (keeping a margin of {_mb(margin_bytes)}); free some space, narrow "
                "the filters or lower free_space_margin. Nothing was downloaded."
            )

    # -- writing ----------------------------------------------------------------------------

    def install(self, temp: Path, final: Path) -> FileStat:
        """Move a complete, fsynced temp file to its final name."""
        try:
            os.replace(temp, final)
            st = final.lstat()
        except OSError as exc:
            raise StoreError.from_os_error(f"cannot install {final}", exc) from exc
        return FileStat(st.st_size, st.st_mtime_ns)

    def write_if_changed(self, path: Path, data: bytes, *, fsync: bool = True) -> bool:
        """Atomically write `data` unless the file already holds exactly these bytes.

        Unchanged files keep their mtime, so web caches and ETags stay valid. With
        fsync=False the caller makes a batch durable at once (`make_durable`).
        """
        try:
            if path.lstat().st_size == len(data) and path.read_bytes() == data:
                return False
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise StoreError.from_os_error(f"cannot read {path}", exc) from exc
        self._replace(path, lambda handle: handle.write(data), fsync=fsync)
        return True

    def write_pieces(
        self, path: Path, pieces: Iterable[bytes | memoryview], zst_level: int | None = None
    ) -> FileStat:
        """Atomically write the concatenation of `pieces` (compressed as one zstd frame with
        its content size when `zst_level` is given) without joining them in memory."""
        pieces = list(pieces)

        def write(handle: BinaryIO) -> None:
            if zst_level is None:
                handle.writelines(pieces)
                return
            total = sum(len(p) for p in pieces)
            # the checksum lets a client (or a mirror of this mirror) detect damage in transit
            compressor = zstandard.ZstdCompressor(
                level=zst_level, write_content_size=True, write_checksum=True, threads=-1
            )
            with compressor.stream_writer(handle, size=total, closefd=False) as out:
                for piece in pieces:
                    out.write(piece)

        self._replace(path, write, fsync=True)
        stat = self.stat(path)
        if stat is None:
            raise StoreError(f"{path} vanished right after it was written")
        return stat

    def _replace(self, path: Path, write: Callable[[BinaryIO], object], *, fsync: bool) -> None:
        """Write a temp file beside `path` (fsynced unless told otherwise), then rename it over
        `path`: readers see the old file or the new one, never a part."""
        temp = path.parent / f"{TEMP_PREFIX}{uuid.uuid4().hex}{TEMP_SUFFIX}"
        try:
            with open(temp, "wb") as handle:
                write(handle)
                handle.flush()
                if fsync:
                    os.fsync(handle.fileno())
            os.replace(temp, path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temp.unlink()
            raise StoreError.from_os_error(
                f"cannot write {path} (the previous file is intact)", exc
            ) from exc

    def write_new(self, path: Path, data: bytes, *, fsync: bool = True) -> bool:
        """Write a content-addressed file (its name is its hash) unless it already holds these
        bytes; one that exists with other bytes (damaged on disk) is replaced."""
        return self.write_if_changed(path, data, fsync=fsync)

    def make_durable(self, paths: list[Path]) -> None:
        """fsync a batch of new files before anything names them. One fsync costs about a
        millisecond on a disk; for thousands of shards one sync(2) is far cheaper."""
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
        if paths:
            self.sync_dir(paths[0].parent)

    def list_names(self, directory: Path, suffix: str) -> set[str]:
        """Names (without `suffix`) of the regular files in a directory that end in it."""
        try:
            return {
                entry.name[: -len(suffix)]
                for entry in os.scandir(directory)
                if entry.name.endswith(suffix) and entry.is_file(follow_symlinks=False)
            }
        except FileNotFoundError:
            return set()

    def sync_dir(self, directory: Path) -> None:
        """Make renames in `directory` durable before anything that depends on them is written."""
        try:
            fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass  # some filesystems (e.g. network shares) do not support it
        finally:
            os.close(fd)

    def remove(self, path: Path) -> None:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:  # a read-only tree
            raise StoreError.from_os_error(f"cannot delete {path}", exc) from exc

    def clean_temp(self, channel: str, subdir: str) -> int:
        """Delete temp files an interrupted run left behind (we hold the writer lock)."""
        directory = self.subdir_dir(channel, subdir)
        removed = 0
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(directory):
                if entry.name.startswith(TEMP_PREFIX) and entry.name.endswith(TEMP_SUFFIX):
                    self.remove(Path(entry.path))
                    removed += 1
        return removed


@dataclass(frozen=True)
class ChannelMarker:
    """Who keeps a channel folder: `mirrored` (a sync: records are upstream's), `local` (drops
    or `mirror index`: records come from the packages) or `imported` (bundles); and the state
    directory whose catalog describes it. `mirror index` reads it so that it never rebuilds
    a mirrored channel's records from files, and indexes a local one with its own catalog."""

    kind: str
    state_dir: str
    config: str | None = None

    def to_bytes(self) -> bytes:
        return (json.dumps(asdict(self), sort_keys=True) + "\n").encode()


def read_marker(channel_dir: Path) -> ChannelMarker | None:
    try:
        data = json.loads((channel_dir / CHANNEL_MARKER).read_bytes())
        return ChannelMarker(str(data["kind"]), str(data["state_dir"]), data.get("config"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


class Quarantine:
    """Where rejected package files go: outside the published tree, each with a `.reason`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def move(self, source: Path, channel: str, subdir: str, reason: str) -> Path:
        """Move `source` out of the tree (or out of a drop folder); returns where it went."""
        folder = self.root / channel / subdir
        folder.mkdir(parents=True, exist_ok=True)
        name = _quarantine_name(source.name)
        if name != source.name:
            reason = f"{reason.rstrip()}\n(quarantined as {name!r}; its name was {source.name!r})"
        target = folder / name
        if target.exists() or target.is_symlink():
            target = folder / f"{name}.{uuid.uuid4().hex[:8]}"
        try:
            os.replace(source, target)
        except OSError:
            shutil.move(str(source), target)  # across filesystems (a drop folder elsewhere)
        target.with_name(target.name + ".reason").write_text(reason.rstrip() + "\n")
        return target

    def count(self) -> int:
        if not self.root.exists():
            return 0
        return sum(1 for p in self.root.rglob("*.reason") if p.is_file())


_NAME_MAX_BYTES = 255  # every filesystem we write to
_QUARANTINE_SUFFIX_BYTES = len(".12345678" + ".reason")  # a clash suffix, then the .reason


def _quarantine_name(name: str) -> str:
    """`name`, or when `<name>.<clash>.reason` would not fit NAME_MAX (a file refused for a
    name too long for our temp names), its first bytes and a digest of the whole."""
    raw = os.fsencode(name)
    if len(raw) + _QUARANTINE_SUFFIX_BYTES <= _NAME_MAX_BYTES:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:16]
    keep = _NAME_MAX_BYTES - _QUARANTINE_SUFFIX_BYTES - len(digest) - 1
    prefix = name
    while len(os.fsencode(prefix)) > keep:  # cut between characters, never inside one
        prefix = prefix[: -max(1, (len(os.fsencode(prefix)) - keep) // 4)]
    return f"{prefix}~{digest}"


def hash_file(
    path: Path, *, with_md5: bool = True, chunk_bytes: int = 1 << 20
) -> tuple[int, str, str]:
    """(size, sha256, md5) of a file, read in chunks; md5 is "" when not asked for (it costs
    a third more time, and only records of old md5-only packages need it)."""
    sha256 = hashlib.sha256()
    md5 = hashlib.md5(usedforsecurity=False) if with_md5 else None
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            size += len(chunk)
            sha256.update(chunk)
            if md5 is not None:
                md5.update(chunk)
    return size, sha256.hexdigest(), md5.hexdigest() if md5 is not None else ""


def sha256_file(path: Path) -> str:
    return hash_file(path, with_md5=False)[1]


def _mb(size: int) -> str:
    return f"{size / 1e6:,.1f} MB"
