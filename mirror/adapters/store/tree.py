"""The layout of a channel tree over any tree store: `<channel>/<subdir>/<file>` keys, checked
names, package scans, write-if-changed, and zstd-compressed index files.

Every key a use case builds goes through here, so a store never sees an unsafe one: channel and
subdir names are plain, package file names are plain `.conda`/`.tar.bz2` basenames.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import zstandard

from mirror.adapters.store.hashing import hash_stream
from mirror.core.records import is_safe_filename
from mirror.core.tree_store import FileStat, Pieces, TreeStore, join
from mirror.errors import StoreError

CHANNEL_MARKER = ".mirror-channel.json"  # in each channel folder: who keeps it, with what state
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_READERS = 8  # files hashed at once by digests()


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

    @classmethod
    def from_bytes(cls, data: bytes) -> ChannelMarker | None:
        try:
            fields = json.loads(data)
            return cls(str(fields["kind"]), str(fields["state_dir"]), fields.get("config"))
        except (ValueError, KeyError, TypeError):
            return None


class ChannelTree:
    """All channels under one store's root."""

    def __init__(self, store: TreeStore) -> None:
        self.store = store

    @property
    def location(self) -> str:
        return self.store.location

    # -- keys -----------------------------------------------------------------------------------

    def channel_key(self, channel: str) -> str:
        if not _NAME.fullmatch(channel) or channel in (".", ".."):
            raise StoreError(f"refusing unsafe channel name {channel!r}")
        return channel

    def subdir_key(self, channel: str, subdir: str) -> str:
        if not _NAME.fullmatch(subdir) or subdir in (".", ".."):
            raise StoreError(f"refusing unsafe subdir name {subdir!r}")
        return f"{self.channel_key(channel)}/{subdir}"

    def package_key(self, channel: str, subdir: str, filename: str) -> str:
        """The key of a package file; anything but a plain package basename is refused."""
        if not is_safe_filename(filename):
            raise StoreError(f"refusing unsafe package file name {filename!r}")
        return f"{self.subdir_key(channel, subdir)}/{filename}"

    def shown(self, key: str) -> str:
        """A key as messages show it: the path on a disk, the URL in a bucket."""
        return f"{self.store.location.rstrip('/')}/{key}"

    # -- reading --------------------------------------------------------------------------------

    def stat(self, key: str) -> FileStat | None:
        return self.store.stat(key)

    def read(self, key: str) -> bytes:
        return self.store.read(key)

    def read_if_there(self, key: str) -> bytes | None:
        try:
            return self.store.read(key)
        except FileNotFoundError:
            return None

    def scan_packages(self, channel: str, subdir: str) -> dict[str, FileStat]:
        """Package files present in a subdir (regular files with plain package names)."""
        files = self.store.list_files(self.subdir_key(channel, subdir))
        return {name: stat for name, stat in files.items() if is_safe_filename(name)}

    def scan_unsafe_names(self, channel: str, subdir: str) -> list[str]:
        """Files that end like a package but whose names clients could not use."""
        files = self.store.list_files(self.subdir_key(channel, subdir))
        return sorted(
            name
            for name in files
            if name.endswith((".conda", ".tar.bz2")) and not is_safe_filename(name)
        )

    def stat_packages(
        self, channel: str, subdir: str, filenames: Iterable[str]
    ) -> dict[str, FileStat]:
        """Like scan_packages(), for just these names (the rest of the subdir is not read)."""
        found = {}
        for filename in filenames:
            stat = self.store.stat(self.package_key(channel, subdir, filename))
            if stat is not None:
                found[filename] = stat
        return found

    def list_names(self, folder: str, suffix: str) -> set[str]:
        """Names (without `suffix`) of the files in a folder that end in it."""
        files = self.store.list_files(folder)
        return {name[: -len(suffix)] for name in files if name.endswith(suffix)}

    def channels(self) -> list[str]:
        return [name for name in self.store.list_folders("") if _NAME.fullmatch(name)]

    def folders(self, channel: str) -> list[str]:
        return self.store.list_folders(self.channel_key(channel))

    def digest(self, key: str, *, with_md5: bool = True) -> tuple[int, str, str]:
        """(size, sha256, md5) of a file, read once as a stream; md5 is "" when not asked."""
        with self.store.open(key) as stream:
            return hash_stream(stream, with_md5=with_md5)

    def digests(
        self, keys: Sequence[str], *, with_md5: bool = True
    ) -> dict[str, tuple[int, str, str]]:
        """digest() of many files, several read at once: a bucket answers each GET after a
        round trip, and hashing releases the GIL."""
        if len(keys) < 2:
            return {key: self.digest(key, with_md5=with_md5) for key in keys}
        with ThreadPoolExecutor(min(_READERS, len(keys)), thread_name_prefix="digest") as pool:
            found = pool.map(lambda key: self.digest(key, with_md5=with_md5), keys)
            return dict(zip(keys, found, strict=True))

    @contextlib.contextmanager
    def local_file(self, key: str) -> Iterator[Path]:
        with self.store.local_file(key) as path:
            yield path

    @contextlib.contextmanager
    def local_files(self, keys: Sequence[str]) -> Iterator[list[Path]]:
        with self.store.local_files(keys) as paths:
            yield paths

    def local_batches(self, batches: Sequence[Sequence[str]]) -> Iterator[list[Path]]:
        """local_files() of each batch in turn, the next one fetched while the caller works
        on the current one (an object store's downloads overlap the reading); each batch is
        removed once the caller asks for the next, or stops."""
        if not batches:
            return
        with ThreadPoolExecutor(1, thread_name_prefix="prefetch") as fetcher:

            def fetch(keys: Sequence[str]) -> tuple[contextlib.ExitStack, list[Path]]:
                stack = contextlib.ExitStack()
                return stack, stack.enter_context(self.local_files(keys))

            pending = [fetcher.submit(fetch, batch) for batch in batches[:1]]
            try:
                for following in [*batches[1:], None]:
                    stack, paths = pending.pop().result()
                    if following is not None:
                        pending.append(fetcher.submit(fetch, following))
                    with stack:
                        yield paths
            finally:
                for future in pending:  # the caller stopped early: the prefetched batch too
                    future.result()[0].close()

    def free_bytes(self) -> int | None:
        return self.store.free_bytes()

    # -- writing --------------------------------------------------------------------------------

    def write_if_changed(self, key: str, data: bytes, *, durable: bool = True) -> bool:
        """Atomically write `data` unless the file already holds exactly these bytes: an
        unchanged file keeps its mtime (or ETag), so web caches stay valid."""
        if self.store.same_bytes(key, data):
            return False
        self.store.write(key, [data], durable=durable)
        return True

    def write_pieces(self, key: str, pieces: Pieces, zst_level: int | None = None) -> FileStat:
        """Atomically write the concatenation of `pieces`, or with `zst_level` one zstd frame of
        it with its content size and a checksum (a client, or a mirror of this mirror, detects
        damage in transit)."""
        if zst_level is None:
            return self.store.write(key, pieces)
        total = sum(len(p) for p in pieces)
        compressor = zstandard.ZstdCompressor(
            level=zst_level, write_content_size=True, write_checksum=True, threads=-1
        )
        chunker = compressor.chunker(size=total, chunk_size=1 << 20)
        frames: list[bytes] = []
        for piece in pieces:
            frames.extend(chunker.compress(piece))
        frames.extend(chunker.finish())  # type: ignore[no-untyped-call]
        return self.store.write(key, frames)

    def staging_path(self, channel: str, subdir: str) -> Path:
        """A fresh local temp file for bytes on their way into this subdir."""
        return self.store.staging_path(self.subdir_key(channel, subdir))

    def install(
        self, staged: Path, key: str, *, sha256: str | None = None, create_only: bool = False
    ) -> FileStat:
        """Verified bytes in a staging file take their name (with `create_only`, only if the
        name is free: FileExistsError, and the staging file stays)."""
        return self.store.install(staged, key, sha256=sha256, create_only=create_only)

    def adopt(self, source: Path, key: str) -> FileStat:
        """A file from a drop folder is published as `key`, never over an existing file
        (FileExistsError, and the source stays)."""
        return self.store.adopt(source, key)

    def write_new(self, key: str, data: bytes, *, durable: bool = True) -> bool:
        """A content-addressed file (its name is its hash) is written unless it holds these
        bytes already; one with other bytes (damaged) is replaced. Created without asking
        first: new is the usual case, and in a bucket a question is a round trip."""
        try:
            self.store.write(key, [data], durable=durable, create_only=True)
            return True
        except FileExistsError:
            return self.write_if_changed(key, data, durable=durable)

    def make_durable(self, keys: Iterable[str]) -> None:
        self.store.make_durable(keys)

    def sync_folder(self, folder: str) -> None:
        """Renames into a folder are durable before anything that depends on them is written."""
        self.store.sync_folder(folder)

    def remove(self, key: str) -> None:
        self.store.delete(key)

    def clean_temp(self, channel: str, subdir: str) -> int:
        """Temp files an interrupted run left behind (we hold the writer lock)."""
        return self.store.clean_staging(self.subdir_key(channel, subdir))

    def mark_channel(self, channel: str, marker: ChannelMarker) -> None:
        """Say who keeps the channel (written only when it changes)."""
        self.write_if_changed(join(self.channel_key(channel), CHANNEL_MARKER), marker.to_bytes())

    def marker(self, channel: str) -> ChannelMarker | None:
        data = self.read_if_there(join(self.channel_key(channel), CHANNEL_MARKER))
        return ChannelMarker.from_bytes(data) if data is not None else None
