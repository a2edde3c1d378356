"""Use case: record what a channel's folder publishes now as a snapshot (id, files, sha256).

Taken after every completed publish (a sync of the channel, `mirror index`, an imported bundle;
the daemon takes one when its channel worker goes idle, so a burst of drops makes one).
Files whose size and mtime match the previous snapshot keep their hash; only the others are
read. Nothing changed: no new snapshot.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mirror.adapters.catalog import Catalog
from mirror.adapters.snapshots import (
    ORIGIN_LOCAL,
    SNAPSHOTS_NAME,
    FileState,
    Snapshot,
    SnapshotStore,
)
from mirror.adapters.store import ChannelTree
from mirror.errors import MirrorError

log = logging.getLogger(__name__)


def tree_digest(files: dict[str, FileState]) -> str:
    """One hash naming the whole published state: equal digests, equal trees."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(f"{path}\0{files[path].sha256}\n".encode())
    return digest.hexdigest()


def take_snapshot(
    tree: ChannelTree,
    store: SnapshotStore,
    channel: str,
    *,
    origin: str = ORIGIN_LOCAL,
    remote_id: int | None = None,
    trusted: Mapping[str, tuple[int, int, str]] | None = None,
) -> Snapshot | None:
    """The channel's current snapshot, recorded anew if its files changed; None if the channel
    has never published anything. `trusted` (path -> size, mtime_ns, sha256, from the catalog)
    spares re-reading package files whose hash is already known."""
    current = store.current_files(channel)
    survey = _survey(tree, channel, current, trusted)
    if survey.touched:
        store.touch(channel, survey.touched)
    latest = store.current(channel)
    unchanged = not survey.changed and not survey.removed
    if unchanged and latest is not None and remote_id in (None, latest.remote_id):
        return latest
    if unchanged and latest is None and not survey.files:
        return None
    return store.record(
        channel,
        store.next_id(),
        tree_digest(survey.files),
        survey.changed,
        survey.removed,
        survey.totals,
        origin,
        remote_id,
    )


def preview_snapshot(
    tree: ChannelTree, store: SnapshotStore | None, channel: str
) -> tuple[Snapshot | None, dict[str, FileState]]:
    """What take_snapshot would return, and the files it would then list as current, with
    nothing recorded (a dry run); `store` None: no snapshot was ever taken."""
    current = store.current_files(channel) if store else {}
    latest = store.current(channel) if store else None
    survey = _survey(tree, channel, current, None)
    unchanged = not survey.changed and not survey.removed
    if unchanged and (latest is not None or not survey.files):
        return latest, survey.files
    next_id = store.next_id() if store else 1
    digest = tree_digest(survey.files)
    return Snapshot(channel, next_id, digest, 0.0, *survey.totals, ORIGIN_LOCAL), survey.files


@dataclass(frozen=True)
class _Survey:
    """A channel folder compared with its last snapshot's files."""

    changed: list[FileState]  # new paths, or new bytes under a path
    touched: list[FileState]  # same bytes, new stat
    removed: list[str]
    files: dict[str, FileState]  # everything the folder holds now

    @property
    def totals(self) -> tuple[int, int]:
        return len(self.files), sum(s.size for s in self.files.values())


def _survey(
    tree: ChannelTree,
    channel: str,
    current: dict[str, FileState],
    trusted: Mapping[str, tuple[int, int, str]] | None,
) -> _Survey:
    """Dotfiles (temp files, the lock, markers) are not part of what a channel publishes."""
    folder = tree.channel_key(channel)
    found = tree.store.walk(folder)
    states: list[FileState] = []
    unknown: list[str] = []  # new or changed, with no hash anyone vouches for: read them
    for path, stat in found.items():
        size, mtime_ns = stat.size, stat.mtime_ns
        old = current.get(path)
        if old is not None and (old.size, old.mtime_ns) == (size, mtime_ns):
            continue
        vouched = trusted.get(path) if trusted else None
        written = tree.store.vouched_sha256(f"{folder}/{path}", stat)  # shards, indexes
        if vouched is not None and vouched[:2] == (size, mtime_ns) and vouched[2]:
            states.append(FileState(path, size, mtime_ns, vouched[2]))
        elif written is not None:
            states.append(FileState(path, size, mtime_ns, written))
        else:
            unknown.append(path)
    read = tree.digests([f"{folder}/{path}" for path in unknown], with_md5=False)
    for path in unknown:
        states.append(FileState(path, found[path].size, found[path].mtime_ns,
                                read[f"{folder}/{path}"][1]))  # fmt: skip
    changed: list[FileState] = []
    touched: list[FileState] = []
    for state in states:
        old = current.get(state.path)
        if old is not None and (old.size, old.sha256) == (state.size, state.sha256):
            touched.append(state)
        else:
            changed.append(state)
    removed = sorted(set(current) - set(found))
    files = {p: s for p, s in current.items() if p in found}
    files.update({s.path: s for s in (*touched, *changed)})
    return _Survey(changed, touched, removed, files)


def snapshot_channel(
    tree: ChannelTree, state_dir: Path, catalog: Catalog, channel: str, *, changed: bool = True
) -> None:
    """After a publish: record the channel's snapshot, trusting the catalog's package hashes.
    A run that changed nothing skips the scan once a snapshot exists. A failure here never
    undoes the publish; it is logged, and `mirror export` retakes the snapshot."""
    if not changed:
        with SnapshotStore(state_dir / SNAPSHOTS_NAME) as store:
            if store.current(channel) is not None:
                return
    trusted = {
        f"{subdir}/{name}": (f.size, f.mtime_ns, f.sha256 or "")
        for subdir in catalog.subdirs(channel)
        for name, f in catalog.files(channel, subdir).items()
    }
    try:
        with SnapshotStore(state_dir / SNAPSHOTS_NAME) as store:
            take_snapshot(tree, store, channel, trusted=trusted)
    except (MirrorError, OSError) as exc:
        log.warning("%s: could not record a snapshot: %s", channel, exc)
