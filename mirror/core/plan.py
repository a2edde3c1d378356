"""Wanted vs present -> what a sync must download, verify, keep and delete."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

ORIGIN_MIRROR = "mirror"
ORIGIN_LOCAL = "local"


@dataclass(frozen=True, slots=True)
class WantedFile:
    """A package file the selection wants, with what it must hash to."""

    filename: str
    size: int | None
    sha256: str | None
    md5: str | None

    def comparable(self, sha256: str | None, md5: str | None) -> bool:
        """Whether known hashes can answer same_content(): a file hashed for a record with a
        sha256 has no md5 (it would cost more than the sha256), and one the catalog lost has
        neither; such a file is hashed again, not taken for a replacement."""
        if self.sha256 is not None:
            return sha256 is not None
        return md5 is not None

    def same_content(self, size: int | None, sha256: str | None, md5: str | None) -> bool:
        if self.size is not None and size != self.size:
            return False
        if self.sha256 is not None:
            return sha256 == self.sha256
        return self.md5 is not None and md5 == self.md5


@dataclass(frozen=True, slots=True)
class PresentFile:
    """A package file on disk. Hashes are those the catalog vouches for (its recorded size and
    mtime still equal the file's), else None: then the file must be hashed before it is trusted.
    `origin` is None for a file the catalog does not know."""

    filename: str
    size: int
    sha256: str | None
    md5: str | None
    origin: str | None


@dataclass(frozen=True)
class SyncPlan:
    download: tuple[WantedFile, ...]
    verify: tuple[WantedFile, ...]  # on disk, right size, hash unknown: hash, then keep or fetch
    keep: tuple[WantedFile, ...]
    delete: tuple[PresentFile, ...]  # mirrored files no longer wanted (after publishing)
    untracked: tuple[PresentFile, ...]  # unknown files nobody wants: left alone, reported
    conflicts: tuple[WantedFile, ...] = ()  # a different local file holds the name: never replaced
    # published mirrored files upstream now gives other bytes under the same name (also in
    # `download`): what the mass-replacement guard counts
    replaced: tuple[WantedFile, ...] = ()

    @property
    def download_bytes(self) -> int:
        return sum(w.size or 0 for w in self.download)

    @property
    def delete_bytes(self) -> int:
        return sum(p.size for p in self.delete)


def plan_sync(wanted: Mapping[str, WantedFile], present: Mapping[str, PresentFile]) -> SyncPlan:
    download: list[WantedFile] = []
    verify: list[WantedFile] = []
    keep: list[WantedFile] = []
    conflicts: list[WantedFile] = []
    replaced: list[WantedFile] = []
    for filename in sorted(wanted):
        want = wanted[filename]
        have = present.get(filename)
        if have is not None and have.origin == ORIGIN_LOCAL:
            same = want.same_content(have.size, have.sha256, have.md5)
            (keep if same else conflicts).append(want)
        elif have is None:
            download.append(want)
        elif want.size is not None and have.size != want.size:
            download.append(want)
            if have.origin == ORIGIN_MIRROR:
                replaced.append(want)  # upstream changed the file under the same name
        elif not want.comparable(have.sha256, have.md5):
            verify.append(want)
        elif want.same_content(have.size, have.sha256, have.md5):
            keep.append(want)
        else:
            download.append(want)
            if have.origin == ORIGIN_MIRROR:
                replaced.append(want)
    leftovers = [present[name] for name in sorted(present) if name not in wanted]
    return SyncPlan(
        download=tuple(download),
        verify=tuple(verify),
        keep=tuple(keep),
        delete=tuple(p for p in leftovers if p.origin == ORIGIN_MIRROR),
        untracked=tuple(p for p in leftovers if p.origin is None),
        conflicts=tuple(conflicts),
        replaced=tuple(replaced),
    )
