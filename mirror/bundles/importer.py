"""Use case: apply an export bundle to the offline tree, safely and idempotently.

Before anything in a channel changes: the manifest's own hash (and signature hook), every
part's size and sha256 and every file's sha256 are checked, and each channel's current snapshot
must be the bundle's source (a full bundle fits any tree). The same single read of the data
copies the files into a staging folder; once all is checked and durable they are renamed into
place, each atomically: packages, then repodata and shards (in publish order), then deletions.
A journal in the state directory lets an interrupted import be run again to finish; importing
a bundle twice changes nothing.
Afterwards each channel's snapshot must equal the bundle's target, byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from mirror.adapters.bundle_parts import verify_parts
from mirror.adapters.hooks import run_hook
from mirror.adapters.snapshots import (
    ORIGIN_IMPORT,
    SNAPSHOTS_NAME,
    FileState,
    Snapshot,
    SnapshotStore,
)
from mirror.adapters.state_files import write_atomically
from mirror.adapters.store import ChannelMarker, ChannelTree, FileStat
from mirror.bundles.export import hook_paths
from mirror.config.model import MirrorConfig
from mirror.core.bundle_manifest import (
    MANIFEST,
    MANIFEST_SUM,
    BundleFile,
    ChannelChange,
    Manifest,
    apply_rank,
    decode,
)
from mirror.errors import BundleError
from mirror.publish.snapshot import preview_snapshot, take_snapshot
from mirror.publish.tree import TreeWriter, open_tree
from mirror.reports import ImportReport

log = logging.getLogger(__name__)

JOURNAL = "import-journal.json"
MAX_MANIFEST_BYTES = 1 << 30
TEMP_PREFIX = ".mirror-import-"


def run_import(config: MirrorConfig, bundle: Path, *, dry_run: bool = False) -> ImportReport:
    """`dry_run`: check everything and count what the import would write, keep and delete,
    creating and changing nothing (not even the snapshot database)."""
    started = time.monotonic()
    report = ImportReport(bundle, dry_run)
    manifest, manifest_sha = read_manifest(config, bundle)
    if dry_run:
        _preview(config, bundle, manifest, manifest_sha, report)
    else:
        with (
            TreeWriter.for_config(config),
            SnapshotStore(config.state_dir / SNAPSHOTS_NAME) as store,
        ):
            _apply(config, bundle, manifest, manifest_sha, store, report)
    report.seconds = time.monotonic() - started
    return report


def _apply(
    config: MirrorConfig,
    bundle: Path,
    manifest: Manifest,
    manifest_sha: str,
    store: SnapshotStore,
    report: ImportReport,
) -> None:
    resuming = _journal_says(config, bundle, manifest_sha)

    tree = open_tree(config)

    def snapshot_of(channel: str) -> Snapshot | None:
        return take_snapshot(tree, store, channel)

    todo = _check_order(config, snapshot_of, manifest, resuming, report)
    if not todo:
        return
    known = {c.channel: store.current_files(c.channel) for c in todo}
    plan = _plan(tree, manifest, todo, known)
    report.skipped = plan.kept
    staged: dict[str, tuple[Path, BundleFile]] = {}
    try:
        staged = _stage(tree, bundle, manifest, plan)
        _write_journal(config, bundle, manifest_sha)
        written = _install(tree, staged, report)
        _delete(tree, plan, report)
        os.sync()  # the journal goes only once every rename is durable
        for change in todo:
            _finish(config, tree, store, change, written)
    finally:
        for path, _ in staged.values():
            path.unlink(missing_ok=True)
    (config.state_dir / JOURNAL).unlink(missing_ok=True)


def _preview(
    config: MirrorConfig, bundle: Path, manifest: Manifest, manifest_sha: str, report: ImportReport
) -> None:
    """The checks and counts of _apply, on a read-only view of the snapshot database (none
    when it does not exist yet: a dry run creates nothing)."""
    path = config.state_dir / SNAPSHOTS_NAME
    store = SnapshotStore(path, read_only=True) if path.exists() else None
    tree = open_tree(config)
    try:
        resuming = _journal_says(config, bundle, manifest_sha)
        previews: dict[str, tuple[Snapshot | None, dict[str, FileState]]] = {}

        def snapshot_of(channel: str) -> Snapshot | None:
            previews[channel] = preview_snapshot(tree, store, channel)
            return previews[channel][0]

        todo = _check_order(config, snapshot_of, manifest, resuming, report)
    finally:
        if store is not None:
            store.close()
    if not todo:
        return
    plan = _plan(tree, manifest, todo, {c.channel: previews[c.channel][1] for c in todo})
    _check_contents(bundle, manifest, None)
    report.skipped = plan.kept
    report.written = len(plan.copy)
    report.written_bytes = sum(item.size for item in plan.copy)
    report.deleted = sum(1 for key in plan.doomed if tree.stat(key) is not None)


def read_manifest(config: MirrorConfig, bundle: Path) -> tuple[Manifest, str]:
    path = bundle / MANIFEST
    try:
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise BundleError(f"{path}: larger than {MAX_MANIFEST_BYTES} bytes; not a manifest")
        body = path.read_bytes()
        expected = (bundle / MANIFEST_SUM).read_text().split()[0]
    except FileNotFoundError as exc:
        raise BundleError(
            f"{bundle}: no {Path(exc.filename).name}; is this a bundle folder written by "
            "`mirror export`?"
        ) from None
    except (OSError, IndexError) as exc:
        raise BundleError(f"{bundle}: cannot read the manifest ({exc})") from None
    actual = hashlib.sha256(body).hexdigest()
    if actual != expected:
        raise BundleError(
            f"{path}: its sha256 ({actual[:12]}...) is not the one in {MANIFEST_SUM} "
            f"({expected[:12]}...); the manifest is damaged: copy the bundle again"
        )
    if config.bundles.verify_command:
        run_hook(config.bundles.verify_command, hook_paths(bundle), "verify_command")
    return decode(body, str(path)), actual


def _check_order(
    config: MirrorConfig,
    snapshot_of: Callable[[str], Snapshot | None],
    manifest: Manifest,
    resuming: bool,
    report: ImportReport,
) -> list[ChannelChange]:
    """The channels the bundle still has to change; BundleError if one is out of order."""
    todo = []
    unknown = [c.channel for c in manifest.channels if config.channel(c.channel) is None]
    if unknown:
        raise BundleError(
            f"the bundle carries channel {', '.join(unknown)}, which {config.source} does not "
            f"name; add it (channels: {{{unknown[0]}: {{subdirs: [...]}}}}) to import it. "
            "Nothing was changed."
        )
    for change in manifest.channels:
        current = snapshot_of(change.channel)
        target, source = change.target, change.source
        label = f"{change.channel}: {source.id if source else 'full'} -> {target.id}"
        if current is not None and current.digest == target.digest:
            report.channels.append(f"{label}: already there")
            continue
        if (
            not resuming
            and source is not None
            and (current is None or current.digest != source.digest)
        ):
            raise BundleError(_out_of_order(change, current))
        report.channels.append(label + (" (resuming)" if resuming else ""))
        todo.append(change)
    return todo


def _out_of_order(change: ChannelChange, current: Snapshot | None) -> str:
    assert change.source is not None
    where = (
        f"is at snapshot {current.shown_id}" if current and current.origin == ORIGIN_IMPORT
        else "has changed since its last import" if current is not None
        else "has never imported this channel"
    )  # fmt: skip
    since = (
        f"--since {current.shown_id}" if current and current.origin == ORIGIN_IMPORT else "--full"
    )
    return (
        f"{change.channel}: this tree {where}, but the bundle goes from snapshot "
        f"{change.source.id} to {change.target.id}. Import the bundles in order, or have the "
        f"connected side run `mirror export {since}`. Nothing was changed."
    )


def _check_contents(
    bundle: Path, manifest: Manifest, stage: Callable[[BundleFile], Path | None] | None
) -> None:
    hashes = verify_parts(bundle, manifest.parts, manifest.files, stage)
    for item in manifest.files:
        if hashes[item.path] != item.sha256:
            raise BundleError(
                f"{bundle}: {item.path} in the data parts does not hash to its manifest sha256; "
                "the bundle is damaged: copy it again. Nothing was changed."
            )


@dataclass(frozen=True)
class _Plan:
    """What importing the bundle's todo channels does, worked out before anything changes."""

    copy: list[BundleFile]  # not yet in place with the right bytes
    kept: int  # already in place (a repeated or resumed import)
    doomed: list[str]  # root-relative paths the targets no longer have


def _plan(
    tree: ChannelTree,
    manifest: Manifest,
    todo: list[ChannelChange],
    known: Mapping[str, Mapping[str, FileState]],
) -> _Plan:
    """`known`: per channel, the files of its current snapshot (path -> size, mtime, sha256)."""
    copy: list[BundleFile] = []
    kept = 0
    for item in manifest.files:
        channel, relative = item.path.split("/", 1)
        if channel not in known:
            continue
        if _in_place(tree, item.path, known[channel].get(relative), item):
            kept += 1
        else:
            copy.append(item)
    doomed: list[str] = []
    for change in todo:
        prefix = change.channel + "/"
        bundled = {f.path[len(prefix) :] for f in manifest.files if f.path.startswith(prefix)}
        if change.source is None:  # a full bundle: the tree becomes exactly its target
            listed = bundled | {i.path for i in change.index}
            gone = sorted(set(known[change.channel]) - listed)
        else:
            gone = [p for p in change.deleted if p not in bundled]
        doomed.extend(prefix + relative for relative in gone)
    return _Plan(copy, kept, doomed)


def _stage(
    tree: ChannelTree, bundle: Path, manifest: Manifest, plan: _Plan
) -> dict[str, tuple[Path, BundleFile]]:
    """Check the whole bundle and, in the same read, copy each file not yet in place into a
    staging file beside its destination (a dotfile: never published; for a bucket, a local
    temp file). Nothing published changes here; a damaged bundle leaves only staging files,
    then removed."""
    staged = {
        item.path: (tree.store.staging_path(item.path.rpartition("/")[0]), item)
        for item in plan.copy
    }

    def stage(item: BundleFile) -> Path | None:
        entry = staged.get(item.path)
        return entry[0] if entry else None

    try:
        _check_contents(bundle, manifest, stage)
    except BaseException:
        for path, _ in staged.values():
            path.unlink(missing_ok=True)
        raise
    os.sync()  # staged bytes are durable before any of them takes its final name
    return staged


def _install(
    tree: ChannelTree, staged: dict[str, tuple[Path, BundleFile]], report: ImportReport
) -> dict[str, tuple[int, int, str]]:
    """Give the staged files their names in the safe order; their (size, mtime_ns, sha256),
    checked while staging, spare the final snapshot from reading them again."""
    written: dict[str, tuple[int, int, str]] = {}
    for key in sorted(staged, key=lambda p: (apply_rank(p), p)):
        source, item = staged[key]
        source.chmod(0o644)
        stat = install_staged(tree, source, key, item.sha256)
        written[key] = (stat.size, stat.mtime_ns, item.sha256)
        report.written += 1
        report.written_bytes += item.size
    return written


def install_staged(tree: ChannelTree, source: Path, key: str, sha256: str) -> FileStat:
    """One staged file takes its name (a seam for tests that stop an import half way)."""
    return tree.install(source, key, sha256=sha256)


def _delete(tree: ChannelTree, plan: _Plan, report: ImportReport) -> None:
    """Last, once nothing published names them: files the targets no longer have."""
    for key in plan.doomed:
        if tree.stat(key) is not None:
            tree.remove(key)
            report.deleted += 1


def _in_place(tree: ChannelTree, key: str, known: FileState | None, item: BundleFile) -> bool:
    """Already the right bytes (a resumed or repeated import): trust the snapshot's hash when
    the stat matches it, else hash the file."""
    stat = tree.stat(key)
    if stat is None or stat.size != item.size:
        return False
    if known is not None and (known.size, known.mtime_ns, known.sha256) == (
        item.size, stat.mtime_ns, item.sha256,
    ):  # fmt: skip
        return True
    return tree.digest(key, with_md5=False)[1] == item.sha256


def _finish(
    config: MirrorConfig,
    tree: ChannelTree,
    store: SnapshotStore,
    change: ChannelChange,
    written: dict[str, tuple[int, int, str]],
) -> None:
    prefix = change.channel + "/"
    trusted = {p[len(prefix) :]: v for p, v in written.items() if p.startswith(prefix)}
    marker = ChannelMarker("imported", str(config.state_dir), str(config.source))
    tree.mark_channel(change.channel, marker)
    snapshot = take_snapshot(
        tree,
        store,
        change.channel,
        origin=ORIGIN_IMPORT,
        remote_id=change.target.id,
        trusted=trusted,
    )
    if snapshot is None or snapshot.digest != change.target.digest:
        raise BundleError(
            f"{change.channel}: after the import the tree does not match snapshot "
            f"{change.target.id} (files changed meanwhile?); run `mirror verify`, then import a "
            "--full bundle"
        )


def _journal_says(config: MirrorConfig, bundle: Path, manifest_sha: str) -> bool:
    path = config.state_dir / JOURNAL
    try:
        journal = json.loads(path.read_text())
    except (OSError, ValueError):  # none (the usual case), or unreadable: no import to finish
        return False
    if journal.get("manifest_sha256") == manifest_sha:
        return True
    raise BundleError(
        f"the import of {journal.get('bundle')} was interrupted and must finish first: run "
        f"`mirror import {journal.get('bundle')}` again (or delete {path} after restoring the "
        "tree from a --full bundle)"
    )


def _write_journal(config: MirrorConfig, bundle: Path, manifest_sha: str) -> None:
    journal = {"bundle": str(bundle), "manifest_sha256": manifest_sha}
    write_atomically(config.state_dir / JOURNAL, json.dumps(journal).encode())
