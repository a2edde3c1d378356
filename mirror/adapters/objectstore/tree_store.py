"""A channel tree kept in a bucket: the TreeStore (mirror/core/tree_store.py) over a Bucket.

Object keys and bytes are what a local tree would hold at the same paths. What a disk gives by
renames, a bucket gives per object: a PUT is atomic, so nothing is ever visible half-written
under its final key. New bytes are staged in local temp files (under the state directory)
and uploaded from there once verified.

Index writes are conditional: each carries the ETag this writer last saw for the key (from
its first look at it, then from its own writes), so a writer that lost its lease can never
replace an index a newer writer published (StoreConflictError, nothing written). Before every
write the writer's guard (the lease's check) is asked, so a writer whose lease lapsed stops.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import os
import secrets
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, cast

from mirror.adapters.objectstore.bucket import Bucket
from mirror.adapters.objectstore.objects import ObjectStat, etag_names
from mirror.adapters.objectstore.reader import ChunkReader
from mirror.core.tree_store import FileStat, Pieces
from mirror.errors import StoreConflictError, StoreMissingError

STAGING_PREFIX = ".mirror-"
STAGING_SUFFIX = ".tmp"
_TAG = secrets.token_hex(4)  # with the pid, tells this process's staging files from another's
_SERIAL = itertools.count()  # next() is atomic under the GIL: threads never share a number
_DOWNLOADERS = 8  # parallel GETs when many package files are read at once (an index)
_ABSENT = ""  # seen: the writer looked and there was no object
# How long a subdir's listing answers for its index files (a HEAD each otherwise): a publish
# right after the listing needs no HEAD per output; one after long downloads asks again.
LISTING_FRESH_S = 30.0
_PACKAGE_SUFFIXES = (".conda", ".tar.bz2")


def _staged_names(folder: Path, keys: Sequence[str]) -> list[Path]:
    """Where each key is downloaded to: `folder/<name>`, or `folder/<n>/<name>` for a name
    that repeats (the same file name in two subdirs); a folder per file would double the
    file-system work of staging thousands of small packages."""
    names = [key.rpartition("/")[2] for key in keys]
    repeated = {name for name, count in Counter(names).items() if count > 1}
    return [
        folder / str(n) / name if name in repeated else folder / name
        for n, name in enumerate(names)
    ]


def version_token(etag: str) -> int:
    """A FileStat's mtime_ns for an object: a number that changes with its ETag (objects have
    no finer modification time than a second, and a rewrite always gets a new ETag)."""
    return int.from_bytes(hashlib.blake2b(etag.encode(), digest_size=7).digest(), "big")


def _stat(stat: ObjectStat) -> FileStat:
    return FileStat(stat.size, version_token(stat.etag))


class BucketStore:
    """The tree at a bucket's prefix. `staging` is a local directory for bytes on their way
    in (one folder per subdir, like a local tree's temp files beside their targets)."""

    cheap_listing = False  # one request per 1,000 keys

    def __init__(self, bucket: Bucket, staging: Path, *, max_uploads: int = 8) -> None:
        self.bucket = bucket
        self.staging = staging
        # a bound on PUTs in flight whatever the number of download threads feeding them:
        # a server slows down past its own concurrency (moto at 4-8), and the lease's
        # renewals, which do not wait for this, must still get through
        self._uploads = threading.BoundedSemaphore(max_uploads)
        self._staging_folders: set[Path] = set()
        self._seen: dict[str, str] = {}  # key -> ETag this writer last saw ("" = none)
        self._sha256: dict[str, tuple[int, str]] = {}  # key -> (version, sha256) it wrote
        self._seen_lock = threading.Lock()
        self._guard: Callable[[], None] | None = None
        # folder -> (when listed, its objects other than packages, names written since: their
        # stats are the write's, not the listing's)
        self._listed: dict[str, tuple[float, dict[str, ObjectStat], set[str]]] = {}

    @property
    def location(self) -> str:
        return self.bucket.location.url

    def begin_writing(self, guard: Callable[[], None]) -> None:
        """A writer holds the tree from now: `guard` (the lease's check) runs before each
        write. What was seen before belongs to another session and is forgotten."""
        with self._seen_lock:
            self._seen.clear()
            self._listed.clear()
        self._guard = guard

    def end_writing(self) -> None:
        self._guard = None

    # -- reading --------------------------------------------------------------------------------

    def stat(self, key: str) -> FileStat | None:
        found = self._head(key)
        return _stat(found) if found is not None else None

    def list_files(self, folder: str) -> dict[str, FileStat]:
        listing = self.bucket.list_dir(folder)
        # the index files (not the thousands of packages) are kept: a publish that follows
        # asks them instead of a HEAD per output
        others = {n: s for n, s in listing.objects.items() if not n.endswith(_PACKAGE_SUFFIXES)}
        with self._seen_lock:
            self._listed[folder] = (time.monotonic(), others, set())
        return {name: _stat(stat) for name, stat in listing.objects.items()}

    def list_folders(self, folder: str) -> list[str]:
        return sorted(self.bucket.list_dir(folder).folders)

    def walk(self, folder: str) -> dict[str, FileStat]:
        return {
            path: _stat(stat)
            for path, stat in self.bucket.walk(folder).items()
            if not any(part.startswith(".") for part in path.split("/"))
        }

    def read(self, key: str) -> bytes:
        try:
            data, stat = self.bucket.get_object(key)
        except StoreMissingError as exc:
            self._saw(key, _ABSENT)
            raise FileNotFoundError(str(exc)) from None
        self._saw(key, stat.etag)
        return data

    @contextlib.contextmanager
    def open(self, key: str) -> Iterator[BinaryIO]:
        """One streaming GET (resumed by a ranged GET if the link breaks)."""
        chunks = self.bucket.iter_bytes(key)
        try:
            first = next(chunks, b"")  # the GET itself: a missing object is known now
        except StoreMissingError as exc:
            raise FileNotFoundError(str(exc)) from None
        try:
            with io.BufferedReader(ChunkReader(itertools.chain([first], chunks))) as reader:
                yield cast(BinaryIO, reader)
        finally:
            chunks.close()  # a stream left half-read

    @contextlib.contextmanager
    def local_file(self, key: str) -> Iterator[Path]:
        with self.local_files([key]) as paths:
            yield paths[0]

    @contextlib.contextmanager
    def local_files(self, keys: Sequence[str]) -> Iterator[list[Path]]:
        """Downloaded (several at once) into a staging folder, under their own names (a
        package reader judges a file by its name), removed afterwards."""
        folder = self.staging_path("")
        paths = _staged_names(folder, keys)
        try:
            for directory in sorted({path.parent for path in paths}):
                directory.mkdir(parents=True)
            with ThreadPoolExecutor(min(_DOWNLOADERS, max(1, len(keys)))) as pool:
                for _ in pool.map(self._download, keys, paths):
                    pass
            yield paths
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _download(self, key: str, path: Path) -> None:
        try:
            with open(path, "wb") as out:
                for chunk in self.bucket.iter_bytes(key):
                    out.write(chunk)
        except StoreMissingError as exc:
            raise FileNotFoundError(str(exc)) from None

    def free_bytes(self) -> int | None:
        return None

    # -- writing --------------------------------------------------------------------------------

    def same_bytes(self, key: str, data: bytes) -> bool:
        """Whether the object holds exactly `data`: an ETag that is the MD5 of `data` says so
        without a download."""
        found = self._head(key)
        if found is None or found.size != len(data):
            return False
        return etag_names(found.etag, data) or self.read(key) == data

    def write(
        self, key: str, pieces: Pieces, *, durable: bool = True, create_only: bool = False
    ) -> FileStat:
        """One conditional PUT: on the ETag this writer last saw, or create-only."""
        data = b"".join(pieces)
        if create_only:
            try:
                with self._uploads:
                    self._check()  # after waiting for a slot: as close to the PUT as can be
                    etag = self.bucket.put_bytes(key, data, create_only=True)
            except StoreConflictError:
                raise FileExistsError(f"{self.bucket.url_of(key)} already exists") from None
            self._wrote(key, etag, hashlib.sha256(data).hexdigest())
            return FileStat(len(data), version_token(etag))
        last = self._last_seen(key)
        try:
            with self._uploads:
                self._check()
                etag = self.bucket.put_bytes(
                    key, data, create_only=last == _ABSENT, if_match=last or None
                )
        except StoreConflictError:
            raise StoreConflictError(
                f"{self.bucket.url_of(key)} was not written: it changed since this writer last "
                "saw it, so another writer has published since (did this one lose the writer "
                "lease?); nothing was overwritten, run again"
            ) from None
        self._wrote(key, etag, hashlib.sha256(data).hexdigest())
        return FileStat(len(data), version_token(etag))

    def staging_path(self, near: str) -> Path:
        folder = self.staging / near if near else self.staging
        if folder not in self._staging_folders:  # thousands of downloads need not each ask
            folder.mkdir(parents=True, exist_ok=True)
            self._staging_folders.add(folder)
        return folder / f"{STAGING_PREFIX}{os.getpid():x}-{_TAG}-{next(_SERIAL):x}{STAGING_SUFFIX}"

    def install(
        self, staged: Path, key: str, *, sha256: str | None, create_only: bool = False
    ) -> FileStat:
        """Upload the verified staging file (multipart when large), then remove it."""
        size = staged.stat().st_size
        try:
            with self._uploads:
                self._check()
                etag = self.bucket.put_file(key, staged, sha256_hex=sha256, create_only=create_only)
        except StoreConflictError:
            if not create_only:
                raise
            raise FileExistsError(f"{self.bucket.url_of(key)} already exists") from None
        staged.unlink(missing_ok=True)
        self._wrote(key, etag, sha256)
        return FileStat(size, version_token(etag))

    def adopt(self, source: Path, key: str) -> FileStat:
        size = source.stat().st_size
        try:
            with self._uploads:
                self._check()
                etag = self.bucket.put_file(key, source, create_only=True)
        except StoreConflictError:
            raise FileExistsError(f"{self.bucket.url_of(key)} already exists") from None
        source.unlink()
        self._wrote(key, etag)
        return FileStat(size, version_token(etag))

    def make_durable(self, keys: Iterable[str]) -> None:
        """A completed PUT is durable."""

    def sync_folder(self, folder: str) -> None:
        """Objects have no folder to sync."""

    def delete(self, key: str) -> None:
        """Asked first (a HEAD is a read; a DELETE of nothing would still be a write)."""
        if self._last_seen(key) == _ABSENT:
            return
        self._check()
        self.bucket.delete(key)
        self._wrote(key, _ABSENT)

    def clean_staging(self, folder: str) -> int:
        """Staging files an interrupted run left for this folder (on this host)."""
        removed = 0
        directory = self.staging / folder
        if directory.is_dir():
            for path in directory.glob(f"{STAGING_PREFIX}*{STAGING_SUFFIX}"):
                if path.is_dir():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed += 1
        return removed

    # -- what this writer saw -------------------------------------------------------------------

    def _check(self) -> None:
        if self._guard is not None:
            self._guard()

    def _head(self, key: str) -> ObjectStat | None:
        """The object's stats, from a fresh listing of its folder when there is one (an index
        file absent from it is absent), else by a HEAD; seen either way."""
        folder, _, name = key.rpartition("/")
        with self._seen_lock:
            listed = self._listed.get(folder)
            answers = (
                listed is not None
                and time.monotonic() - listed[0] < LISTING_FRESH_S
                and not name.endswith(_PACKAGE_SUFFIXES)
                and name not in listed[2]
            )
        found = listed[1].get(name) if answers and listed is not None else self.bucket.head(key)
        self._saw(key, found.etag if found else _ABSENT)
        return found

    def _saw(self, key: str, etag: str) -> None:
        """Only the first look counts: later looks must not bless a version another writer
        put there meanwhile (this writer's own writes update it)."""
        with self._seen_lock:
            self._seen.setdefault(key, etag)

    def _wrote(self, key: str, etag: str, sha256: str | None = None) -> None:
        folder, _, name = key.rpartition("/")
        with self._seen_lock:
            self._seen[key] = etag
            if folder in self._listed:
                self._listed[folder][2].add(name)
            if sha256:
                self._sha256[key] = (version_token(etag), sha256)
            else:
                self._sha256.pop(key, None)

    def vouched_sha256(self, key: str, stat: FileStat) -> str | None:
        """The sha256 of what this process wrote under `key`, if the object is still that
        version (`stat` from a listing): a snapshot need not download it to hash it."""
        with self._seen_lock:
            written = self._sha256.get(key)
        return written[1] if written is not None and written[0] == stat.mtime_ns else None

    def _last_seen(self, key: str) -> str:
        with self._seen_lock:
            last = self._seen.get(key)
        if last is None:
            self.stat(key)
            with self._seen_lock:
                last = self._seen[key]
        return last
