"""What an upstream hands back (validators, repodata, downloads) and the protocol it follows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mirror.core.plan import WantedFile
from mirror.core.records import UpstreamRepodata

OnBytes = Callable[[int], None]


@dataclass(frozen=True)
class Validators:
    """Conditional-request validators of one repodata variant (file name)."""

    variant: str
    etag: str | None
    last_modified: str | None


@dataclass(frozen=True)
class NotModified:
    validators: Validators


@dataclass(frozen=True)
class Fetched:
    repodata: UpstreamRepodata  # split into raw records (zero-copy slices of the body)
    validators: Validators
    zst_missing: bool  # the .zst was asked for and upstream does not have it
    transferred_bytes: int = 0  # the body as it came over the wire (compressed)


@dataclass(frozen=True)
class FetchedBytes:
    """A small upstream file (a shard index) as transferred, and its validators."""

    data: bytes
    validators: Validators


@dataclass(frozen=True)
class Downloaded:
    size: int
    sha256: str
    md5: str | None  # only for a record without a sha256 (md5 costs 2.5x a sha256 per byte)
    attempts: int


class Upstream(Protocol):
    shown_url: str

    def fetch_repodata(
        self, subdir: str, previous: Validators | None, skip_zst: bool
    ) -> NotModified | Fetched: ...

    def download(
        self, subdir: str, want: WantedFile, dest: Path, on_bytes: OnBytes
    ) -> Downloaded: ...

    def transfer_threads(self) -> int:
        """How many downloads a pool should run at once now (an http upstream: its host's
        adaptive limit, which the pool follows as it grows)."""
        ...

    def file_url(self, subdir: str, name: str) -> str:
        """The URL of a file of a subdir (unredacted: it may hold a token)."""
        ...

    def fetch_small(
        self, url: str, previous: Validators | None, max_bytes: int, *, hash_checked: bool = False
    ) -> NotModified | FetchedBytes:
        """A small file (a shard index, a shard) by URL, conditionally when `previous` is
        given; UpstreamError reason `not_found` when upstream has none. `hash_checked`: the
        caller checks the bytes against a hash it knows (a shard), so one transfer is enough."""
        ...
