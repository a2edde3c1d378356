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
import logging
import time

import msgspec

from mirror.adapters.catalog import Catalog, OutputStat
from mirror.adapters.store import ChannelTree
from mirror.core.records import name_from_filename
from mirror.core.repodata_doc import (
    PublishedRecord,
    local_top_level,
    render_repodata,
    splice_records,
)
from mirror.core.shards import (
    SHARD_INDEX_NAME,
)
from mirror.publish.names import (
    CURRENT_REPODATA,
    CURRENT_REPODATA_ZST,
    NOARCH,
    REPODATA_BZ2,
    REPODATA_JSON,
    REPODATA_ZST,
)
from mirror.publish.recompress import zst_level_for
from mirror.publish.records import final_record, unpack_top_level
from mirror.publish.settings import PublishSettings
from mirror.publish.shard_files import (
    collect_shard_garbage,
    updated_shard_map,
    write_shard_index,
    write_shards,
)
from mirror.publish.side_files import (
    remove_disabled_outputs,
    write_current_repodata,
    write_run_exports,
)
from mirror.publish.step import PublishRun, remember_output
from mirror.publish.twins import warn_disagreeing_twins
from mirror.reports import PublishResult

log = logging.getLogger(__name__)

SPLICE_MAX_CHANGES = 20_000  # past this, rendering everything costs about the same


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
    run = PublishRun(
        tree,
        catalog,
        channel,
        subdir,
        settings,
        now if now is not None else time.time(),
        tree.subdir_key(channel, subdir),
    )
    tree.sync_folder(run.folder)  # package renames must be durable before an index names them
    top = local_top_level(subdir, unpack_top_level(catalog.top_level(channel, subdir)))
    render_key = settings.render_key(top)
    dirty = catalog.dirty(channel, subdir)
    recorded = catalog.outputs(channel, subdir)
    intact = not force and _intact(run, recorded, REPODATA_JSON, render_key)
    if intact and not dirty and _optional_outputs_current(run, recorded):
        deleted = 0
        if catalog.shard_orphans(channel, subdir):  # orphans expire even in a quiet subdir
            with catalog.transaction():
                deleted = collect_shard_garbage(run, catalog.shard_map(channel, subdir))
        records = catalog.count_records(channel, subdir)
        seconds = time.monotonic() - started
        return PublishResult(channel, subdir, records, shards_deleted=deleted, seconds=seconds)
    written, deleted, spliced = _write_all(run, top, render_key, dirty, intact=intact, force=force)
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


def _write_all(
    run: PublishRun,
    top: dict[str, bytes],
    render_key: str,
    dirty: set[str],
    *,
    intact: bool,
    force: bool,
) -> tuple[int, int, bool]:
    """Every index file in the safe order -> (shards written, shards deleted, spliced)."""
    catalog, channel, subdir, settings = run.catalog, run.channel, run.subdir, run.settings
    warn_disagreeing_twins(run, dirty)
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
    shard_changes, written = write_shards(run, names, top) if settings.shards else ({}, 0)
    shard_map = updated_shard_map(catalog.shard_map(channel, subdir), shard_changes)
    # with force (verify --repair) the compressed copies are rewritten even if the json holds
    _write_repodata(run, pieces, render_key, may_be_unchanged=not spliced and not force)
    if settings.shards:
        write_shard_index(run, shard_map, refresh=bool(shard_changes) or not intact)
    if settings.run_exports:
        write_run_exports(run)
    if settings.current_repodata:
        write_current_repodata(run, top)
    remove_disabled_outputs(run)
    # with shards switched off, the old ones are orphans: clients may still hold an old index
    deleted = collect_shard_garbage(run, shard_map if settings.shards else {})
    with catalog.transaction():
        catalog.clear_dirty(channel, subdir, dirty)
        catalog.set_shards(channel, subdir, shard_changes)
        catalog.put_outputs(channel, subdir, run.outputs)
    return written, deleted, spliced


def ensure_noarch(
    tree: ChannelTree, catalog: Catalog, channel: str, settings: PublishSettings
) -> None:
    """conda requires noarch/repodata.json in every channel, even when it lists nothing."""
    if tree.stat(f"{tree.subdir_key(channel, NOARCH)}/{REPODATA_JSON}") is None:
        publish_subdir(tree, catalog, channel, NOARCH, settings, force=True)


def published_intact(tree: ChannelTree, catalog: Catalog, channel: str, subdir: str) -> bool:
    """True when nothing awaits publishing and every index file is exactly as last written."""
    if catalog.dirty(channel, subdir):
        return False
    recorded = catalog.outputs(channel, subdir)
    if REPODATA_JSON not in recorded:
        return False
    folder = tree.subdir_key(channel, subdir)
    for name, expected in recorded.items():
        stat = tree.stat(f"{folder}/{name}")
        if stat is None or (stat.size, stat.mtime_ns) != (expected.size, expected.mtime_ns):
            return False
    return True


def _intact(run: PublishRun, recorded: dict[str, OutputStat], name: str, render_key: str) -> bool:
    expected = recorded.get(name)
    stat = run.tree.stat(run.key(name))
    return (
        expected is not None
        and stat is not None
        and (stat.size, stat.mtime_ns) == (expected.size, expected.mtime_ns)
        and expected.render_key == render_key
    )


def _optional_outputs_current(run: PublishRun, recorded: dict[str, OutputStat]) -> bool:
    wanted = {
        REPODATA_ZST: run.settings.zst,
        REPODATA_BZ2: run.settings.bz2,
        SHARD_INDEX_NAME: run.settings.shards,
        CURRENT_REPODATA: run.settings.current_repodata,
        CURRENT_REPODATA_ZST: run.settings.current_repodata,
    }
    for name, enabled in wanted.items():
        present = run.tree.stat(run.key(name)) is not None
        if enabled != present or (enabled and name not in recorded):
            return False
    return True


def _spliced(run: PublishRun, dirty: set[str]) -> list[bytes | memoryview] | None:
    old = run.tree.read(run.key(REPODATA_JSON))
    stored = run.catalog.records_of(run.channel, run.subdir, dirty)
    changes = {
        filename: final_record(stored[filename], run.settings.patches)
        if filename in stored
        else None
        for filename in dirty
    }
    return splice_records(old, changes)


def _rendered(run: PublishRun, top: dict[str, bytes]) -> bytes:
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


def _all_names(run: PublishRun) -> set[str]:
    return run.catalog.names(run.channel, run.subdir) | set(
        run.catalog.shard_map(run.channel, run.subdir)
    )


def _write_repodata(
    run: PublishRun, pieces: list[bytes | memoryview], render_key: str, *, may_be_unchanged: bool
) -> None:
    """.zst (and .bz2) first, .json last: rattler over file:// reads only the .json."""
    json_path = run.key(REPODATA_JSON)
    size = sum(len(p) for p in pieces)
    unchanged = (
        may_be_unchanged and len(pieces) == 1 and run.tree.read_if_there(json_path) == pieces[0]
    )
    zst_path = run.key(REPODATA_ZST)
    if run.settings.zst and (not unchanged or run.tree.stat(zst_path) is None):
        level = zst_level_for(size)
        stat = run.tree.write_pieces(zst_path, pieces, zst_level=level)
        run.outputs[REPODATA_ZST] = OutputStat(stat.size, stat.mtime_ns, render_key, level)
        run.changed.append(REPODATA_ZST)
    if run.settings.bz2 and (not unchanged or run.tree.stat(run.key(REPODATA_BZ2)) is None):
        data = bz2.compress(b"".join(pieces), 9)
        run.tree.write_if_changed(run.key(REPODATA_BZ2), data)
        run.changed.append(REPODATA_BZ2)
        remember_output(run, REPODATA_BZ2, render_key)
    existing = run.tree.stat(json_path) if unchanged else None
    if existing is None:
        existing = run.tree.write_pieces(json_path, pieces)
        run.changed.append(REPODATA_JSON)
    run.outputs[REPODATA_JSON] = OutputStat(existing.size, existing.mtime_ns, render_key)
    run.tree.sync_folder(run.folder)
