"""The one error family of mirror: every failure a user can see is a MirrorError."""

from __future__ import annotations

import errno


class MirrorError(Exception):
    """Base of every error mirror reports; its message says what happened and what to do."""


class ConfigError(MirrorError):
    """The configuration file is unreadable or invalid (exit code 2)."""


class UsageError(MirrorError):
    """The command line asks for something that cannot be done (exit code 2)."""


class LockBusyError(MirrorError):
    """Another mirror process holds the single-writer lock of the tree."""


class UpstreamError(MirrorError):
    """An upstream answered badly or not at all. Carries a low-cardinality reason."""

    def __init__(self, message: str, *, reason: str = "error", retryable: bool = True) -> None:
        super().__init__(message)
        self.reason = reason
        self.retryable = retryable


class RepodataError(MirrorError):
    """Upstream repodata is not valid JSON or not shaped like repodata."""


class ShardError(RepodataError):
    """An upstream CEP-16 shard or shard index is unusable. Carries a low-cardinality reason
    (empty, corrupt, too_large, malformed, hash_mismatch); the sync falls back to
    repodata.json."""

    def __init__(self, message: str, *, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason


class ShardHashMismatch(ShardError):
    """A fetched shard's sha256 is not the name its index gave it (a stale cache, a CDN that
    served other bytes, a truncated body). Never decoded; the sync falls back to
    repodata.json."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason="hash_mismatch")


class VerificationError(UpstreamError):
    """A downloaded file's size or hash differs from its upstream record."""


class ArchiveError(MirrorError):
    """A package file cannot be read safely: damaged, not a conda package, or hostile.

    Carries a low-cardinality reason (corrupt, missing_index, invalid_json, too_large,
    unsafe_member, unsupported, io) for metrics and quarantine decisions.
    """

    def __init__(self, message: str, *, reason: str = "corrupt") -> None:
        super().__init__(message)
        self.reason = reason


class StoreError(MirrorError):
    """The channel tree could not be written (disk full, permissions, unsafe path)."""

    @classmethod
    def from_os_error(cls, what: str, exc: OSError) -> StoreError:
        """`what` names the operation and the file; the system's reason follows, and for the
        causes no retry can fix (full, read-only, no permission), what to do about them."""
        text = f"{what}: {exc.strerror or exc}"
        hint = _OS_ERROR_HINTS.get(exc.errno or 0)
        return cls(f"{text}; {hint}" if hint else text)


_OS_ERROR_HINTS = {
    errno.ENOSPC: "the disk is full: free some space there (or grow the file system) and run "
    "again; what was published before is intact",
    errno.EDQUOT: "the disk quota is exceeded: free some space or raise the quota and run "
    "again; what was published before is intact",
    errno.EROFS: "the file system is read-only: remount it read-write (or point root/state_dir "
    "at a writable one) and run again; what was published before is intact",
    errno.EACCES: "permission denied: run mirror as the user that owns this directory",
    errno.EPERM: "operation not permitted: run mirror as the user that owns this directory",
}


class InsufficientSpaceError(StoreError):
    """The files still to download do not fit on the disk with the configured margin."""


class StoreMissingError(StoreError):
    """A file or object that was asked for is not in the tree (or the bucket)."""


class StoreConflictError(StoreError):
    """A conditional write was refused: the object already exists (create-only) or changed
    since the writer last saw it (replace-if-unchanged). Nothing was written."""


class LeaseLostError(LockBusyError):
    """The tree's writer lease was taken over or could not be renewed in time: this process
    is no longer the tree's one writer and must stop writing."""


class CatalogError(MirrorError):
    """The SQLite state database is unusable."""


class SpecError(MirrorError):
    """A MatchSpec string in the configuration cannot be parsed."""


class LockfileError(MirrorError):
    """A lockfile (pixi.lock, conda-lock.yml, explicit file) is unreadable, unknown or unsafe."""


class Interrupted(Exception):  # a request, not an error (see below)
    """A stop was requested (SIGTERM, Ctrl-C); work in flight was abandoned cleanly.

    Not a MirrorError on purpose: code that turns errors into reported failures (a closure
    "problem", a failed file) must let a stop request through, not record it as a failure."""


class BundleError(MirrorError):
    """An export bundle cannot be written, or one offered for import is damaged or out of
    order; nothing in the tree was changed."""
