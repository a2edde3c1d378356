"""The seam between what is published and where it lives: the protocol every tree store follows
(a local directory; an S3 bucket), and the values it hands out.

Keys are '/'-separated and relative to the tree's root (`conda-forge/linux-64/x.conda`); the
channel layout above a store (mirror/adapters/store/tree.py) builds and checks them, so a store
never sees '..', an absolute path or an empty segment. Every write is atomic: a reader sees the
old bytes or the new ones, never a part (a local store renames a fsynced temp file; an object
store completes one PUT).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

Pieces = Sequence[bytes | memoryview]


@dataclass(frozen=True, slots=True)
class FileStat:
    """A file's size and a token that changes whenever its bytes may have: the mtime in
    nanoseconds on a disk; for an object, a number derived from its ETag (an object has no
    finer mtime than a second, and a rewrite always gets a new ETag)."""

    size: int
    mtime_ns: int


class TreeStore(Protocol):
    """Where a channel tree's files live."""

    @property
    def location(self) -> str:
        """The root as shown in messages (a path, or s3://bucket/prefix); never a secret."""
        ...

    @property
    def cheap_listing(self) -> bool:
        """Whether listing a folder costs about what a stat does (a directory) rather than a
        round trip per 1,000 names (a bucket): whether a run may list a subdir just to look."""
        ...

    # -- reading --------------------------------------------------------------------------------

    def stat(self, key: str) -> FileStat | None: ...

    def list_files(self, folder: str) -> dict[str, FileStat]:
        """Regular files directly in a folder ('' is the root), by name; none if absent."""
        ...

    def list_folders(self, folder: str) -> list[str]: ...

    def walk(self, folder: str) -> dict[str, FileStat]:
        """Every file below a folder, by path relative to it, dotfiles and dot-folders left out
        (they are never published: temp files, locks, markers)."""
        ...

    def read(self, key: str) -> bytes:
        """The whole file; FileNotFoundError when it is not there."""
        ...

    def open(self, key: str) -> AbstractContextManager[BinaryIO]:
        """A stream of the file's bytes, for large files read once in order."""
        ...

    def local_file(self, key: str) -> AbstractContextManager[Path]:
        """The file as a path on this host (a download for an object store, removed after)."""
        ...

    def local_files(self, keys: Sequence[str]) -> AbstractContextManager[list[Path]]:
        """Many files as paths on this host at once (an object store fetches them in
        parallel)."""
        ...

    def vouched_sha256(self, key: str, stat: FileStat) -> str | None:
        """The sha256 of the file, if the store knows it without reading it (it wrote those
        very bytes, and `stat` still shows that version); None otherwise."""
        ...

    def same_bytes(self, key: str, data: bytes) -> bool:
        """Whether the file holds exactly `data` (False when it is not there)."""
        ...

    def free_bytes(self) -> int | None:
        """Room left for new files; None where there is no such limit (an object store)."""
        ...

    # -- writing --------------------------------------------------------------------------------

    def write(
        self, key: str, pieces: Pieces, *, durable: bool = True, create_only: bool = False
    ) -> FileStat:
        """Replace (or create) the file with the concatenation of `pieces`, atomically.
        `durable=False`: the caller makes a batch durable at once with make_durable().
        `create_only`: only if there is no file yet (FileExistsError otherwise; a bucket
        decides that in the PUT itself, without asking first)."""
        ...

    def staging_path(self, near: str) -> Path:
        """A fresh local temp file to stream new bytes into before install(): beside the folder
        `near` on a disk (the same file system: an atomic rename), elsewhere for a bucket."""
        ...

    def install(
        self, staged: Path, key: str, *, sha256: str | None, create_only: bool = False
    ) -> FileStat:
        """Give the verified bytes in `staged` (a staging_path(), consumed) the name `key`,
        replacing what was there; with `create_only`, only if nothing is there
        (FileExistsError otherwise, and `staged` is left in place)."""
        ...

    def adopt(self, source: Path, key: str) -> FileStat:
        """Publish a file from elsewhere on this host (a drop folder) as `key`, never over an
        existing file: FileExistsError then, and `source` is left alone; once published,
        `source` is removed."""
        ...

    def make_durable(self, keys: Iterable[str]) -> None:
        """New files written with durable=False are on stable storage once this returns."""
        ...

    def sync_folder(self, folder: str) -> None:
        """Renames into a folder are durable once this returns (nothing to do for a bucket)."""
        ...

    def delete(self, key: str) -> None:
        """Remove the file if it is there."""
        ...

    def clean_staging(self, folder: str) -> int:
        """Remove temp files an interrupted run left in a folder; how many."""
        ...


def join(*parts: str) -> str:
    """A key from its parts, skipping empty ones ('' + 'x' is 'x', not '/x')."""
    return "/".join(part.strip("/") for part in parts if part.strip("/"))
