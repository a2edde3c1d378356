"""Use case: write a bundle that carries a tree from one snapshot to the next (or in full).

The bundle appears under its final name only when complete (written beside it under a dot
name, then renamed), so a one-way transfer system watching the outbox never ships half of one.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mirror.adapters.bundle_parts import PartWriter
from mirror.adapters.hooks import run_hook
from mirror.adapters.snapshots import SNAPSHOTS_NAME, FileState, Snapshot, SnapshotStore
from mirror.config.model import MirrorConfig
from mirror.core.bundle_manifest import (
    FORMAT,
    MANIFEST,
    MANIFEST_SUM,
    SIGNATURE,
    VERSION,
    BundleFile,
    ChannelChange,
    Manifest,
    SnapshotRef,
    apply_rank,
    encode,
    is_package,
)
from mirror.errors import BundleError
from mirror.publish.snapshot import take_snapshot
from mirror.publish.tree import open_tree
from mirror.reports import ExportReport

log = logging.getLogger(__name__)

DEFAULT_SPLIT_SIZE = 1 << 62  # one part unless asked


@dataclass(frozen=True)
class ExportOptions:
    out: Path
    since: int | None = None  # None: a full bundle
    split_size: int = DEFAULT_SPLIT_SIZE
    channels: tuple[str, ...] = ()  # empty: every channel with a snapshot


@dataclass(frozen=True)
class _Plan:
    change: ChannelChange
    files: list[tuple[str, FileState]]  # channel-relative path, state


def run_export(config: MirrorConfig, options: ExportOptions) -> ExportReport:
    started = time.monotonic()
    with SnapshotStore(config.state_dir / SNAPSHOTS_NAME) as store:
        plans = _plan(config, store, options)
        if not plans:
            return ExportReport(None, None, time.monotonic() - started)
        manifest = _write(config, plans, options)
        for plan in plans:
            store.record_export(plan.change.channel, plan.change.target.id, options.out)
    log.info(
        "exported %d files (%d bytes) in %d parts to %s",
        len(manifest.files), manifest.stream_size, len(manifest.parts), options.out,
    )  # fmt: skip
    return ExportReport(options.out, manifest, time.monotonic() - started)


def export_to_outbox(config: MirrorConfig, channel: str) -> ExportReport | None:
    """The daemon's export after a sync: `<outbox>/<channel>-<from>-to-<to>`, from the last
    bundle written there (the first one is full). None when nothing changed since."""
    assert config.bundles.outbox is not None
    with SnapshotStore(config.state_dir / SNAPSHOTS_NAME) as store:
        target = take_snapshot(open_tree(config), store, channel)
        since = store.last_export(channel)
    if target is None or since == target.id:
        return None
    name = f"{channel}-{since if since is not None else 'full'}-to-{target.id}"
    options = ExportOptions(
        out=config.bundles.outbox / name,
        since=since,
        split_size=config.bundles.split_size or DEFAULT_SPLIT_SIZE,
        channels=(channel,),
    )
    return run_export(config, options)


def _plan(config: MirrorConfig, store: SnapshotStore, options: ExportOptions) -> list[_Plan]:
    names = list(options.channels) or [c.name for c in config.channels]
    if options.since is not None and not any(s.id == options.since for s in store.snapshots()):
        known = ", ".join(str(s.id) for s in store.snapshots()[-10:]) or "none yet"
        raise BundleError(
            f"no snapshot {options.since} in {store.path} (latest: {known}); `mirror snapshots` "
            "lists them, `--full` needs none"
        )
    plans = []
    tree = open_tree(config)
    for name in names:
        target = take_snapshot(tree, store, name)
        if target is None:
            continue
        source = _source(store, name, options.since)
        if source is not None and source.id == target.id:
            continue  # unchanged since then: nothing to carry
        target_files = store.files_at(name, target.id)
        source_files = store.files_at(name, source.id) if source else {}
        changed = [
            (path, state)
            for path, state in target_files.items()
            if source_files.get(path, None) is None or source_files[path].sha256 != state.sha256
        ]
        change = ChannelChange(
            channel=name,
            source=SnapshotRef(source.id, source.digest) if source else None,
            target=SnapshotRef(target.id, target.digest),
            deleted=tuple(sorted(set(source_files) - set(target_files))),
            index=tuple(
                BundleFile(p, s.size, s.sha256)
                for p, s in sorted(target_files.items())
                if not is_package(p)
            ),
        )
        plans.append(_Plan(change, changed))
    return plans


def _source(store: SnapshotStore, channel: str, since: int | None) -> Snapshot | None:
    """The channel as it was at snapshot `since`: its latest snapshot with an id <= since."""
    if since is None:
        return None
    earlier = [s for s in store.snapshots(channel) if s.id <= since]
    return earlier[-1] if earlier else None


def _write(config: MirrorConfig, plans: Sequence[_Plan], options: ExportOptions) -> Manifest:
    out = options.out
    if out.exists():
        raise BundleError(f"{out} already exists; give a new folder for the bundle")
    partial = out.parent / f".{out.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    tree = open_tree(config)
    try:
        partial.mkdir(parents=True)
        writer = PartWriter(partial, options.split_size)
        entries = [
            (plan.change.channel, path, state) for plan in plans for path, state in plan.files
        ]
        entries.sort(key=lambda e: (apply_rank(e[1]), e[0], e[1]))
        with contextlib.ExitStack() as held:  # files on this host (a bucket's: downloaded)
            items = [
                (key, held.enter_context(tree.local_file(key)), state.size, state.sha256)
                for key, state in ((f"{c}/{path}", state) for c, path, state in entries)
            ]
            offsets = writer.add_files(items)  # reads ahead across files: one call for them all
        files = [
            BundleFile(name, size, sha256, offset)
            for (name, _, size, sha256), offset in zip(items, offsets, strict=True)
        ]
        parts = writer.finish()
        manifest = Manifest(
            format=FORMAT,
            version=VERSION,
            created_at=time.time(),
            channels=tuple(plan.change for plan in plans),
            files=tuple(files),
            parts=tuple(parts),
            stream_size=sum(p.size for p in parts),
        )
        body = encode(manifest)
        (partial / MANIFEST).write_bytes(body)
        (partial / MANIFEST_SUM).write_text(f"{hashlib.sha256(body).hexdigest()}  {MANIFEST}\n")
        if config.bundles.sign_command:
            run_hook(config.bundles.sign_command, hook_paths(partial), "sign_command")
        _fsync_dir(partial)
        os.replace(partial, out)
        _fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return manifest


def hook_paths(bundle: Path) -> dict[str, Path]:
    return {"manifest": bundle / MANIFEST, "signature": bundle / SIGNATURE}


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
