"""Lockfile pins: each package a channel's lockfiles name, matched to the configured channel
whose upstream its URL points into (else the listing channel, by subdir and file name), and
checked by sha256 against upstream's record."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from mirror.config.model import ChannelConfig, MirrorConfig
from mirror.core.closure import Closure, Reason
from mirror.core.gate import admit
from mirror.core.records import Record, name_from_filename
from mirror.errors import LockfileError, MirrorError
from mirror.sync.closure_fetch import Fetcher
from mirror.sync.context import SyncContext

if TYPE_CHECKING:
    from mirror.core.lockfiles import LockedPackage, Lockfile


def lock_targets(config: MirrorConfig, channel: ChannelConfig) -> set[str]:
    """Channels other than `channel` that its lockfiles' URLs point into (best effort)."""
    if not channel.lockfiles:
        return set()
    targets = set()
    for path in channel.lockfiles:
        try:
            lock = _read_lockfile(path)
        except MirrorError:
            continue
        for package in lock.packages:
            owner = _owner(config, package, channel)
            targets.add(owner.name)
    return targets - {channel.name}


def _read_lockfile(path: Path) -> Lockfile:
    """Parsed once per version of the file: a plan consults each lockfile several times."""
    try:
        stat = path.stat()
        key = (stat.st_mtime_ns, stat.st_size)
    except OSError:
        key = (0, 0)
    return _cached_lockfile(str(path), *key)


@functools.lru_cache(maxsize=32)
def _cached_lockfile(path: str, _mtime_ns: int, _size: int) -> Lockfile:
    return read_lockfile(Path(path))


def read_lockfile(path: Path) -> Lockfile:
    """Read and parse a lockfile; any failure is a LockfileError naming the file."""
    # yaml parsing is imported only when a channel has lockfiles
    from mirror.core.lockfiles import MAX_LOCKFILE_BYTES, parse_lockfile

    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_LOCKFILE_BYTES + 1)
    except OSError as exc:
        raise LockfileError(
            f"{path}: cannot read the lockfile ({exc.strerror or exc}); check the path and "
            "its permissions"
        ) from exc
    return parse_lockfile(data, str(path))


def _owner(config: MirrorConfig, package: LockedPackage, listing: ChannelConfig) -> ChannelConfig:
    """The configured channel whose upstream the package URL points into, else the listing one."""
    wanted = package.channel_url.rstrip("/")
    for channel in config.channels:
        if channel.upstream and channel.upstream.rstrip("/") == wanted:
            return channel
    return listing


def lockfile_pins(ctx: SyncContext, fetcher: Fetcher, channel: ChannelConfig) -> Closure:
    closure = Closure(selected={}, problems=[], warnings=[])
    for path in channel.lockfiles:
        lock = _read_lockfile(path)
        for package in lock.packages:
            owner = _owner(ctx.config, package, channel)
            label = f"{path.name}: {package.subdir}/{package.filename}"
            if package.subdir not in owner.subdirs:
                closure.problems.append(
                    f"{label}: channel {owner.name} does not mirror subdir {package.subdir}; "
                    "add it to the channel's subdirs"
                )
                continue
            names = (name_from_filename(package.filename) or "",)
            repodata = fetcher.repodata(owner, package.subdir, names)
            entry = repodata.entries.get(package.filename)
            decoded = (
                admit(package.filename, entry[1], group=entry[0], subdir=package.subdir)
                if entry
                else None
            )
            if not isinstance(decoded, Record):
                closure.problems.append(
                    f"{label}: upstream {owner.shown_upstream} no longer has this package"
                )
                continue
            if package.sha256 and decoded.fields.sha256 and package.sha256 != decoded.fields.sha256:
                closure.problems.append(
                    f"{label}: upstream's file differs from the lockfile's (sha256 "
                    f"{decoded.fields.sha256[:12]}... vs {package.sha256[:12]}...)"
                )
                continue
            key = (owner.name, package.subdir, package.filename)
            closure.selected.setdefault(key, Reason(f"lockfile {path.name}", None))
    return closure
