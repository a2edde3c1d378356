"""Use case: write a subdir's index files from the catalog, in the order that keeps clients safe.

Order (DESIGN.md rule 2): the package files are already in place and durable; then new
shards, then repodata.json.zst (and .bz2), then repodata.json, then the shard index, then
run_exports.json and current_repodata.json; shards no index has named for the grace period are
deleted last. Every file appears by atomic rename and only when its bytes change.

Small changes to a large subdir are spliced into the published repodata.json (see
core/repodata_doc.py) instead of re-rendering every record, and only the shards of the changed
package names are rebuilt.
"""

from __future__ import annotations

import bz2
import datetime as dt
import hashlib
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from mirror import __version__
from mirror.adapters.catalog import Catalog, OutputStat, StoredRecord
from mirror.adapters.store import ChannelTree
from mirror.core.patches import NO_PATCHES, PatchSet, patch_record
from mirror.core.records import name_from_filename
from mirror.core.repodata_doc import (
    PublishedRecord,
    local_top_level,
    render_repodata,
    splice_records,
    with_indexed_timestamp,
)
from mirror.core.shards import (
    SHARD_INDEX_NAME,
    SHARDS_DIR,
    Shard,
    build_shard,
    build_shard_index,
    removed_by_name,
)
from mirror.core.side_indexes import (
    current_selection,
    run_exports_json,
    summarize,
)
from mirror.reports import PublishResult

log = logging.getLogger(__name__)

REPODATA_JSON = "repodata.json"
REPODATA_ZST = "repodata.json.zst"
REPODATA_BZ2 = "repodata.json.bz2"
CURRENT_REPODATA = "current_repodata.json"
RUN_EXPORTS_JSON = "run_exports.json"
CHANNELDATA = "channeldata.json"
NOARCH = "noarch"
SPLICE_MAX_CHANGES = 20_000  # past this, rendering everything costs about the same
SHARD_SUFFIX = ".msgpack.zst"
SHARD_WRITERS = 4


@dataclass(frozen=True)
class PublishSettings:
    zst: bool = True
    bz2: bool = False
    shards: bool = True
    current_repodata: bool = False
    run_exports: bool = True
    shard_grace_days: float = 7.0
    patches: PatchSet = NO_PATCHES

    def render_key(self, top: dict[str, bytes]) -> str:
        """Changes whenever repodata.json would be rendered differently from the same records."""
        parts = (__version__, sorted(top.items()), self.patches.digest)
        return hashlib.sha256(repr(parts).encode()).hexdigest()


@dataclass
class _Run:
    """Inputs and results shared by the steps of one publish."""

    tree: ChannelTree
    catalog: Catalog
    channel: str
    subdir: str
    settings: PublishSettings
    now: float
    directory: Path
    changed: list[str] = field(default_factory=list)
    outputs: dict[str, OutputStat] = field(default_factory=dict)


def publish_subdir(
    tree: ChannelTree,
    catalog: Catalog,
    channel: str,
    subdir: str,
    settings: PublishSettings,
    *,
    now: float | None = None,
    force: bool = False,
) -> PublishResult:
    started = time.monotonic()
    run = _Run(
        tree,
        catalog,
        channel,
        subdir,
        settings,
        now if now is not None else time.time(),
        tree.ensure_subdir(channel, subdir),
    )
    tree.sync_dir(run.directory)  # package renames must be durable before an index names them
    top = local_top_level(subdir, unpack_top_level(catalog.top_level(channel, subdir)))
    render_key = settings.render_key(top)
    dirty = catalog.dirty(channel, subdir)
    recorded = catalog.outputs(channel, subdir)
    intact = not force and _intact(run, recorded, REPODATA_JSON, render_key)
    if intact and not dirty and _optional_outputs_current(run, recorded):
        deleted = 0
        if catalog.shard_orphans(channel, subdir):  # orphans expire even in a quiet subdir
            with catalog.transaction():
                deleted = _collect_shard_garbage(run, catalog.shard_map(channel, subdir))
        records = catalog.count_records(channel, subdir)
        seconds = time.monotonic() - started
        return PublishResult(channel, subdir, records, shards_deleted=deleted, seconds=seconds)

    pieces = None
    if (
        intact
        and dirty
        and len(dirty) <= SPLICE_MAX_CHANGES
        and not dirty & settings.patches.remove
    ):
        pieces = _spliced(run, dirty)
    spliced = pieces is not None
    if pieces is None:
        pieces = [_rendered(run, top)]
    all_names = not intact or not catalog.shard_map(channel, subdir)
    names = _all_names(run) if all_names else {name_from_filename(f) or "" for f in dirty} - {""}
    shard_changes, written = _write_shards(run, names, top) if settings.shards else ({}, 0)
    shard_map = _updated(catalog.shard_map(channel, subdir), shard_changes)
    # with force (verify --repair) the compressed copies are rewritten even if the json holds
    _write_repodata(run, pieces, render_key, may_be_unchanged=not spliced and not force)
    if settings.shards:
        _write_shard_index(run, shard_map, refresh=bool(shard_changes) or not intact)
    if settings.run_exports:
        _write_run_exports(run)
    if settings.current_repodata:
        _write_current_repodata(run, top)
    _remove_disabled_outputs(run)
    # with shards switched off, the old ones are orphans: clients may still hold an old index
    deleted = _collect_shard_garbage(run, shard_map if settings.shards else {})
    with catalog.transaction():
        catalog.clear_dirty(channel, subdir, dirty)
        catalog.set_shards(channel, subdir, shard_changes)
        catalog.put_outputs(channel, subdir, run.outputs)
    if run.changed:
        log.debug("%s/%s: wrote %s", channel, subdir, ", ".join(run.changed))
    return PublishResult(
        channel,
        subdir,
        catalog.count_records(channel, subdir),
        tuple(run.changed),
        spliced,
        written,
        deleted,
        time.monotonic() - started,
    )


def ensure_noarch(
    tree: ChannelTree, catalog: Catalog, channel: str, settings: PublishSettings
) -> None:
    """conda requires noarch/repodata.json in every channel, even when it lists nothing."""
    if tree.stat(tree.subdir_dir(channel, NOARCH) / REPODATA_JSON) is None:
        publish_subdir(tree, catalog, channel, NOARCH, settings, force=True)


def published_intact(tree: ChannelTree, catalog: Catalog, channel: str, subdir: str) -> bool:
    """True when nothing awaits publishing and every index file is exactly as last written."""
    if catalog.dirty(channel, subdir):
        return False
    recorded = catalog.outputs(channel, subdir)
    if REPODATA_JSON not in recorded:
        return False
    directory = tree.subdir_dir(channel, subdir)
    for name, expected in recorded.items():
        stat = tree.stat(directory / name)
        if stat is None or (stat.size, stat.mtime_ns) != (expected.size, expected.mtime_ns):
            return False
    return True


def pack_top_level(top_level: dict[str, bytes]) -> bytes:
    return msgspec.msgpack.encode({key: bytes(value) for key, value in top_level.items()})


def unpack_top_level(packed: bytes | None) -> dict[str, bytes]:
    if not packed:
        return {}
    decoded = msgspec.msgpack.decode(packed)
    return {str(k): bytes(v) for k, v in decoded.items()} if isinstance(decoded, dict) else {}


def final_record(stored: StoredRecord, patches: PatchSet) -> bytes | None:
    """The bytes a record is published with: CEP-47 timestamp added, patches applied."""
    raw = with_indexed_timestamp(stored.record, stored.indexed_ms)
    return patch_record(patches, stored.filename, raw)


# -- steps ------------------------------------------------------------------------------------


def _intact(run: _Run, recorded: dict[str, OutputStat], name: str, render_key: str) -> bool:
    expected = recorded.get(name)
    stat = run.tree.stat(run.directory / name)
    return (
        expected is not None
        and stat is not None
        and (stat.size, stat.mtime_ns) == (expected.size, expected.mtime_ns)
        and expected.render_key == render_key
    )


def _optional_outputs_current(run: _Run, recorded: dict[str, OutputStat]) -> bool:
    wanted = {
        REPODATA_ZST: run.settings.zst,
        REPODATA_BZ2: run.settings.bz2,
        SHARD_INDEX_NAME: run.settings.shards,
        CURRENT_REPODATA: run.settings.current_repodata,
    }
    for name, enabled in wanted.items():
        present = run.tree.stat(run.directory / name) is not None
        if enabled != present or (enabled and name not in recorded):
            return False
    return True


def _spliced(run: _Run, dirty: set[str]) -> list[bytes | memoryview] | None:
    old = (run.directory / REPODATA_JSON).read_bytes()
    stored = run.catalog.records_of(run.channel, run.subdir, dirty)
    changes = {
        filename: final_record(stored[filename], run.settings.patches)
        if filename in stored
        else None
        for filename in dirty
    }
    return splice_records(old, changes)


def _rendered(run: _Run, top: dict[str, bytes]) -> bytes:
    patches = run.settings.patches
    records: list[PublishedRecord] = []
    removed_by_patch: list[str] = []
    for stored in run.catalog.records(run.channel, run.subdir):
        final = final_record(stored, patches)
        if final is None:
            removed_by_patch.append(stored.filename)
        else:
            records.append(PublishedRecord(stored.filename, final))
    if removed_by_patch:
        removed = set(msgspec.json.decode(top.get("removed", b"[]"))) | set(removed_by_patch)
        top = {**top, "removed": msgspec.json.encode(sorted(removed))}
    return render_repodata(run.subdir, records, top)


def _all_names(run: _Run) -> set[str]:
    return run.catalog.names(run.channel, run.subdir) | set(
        run.catalog.shard_map(run.channel, run.subdir)
    )


def _write_shards(
    run: _Run, names: set[str], top: dict[str, bytes]
) -> tuple[dict[str, str | None], int]:
    """Build the shards of the given package names; write the new ones (never rewrite one)."""
    folder = run.directory / SHARDS_DIR
    run.tree.ensure_dir(folder)
    removed = removed_by_name(msgspec.json.decode(top.get("removed", b"[]")))
    changes: dict[str, str | None] = {}
    new_files: list[Path] = []

    def write(shard: Shard) -> None:
        if run.tree.write_new(folder / shard.filename, shard.data, fsync=False):
            new_files.append(folder / shard.filename)

    # creating thousands of small files is file-system latency, not CPU: overlap it
    futures: list[Future[None]] = []
    with ThreadPoolExecutor(max_workers=SHARD_WRITERS) as writers:
        for name in sorted(names):
            records = []
            removed_here = set(removed.get(name, ()))
            for stored in run.catalog.records_named(run.channel, run.subdir, name):
                final = final_record(stored, run.settings.patches)
                if final is None:
                    removed_here.add(stored.filename)  # removed by patch instructions
                else:
                    records.append((stored.filename, final))
            if not records:
                changes[name] = None
                continue
            shard = build_shard(name, records, removed_here)
            futures.append(writers.submit(write, shard))
            changes[name] = shard.sha256
    for future in futures:
        future.result()  # a failed write (disk full) must stop the index from naming it
    run.tree.make_durable(new_files)  # before the shard index names them
    return changes, len(new_files)


def _write_repodata(
    run: _Run, pieces: list[bytes | memoryview], render_key: str, *, may_be_unchanged: bool
) -> None:
    """.zst (and .bz2) first, .json last: rattler over file:// reads only the .json."""
    json_path = run.directory / REPODATA_JSON
    size = sum(len(p) for p in pieces)
    unchanged = may_be_unchanged and len(pieces) == 1 and _holds(json_path, pieces[0])
    zst_path = run.directory / REPODATA_ZST
    if run.settings.zst and (not unchanged or run.tree.stat(zst_path) is None):
        level = zst_level_for(size)
        stat = run.tree.write_pieces(zst_path, pieces, zst_level=level)
        run.outputs[REPODATA_ZST] = OutputStat(stat.size, stat.mtime_ns, render_key, level)
        run.changed.append(REPODATA_ZST)
    if run.settings.bz2 and (not unchanged or run.tree.stat(run.directory / REPODATA_BZ2) is None):
        data = bz2.compress(b"".join(pieces), 9)
        run.tree.write_if_changed(run.directory / REPODATA_BZ2, data)
        run.changed.append(REPODATA_BZ2)
        _remember(run, REPODATA_BZ2, render_key)
    existing = run.tree.stat(json_path) if unchanged else None
    if existing is None:
        existing = run.tree.write_pieces(json_path, pieces)
        run.changed.append(REPODATA_JSON)
    run.outputs[REPODATA_JSON] = OutputStat(existing.size, existing.mtime_ns, render_key)
    run.tree.sync_dir(run.directory)


def zst_level_for(size_bytes: int) -> int:
    """The level a change is published at: fast, so it is visible at once. Level 19 costs
    ~0.5 s per MB of JSON on this class of machine, level 3 ~3 ms for a file ~20% larger;
    the background recompression (or --final-zst) raises it once the subdir is quiet."""
    return 19 if size_bytes <= 128 << 10 else 3


def _holds(path: Path, data: bytes | memoryview) -> bool:
    try:
        return path.read_bytes() == data
    except FileNotFoundError:
        return False


def _remember(run: _Run, name: str, render_key: str | None = None) -> None:
    stat = run.tree.stat(run.directory / name)
    if stat is not None:
        run.outputs[name] = OutputStat(stat.size, stat.mtime_ns, render_key)


def _updated(shard_map: dict[str, str], changes: dict[str, str | None]) -> dict[str, str]:
    updated = dict(shard_map)
    for name, digest in changes.items():
        if digest is None:
            updated.pop(name, None)
        else:
            updated[name] = digest
    return updated


def _write_shard_index(run: _Run, shard_map: dict[str, str], *, refresh: bool) -> None:
    """Written when a shard changed; `created_at` alone never causes a rewrite."""
    path = run.directory / SHARD_INDEX_NAME
    if not refresh and run.tree.stat(path) is not None:
        return
    created = dt.datetime.fromtimestamp(run.now, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    run.tree.write_if_changed(path, build_shard_index(run.subdir, shard_map, created))
    run.changed.append(SHARD_INDEX_NAME)
    _remember(run, SHARD_INDEX_NAME)


def _write_run_exports(run: _Run) -> None:
    """Written only when every package's run_exports is known (local packages carry them;
    mirrored records do not); otherwise a stale file would mislead, so it is removed."""
    path = run.directory / RUN_EXPORTS_JSON
    entries = []
    for filename, run_exports, _ in run.catalog.extras(run.channel, run.subdir):
        if filename in run.settings.patches.remove:
            continue
        if run_exports is None:
            run.tree.remove(path)
            return
        entries.append((filename, run_exports))
    if run.tree.write_if_changed(path, run_exports_json(run.subdir, entries)):
        run.changed.append(RUN_EXPORTS_JSON)
    _remember(run, RUN_EXPORTS_JSON)


def _write_current_repodata(run: _Run, top: dict[str, bytes]) -> None:
    finals: dict[str, bytes] = {}
    for stored in run.catalog.records(run.channel, run.subdir):
        final = final_record(stored, run.settings.patches)
        if final is not None:
            finals[stored.filename] = final
    summaries = {fn: s for fn, raw in finals.items() if (s := summarize(raw)) is not None}
    chosen = current_selection(summaries)
    body = render_repodata(run.subdir, (PublishedRecord(f, finals[f]) for f in chosen), top)
    if run.tree.write_if_changed(run.directory / CURRENT_REPODATA, body):
        run.changed.append(CURRENT_REPODATA)
    _remember(run, CURRENT_REPODATA)


def _remove_disabled_outputs(run: _Run) -> None:
    """An output switched off in the config must not linger with stale content."""
    disabled = [
        name
        for name, enabled in (
            (REPODATA_ZST, run.settings.zst),
            (REPODATA_BZ2, run.settings.bz2),
            (SHARD_INDEX_NAME, run.settings.shards),
            (CURRENT_REPODATA, run.settings.current_repodata),
            (RUN_EXPORTS_JSON, run.settings.run_exports),
        )
        if not enabled
    ]
    for name in disabled:
        run.tree.remove(run.directory / name)
    run.catalog.drop_outputs(run.channel, run.subdir, disabled)


def _collect_shard_garbage(run: _Run, shard_map: dict[str, str]) -> int:
    """Delete shards no index has named for the grace period (CEP-16 suggests a week).

    Clients holding an older shard index may still ask for the shards it names, so a shard
    that drops out of the index becomes an orphan first and is deleted only once it has been
    one for `shard_grace_days`."""
    folder = run.directory / SHARDS_DIR
    referenced = set(shard_map.values())
    on_disk = run.tree.list_names(folder, SHARD_SUFFIX)
    orphans = run.catalog.shard_orphans(run.channel, run.subdir)
    grace_s = run.settings.shard_grace_days * 86400
    new_orphans = {d: run.now for d in on_disk - referenced if d not in orphans}
    expired = {
        d
        for d, since in orphans.items()
        if d in on_disk - referenced and run.now - since >= grace_s
    }
    for digest in expired:
        run.tree.remove(folder / f"{digest}{SHARD_SUFFIX}")
    forget = expired | {d for d in orphans if d in referenced or d not in on_disk}
    run.catalog.set_shard_orphans(run.channel, run.subdir, new_orphans, forget)
    return len(expired)
